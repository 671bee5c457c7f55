using System.Buffers;
using System.IO.Pipelines;
using System.Security.Cryptography;
using CryptoTensors.Gpu.Crypto;
using CryptoTensors.Gpu.Format;
using CryptoTensors.Gpu.Writing;

namespace CryptoTensors.Gpu.Reading;

/// <summary>
/// Reads a CryptoTensors (or plain safetensors) file from a non-seekable source — an HTTP body, a pipe, stdin — in
/// file order with bounded memory: the header (at most 100 MB, read incrementally), then every tensor chunk by chunk.
/// The header is authenticated exactly as <see cref="CryptoTensorsReader.Open"/> does before any tensor byte is read.
/// Every piece handed to the caller is authenticated plaintext (a v2 chunk, a whole v1 tensor, or a block of a plain
/// tensor); when a later piece fails, the caller must discard what it received. Memory: one chunk (v2), the largest
/// encrypted tensor (v1), or 1 MiB (plain).
/// </summary>
public sealed class CryptoTensorsStreamReader : IDisposable
{
    private const int PlainBlock = 1 << 20;
    private readonly Stream _stream;
    private readonly CryptoTensorsReader.HeaderCrypto _crypto;
    private bool _consumed;
    private bool _disposed;

    private CryptoTensorsStreamReader(Stream stream, SafetensorsHeader header, CryptoTensorsReader.HeaderCrypto crypto)
    {
        _stream = stream;
        Header = header;
        _crypto = crypto;
        Tensors = header.Tensors.Select(t => new TensorDescriptor(t.Name, t.Dtype, t.Shape, t.ByteLength, crypto.Crypto.ContainsKey(t.Name))).ToArray();
    }

    /// <summary>The validated header.</summary>
    public SafetensorsHeader Header { get; }

    /// <summary>Tensors in file order (the order <see cref="ReadAllAsync"/> delivers them).</summary>
    public IReadOnlyList<TensorDescriptor> Tensors { get; }

    /// <summary>Whether the file is encrypted (and its header was verified).</summary>
    public bool IsEncrypted => _crypto.Keys is not null;

    /// <summary>Opens a stream: reads and authenticates the header. <paramref name="name"/> is the file name given to the policy.</summary>
    public static async Task<CryptoTensorsStreamReader> OpenAsync(Stream stream, string name, ReaderOptions? options = null, CancellationToken cancellationToken = default)
    {
        options ??= new ReaderOptions();
        var prefix = new byte[8];
        var got = await ReadAtMostAsync(stream, prefix, cancellationToken).ConfigureAwait(false);
        var n = SafetensorsHeader.ReadHeaderLength(prefix.AsSpan(0, got), got < 8 ? got : long.MaxValue);
        // Grow the buffer as bytes arrive, so a lying length on a short stream never allocates 100 MB: it is at most 4 times
        // the bytes received (from 1 MiB). Growing 4-fold, all the buffers of a true header come to 1.33 times its length
        // (doubling: 2 times), which keeps a many-tensor header's open within the fuzzer's 4 × input + 64 MiB.
        var header = new byte[Math.Min(n, 1 << 20)];
        var have = 0L;
        while (have < n)
        {
            if (have == header.Length) Array.Resize(ref header, (int)Math.Min(n, (long)header.Length * 4));
            var r = await stream.ReadAsync(header.AsMemory((int)have, (int)(header.Length - have)), cancellationToken).ConfigureAwait(false);
            if (r == 0) throw Errors.Create(ErrorCode.InvalidHeaderLength, $"invalid header length: {n} bytes of header but the stream ended after {have}");
            have += r;
        }
        var parsed = SafetensorsHeader.ParseOwned(header, fileLength: null); // the buffer is handed over: nothing writes it again
        return new CryptoTensorsStreamReader(stream, parsed, CryptoTensorsReader.Authenticate(name, parsed, options));
    }

    /// <summary>Opens a <see cref="PipeReader"/> (e.g. an HTTP request body).</summary>
    public static Task<CryptoTensorsStreamReader> OpenAsync(PipeReader reader, string name, ReaderOptions? options = null, CancellationToken cancellationToken = default)
        => OpenAsync(reader.AsStream(), name, options, cancellationToken);

    /// <summary>
    /// Reads every tensor in file order, calling <paramref name="onData"/> with (tensor, offset in the tensor,
    /// authenticated plaintext) at least once per tensor (once with no bytes for an empty one); a tensor is complete
    /// when offset + length reaches its byte length. The buffer passed is reused after the callback returns.
    /// Refuses trailing bytes.
    /// </summary>
    public async Task ReadAllAsync(Func<TensorDescriptor, long, ReadOnlyMemory<byte>, ValueTask> onData,
        IProgress<TensorProgress>? progress = null, CancellationToken cancellationToken = default)
    {
        ObjectDisposedException.ThrowIf(_disposed, this);
        if (_consumed) throw new InvalidOperationException("the stream has already been read");
        _consumed = true;
        var chunkSize = _crypto.Keys?.ChunkSize;
        // Sized by the bytes that arrive, never by what the header claims: a buffer grows (doubling from 1 MiB) only
        // once the bytes already received fill it, so a short stream whose header claims a 2 GiB chunk or tensor costs
        // what it sent, and fails as an incomplete stream.
        var buffer = new GrowingBuffer();
        var total = Tensors.Sum(t => t.ByteLength);
        long done = 0;
        try
        {
            for (var ti = 0; ti < Tensors.Count; ti++)
            {
                var t = Tensors[ti];
                if (!_crypto.Crypto.TryGetValue(t.Name, out var c))
                {
                    long o = 0;
                    do // an empty tensor still gets its one (empty) piece, as encrypted ones do
                    {
                        var len = (int)Math.Min(PlainBlock, t.ByteLength - o);
                        var block = await FillAsync(buffer, len, t.Name, cancellationToken).ConfigureAwait(false);
                        await onData(t, o, block).ConfigureAwait(false);
                        o += len;
                    }
                    while (o < t.ByteLength);
                }
                else
                {
                    CryptoTensorsReader.ValidateEntry(t.Name, c.Entry, t.ByteLength, chunkSize);
                    using var cipher = new AeadCipher(_crypto.Algorithm, _crypto.Deks!.Span.Slice(c.DekOffset, _crypto.Algorithm.KeySize()));
                    if (chunkSize is not { } cs)
                    {
                        var all = await FillAsync(buffer, t.ByteLength, t.Name, cancellationToken).ConfigureAwait(false);
                        CryptoTensorsReader.DecryptWhole(t.Name, cipher, c.Entry, all.Span, all.Span);
                        await onData(t, 0, all).ConfigureAwait(false);
                    }
                    else
                    {
                        var chunks = ChunkNonce.Count(t.ByteLength, cs);
                        for (long i = 0; i < chunks; i++)
                        {
                            var piece = await FillAsync(buffer, Math.Min(cs, t.ByteLength - i * cs), t.Name, cancellationToken).ConfigureAwait(false);
                            CryptoTensorsReader.DecryptChunk(t.Name, cipher, c.Entry, piece.Span, piece.Span, i);
                            await onData(t, i * cs, piece).ConfigureAwait(false);
                        }
                    }
                }
                done += t.ByteLength;
                progress?.Report(new TensorProgress(done, total, ti + 1, Tensors.Count));
            }
            var probe = new byte[1];
            if (await ReadAtMostAsync(_stream, probe, cancellationToken).ConfigureAwait(false) != 0)
                throw Errors.Create(ErrorCode.IncompleteBuffer, "incomplete metadata, file not fully covered: the stream continues after the last tensor");
        }
        finally
        {
            buffer.Dispose();
        }
    }

    /// <summary>
    /// The largest tensor the streaming reader authenticates whole (an encrypted v1 tensor): the largest .NET array,
    /// 2,147,483,591 bytes. A larger claim is read up to this bound (so a short stream still fails as incomplete, as the
    /// path-based reader calls the same file malformed) and then refused with <see cref="ErrorCode.TensorTooLarge"/>.
    /// </summary>
    public static long MaxWholeTensorBytes => Array.MaxLength;

    /// <summary>Reads exactly <paramref name="length"/> bytes into <paramref name="buffer"/>, growing it only as they arrive.</summary>
    private async ValueTask<Memory<byte>> FillAsync(GrowingBuffer buffer, long length, string tensor, CancellationToken cancellationToken)
    {
        var have = 0;
        while (have < length)
        {
            if (have == buffer.Length)
            {
                if (have >= MaxWholeTensorBytes)
                    throw Errors.Create(ErrorCode.TensorTooLarge, $"a tensor authenticated whole may hold at most {MaxWholeTensorBytes} bytes; this one claims {length} (read such files from a seekable source)", tensor: tensor);
                buffer.Grow(have, (int)Math.Min(length, MaxWholeTensorBytes));
            }
            var want = (int)Math.Min(length, buffer.Length) - have;
            var n = await ReadAtMostAsync(_stream, buffer.Array.AsMemory(have, want), cancellationToken).ConfigureAwait(false);
            have += n;
            if (n < want)
                throw Errors.Create(ErrorCode.IncompleteBuffer, "incomplete metadata, file not fully covered: the stream ended inside a tensor", tensor: tensor);
        }
        return buffer.Array.AsMemory(0, have);
    }

    /// <summary>A pooled buffer that grows (keeping its content) and is zeroed whenever it is given back.</summary>
    private sealed class GrowingBuffer : IDisposable
    {
        private const int Initial = 1 << 20;

        public byte[] Array { get; private set; } = [];

        public int Length => Array.Length;

        /// <summary>At least doubles (from 1 MiB) the capacity, up to <paramref name="cap"/>, keeping the first <paramref name="keep"/> bytes.</summary>
        public void Grow(int keep, int cap)
        {
            var size = (int)Math.Min(cap, Math.Max(Initial, Math.Min((long)Array.Length * 2, System.Array.MaxLength)));
            var next = ArrayPool<byte>.Shared.Rent(Math.Max(size, 1));
            Array.AsSpan(0, keep).CopyTo(next);
            Release();
            Array = next;
        }

        public void Dispose() => Release();

        private void Release()
        {
            if (Array.Length == 0) return;
            CryptographicOperations.ZeroMemory(Array);
            ArrayPool<byte>.Shared.Return(Array);
            Array = [];
        }
    }

    private static async ValueTask<int> ReadAtMostAsync(Stream s, Memory<byte> buffer, CancellationToken cancellationToken)
    {
        var done = 0;
        while (done < buffer.Length)
        {
            var n = await s.ReadAsync(buffer[done..], cancellationToken).ConfigureAwait(false);
            if (n == 0) break;
            done += n;
        }
        return done;
    }

    /// <summary>Zeroes the data keys. The stream is not disposed (the caller owns it).</summary>
    public void Dispose()
    {
        _disposed = true;
        _crypto.Deks?.Dispose();
    }
}
