using System.Security.Cryptography;
using System.Text.Json;
using CryptoTensors.Gpu.Keys;
using CryptoTensors.Gpu.Policy;
using CryptoTensors.Gpu.Reading;

namespace CryptoTensors.Gpu.Fuzz;

/// <summary>Runs one case through the path reader, the streaming reader and the policy engine, and judges the outcome.</summary>
internal sealed class Executor(Corpus corpus, MemoryWatch memory)
{
    /// <summary>Inputs from this size start their memory windows after a full collection.</summary>
    private const long CollectFrom = 4L << 20;

    private readonly string _path = Path.Combine(Path.GetTempPath(), $"ctfuzz-{Environment.ProcessId}.safetensors");
    private static readonly TimeProvider Clock = new FixedClock(new DateTimeOffset(2030, 1, 2, 3, 4, 5, TimeSpan.Zero));
    private static readonly JsonElement Context = JsonDocument.Parse("""{"tier":"pro","licence":"abc"}""").RootElement.Clone();

    public Corpus Corpus { get; } = corpus;

    /// <summary>Runs the case; returns its outcome's label, or throws a <see cref="Finding"/>.</summary>
    public string Run(FuzzCase c, long budget) => c.Kind == "policy" ? RunPolicy(c, budget) : RunFile(c, budget);

    private string RunPolicy(FuzzCase c, long budget)
    {
        JsonDocument? input = null;
        try
        {
            // The input is ours (valid JSON, at most a few thousand levels): parsed generously so that deep or huge inputs reach the engine.
            input = c.PolicyInput.Length == 0 ? null : JsonDocument.Parse(c.PolicyInput, new JsonDocumentOptions { MaxDepth = 100_000 });
        }
        catch (JsonException)
        {
            input = null;
        }
        using (input)
        {
            memory.Reset(c.InputBytes >= CollectFrom);
            var before = GC.GetTotalAllocatedBytes();
            string outcome;
            try
            {
                var compiled = PolicyEngine.Compile(c.PolicySource);
                outcome = "policy " + compiled.Evaluate(input?.RootElement, Clock);
            }
            catch (CryptoTensorsException e)
            {
                outcome = "policy " + e.Code;
            }
            catch (Exception e)
            {
                throw new Finding("exception", $"policy: {e}");
            }
            CheckAllocated(before, budget, "policy");
            return outcome;
        }
    }

    private string RunFile(FuzzCase c, long budget)
    {
        File.WriteAllBytes(_path, c.File);
        var options = new ReaderOptions
        {
            MasterKey = c.Base?.Master ?? Corpus.Aes256,
            VerificationKey = c.Resigned ? Corpus.Signer.Public : c.Base?.Verify ?? Corpus.Signer.Public,
            Keys = new KeyRegistry(),
            PolicyClock = Clock,
            PolicyContext = Context,
        };

        memory.Reset(c.InputBytes >= CollectFrom);
        var before = GC.GetTotalAllocatedBytes();
        Dictionary<string, long>? pathHashes = null;
        CryptoTensorsException? pathError = null;
        try
        {
            pathHashes = ReadWithPathReader(c, options);
        }
        catch (CryptoTensorsException e)
        {
            pathError = e;
        }
        catch (Finding)
        {
            throw;
        }
        catch (Exception e)
        {
            throw new Finding("exception", $"path reader: {e}");
        }
        CheckAllocated(before, budget, $"path reader (open: {LastOpenAllocated:N0} bytes)");

        memory.Reset(c.InputBytes >= CollectFrom);
        before = GC.GetTotalAllocatedBytes();
        Dictionary<string, long>? streamHashes = null;
        CryptoTensorsException? streamError = null;
        try
        {
            streamHashes = ReadWithStreamReader(c, options);
        }
        catch (CryptoTensorsException e)
        {
            streamError = e;
        }
        catch (Finding)
        {
            throw;
        }
        catch (Exception e)
        {
            // OperationCanceledException is accepted only when the read was cancelled, and these reads never are.
            throw new Finding("exception", $"stream reader: {e}");
        }
        CheckAllocated(before, budget, "stream reader");

        if (pathHashes is not null && streamHashes is not null)
        {
            foreach (var (name, h) in pathHashes)
            {
                if (!streamHashes.TryGetValue(name, out var s) || s != h)
                    throw new Finding("readers-disagree", $"tensor '{name}': the path reader read {h:x16}, the stream reader {(streamHashes.ContainsKey(name) ? s.ToString("x16") : "nothing")}");
            }
        }
        if ((pathError is null) != (streamError is null) && !ByDesignDifference(pathError, streamError))
            throw new Finding("readers-disagree", $"path reader: {pathError?.Code.ToString() ?? "ok"} {pathError?.Message}; stream reader: {streamError?.Code.ToString() ?? "ok"} {streamError?.Message}");
        return $"{c.Kind} path={pathError?.Code.ToString() ?? "ok"} stream={streamError?.Code.ToString() ?? "ok"}";
    }

    /// <summary>
    /// Differences between the readers that are by design: the streaming reader buffers a whole v1 tensor and refuses
    /// one above <see cref="CryptoTensorsStreamReader.MaxWholeTensorBytes"/>, which the path reader refuses at read time only.
    /// </summary>
    private static bool ByDesignDifference(CryptoTensorsException? pathError, CryptoTensorsException? streamError)
        => streamError?.Code == ErrorCode.TensorTooLarge || pathError?.Code == ErrorCode.TensorTooLarge;

    /// <summary>Checks a window's allocation and resident-set growth against the case's bound.</summary>
    private void CheckAllocated(long before, long budget, string what)
    {
        var allocated = GC.GetTotalAllocatedBytes() - before;
        if (allocated > budget) throw new Finding("memory", $"{what} allocated {allocated:N0} bytes, above the bound {budget:N0}");
        var grown = memory.Growth;
        if (grown > budget) throw new Finding("memory", $"{what}: the resident set grew by {grown:N0} bytes, above the bound {budget:N0}");
    }

    /// <summary>What the last path-reader open allocated (reported with memory findings).</summary>
    public long LastOpenAllocated { get; private set; }

    private byte[] _buffer = new byte[1 << 16];
    private byte[] _range = new byte[1 << 16];

    private static byte[] Grow(ref byte[] array, long length)
    {
        if (array.Length < length) array = new byte[Math.Max(length, array.Length * 2L)];
        return array;
    }

    /// <summary>
    /// Reads every tensor (and a random range of each) with the path reader; returns the first 8 bytes of each tensor's
    /// SHA-256. The harness reuses its buffers and keeps no strings, so what the case allocates is the library's.
    /// </summary>
    private Dictionary<string, long> ReadWithPathReader(FuzzCase c, ReaderOptions options)
    {
        var opening = GC.GetTotalAllocatedBytes();
        using var r = CryptoTensorsReader.Open(_path, options);
        LastOpenAllocated = GC.GetTotalAllocatedBytes() - opening;
        var hashes = new Dictionary<string, long>(r.Tensors.Count, StringComparer.Ordinal);
        var rng = new Random(c.File.Length);
        Span<byte> sha = stackalloc byte[32];
        foreach (var t in r.Tensors)
        {
            // An open file covers its data section exactly, so no tensor is larger than the file.
            if (t.ByteLength > c.File.Length) throw new Finding("bounds", $"tensor '{t.Name}' claims {t.ByteLength} bytes in a {c.File.Length}-byte file that opened");
            var buffer = Grow(ref _buffer, t.ByteLength).AsSpan(0, (int)t.ByteLength);
            r.ReadTensor(t.Name, buffer);
            SHA256.HashData(buffer, sha);
            hashes[t.Name] = BitConverter.ToInt64(sha);
            Judge(c, t, sha);
            if (t.ByteLength > 1)
            {
                var offset = rng.NextInt64(t.ByteLength);
                var length = (int)rng.NextInt64(t.ByteLength - offset + 1);
                var range = Grow(ref _range, length).AsSpan(0, length);
                r.ReadRange(t.Name, offset, range);
                if (!range.SequenceEqual(buffer.Slice((int)offset, length)))
                    throw new Finding("wrong-bytes", $"tensor '{t.Name}': ReadRange({offset}, {length}) differs from ReadTensor");
            }
        }
        return hashes;
    }

    private Dictionary<string, long> ReadWithStreamReader(FuzzCase c, ReaderOptions options)
    {
        var piece = 1 + c.File.Length % 7919;
        using var stream = new TrickleStream(c.File, piece);
        using var r = CryptoTensorsStreamReader.OpenAsync(stream, "model.safetensors", options).GetAwaiter().GetResult();
        var hashes = new Dictionary<string, long>(r.Tensors.Count, StringComparer.Ordinal);
        // Tensors arrive in order, each complete before the next starts: one hash object serves them all.
        using var h = IncrementalHash.CreateHash(HashAlgorithmName.SHA256);
        var sha = new byte[32];
        r.ReadAllAsync((t, offset, data) =>
        {
            h.AppendData(data.Span);
            if (offset + data.Length == t.ByteLength)
            {
                h.GetHashAndReset(sha);
                hashes[t.Name] = BitConverter.ToInt64(sha);
                Judge(c, t, sha);
            }
            return ValueTask.CompletedTask;
        }).GetAwaiter().GetResult();
        return hashes;
    }

    /// <summary>A tensor read successfully must hold its known plaintext wherever the case leaves it meaningful.</summary>
    private static void Judge(FuzzCase c, TensorDescriptor t, ReadOnlySpan<byte> sha)
    {
        if (c.Base?.Expected is not { } expected || !expected.TryGetValue(t.Name, out var e) || e.Length != t.ByteLength) return;
        // An encrypted tensor is authenticated: unless a re-signed case changed the table or the crypto entries, a
        // success must give exactly the original plaintext. A plain one only when neither its table nor its bytes changed.
        var must = t.IsEncrypted ? !c.Resigned || c.PreservesTable : c.PreservesTable && !c.TouchedData;
        if (must && !sha.SequenceEqual(e.Sha))
            throw new Finding("wrong-bytes", $"tensor '{t.Name}' ({(t.IsEncrypted ? "encrypted" : "plain")}) read as {Convert.ToHexStringLower(sha)}, its plaintext is {Convert.ToHexStringLower(e.Sha)}");
    }
}

/// <summary>A non-seekable stream that returns at most <c>piece</c> bytes per read.</summary>
internal sealed class TrickleStream(byte[] data, int piece) : Stream
{
    private int _position;

    public override bool CanRead => true;
    public override bool CanSeek => false;
    public override bool CanWrite => false;
    public override long Length => throw new NotSupportedException();
    public override long Position { get => throw new NotSupportedException(); set => throw new NotSupportedException(); }
    public override void Flush() { }
    public override long Seek(long offset, SeekOrigin origin) => throw new NotSupportedException();
    public override void SetLength(long value) => throw new NotSupportedException();
    public override void Write(byte[] buffer, int offset, int count) => throw new NotSupportedException();

    public override int Read(byte[] buffer, int offset, int count) => Read(buffer.AsSpan(offset, count));

    public override int Read(Span<byte> buffer)
    {
        var n = Math.Min(Math.Min(buffer.Length, piece), data.Length - _position);
        data.AsSpan(_position, n).CopyTo(buffer);
        _position += n;
        return n;
    }

    public override ValueTask<int> ReadAsync(Memory<byte> buffer, CancellationToken cancellationToken = default)
        => ValueTask.FromResult(Read(buffer.Span));

    public override Task<int> ReadAsync(byte[] buffer, int offset, int count, CancellationToken cancellationToken)
        => Task.FromResult(Read(buffer.AsSpan(offset, count)));
}

internal sealed class FixedClock(DateTimeOffset now) : TimeProvider
{
    public override DateTimeOffset GetUtcNow() => now;
}
