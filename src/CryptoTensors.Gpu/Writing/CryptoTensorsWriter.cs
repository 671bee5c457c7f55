using System.Buffers;
using System.Buffers.Binary;
using System.Security.Cryptography;
using CryptoTensors.Gpu.Crypto;
using CryptoTensors.Gpu.Format;

namespace CryptoTensors.Gpu.Writing;

/// <summary>Progress of a long operation.</summary>
/// <param name="BytesDone">Tensor bytes processed so far.</param>
/// <param name="BytesTotal">Tensor bytes in all.</param>
/// <param name="TensorsDone">Tensors completed.</param>
/// <param name="TensorsTotal">Tensors in all.</param>
public readonly record struct TensorProgress(long BytesDone, long BytesTotal, int TensorsDone, int TensorsTotal);

/// <summary>
/// Writes plain safetensors and CryptoTensors files exactly as the reference does (FORMAT.md §1.4, §3.10, §4):
/// tensors in dtype-descending then name order, compact header with sorted keys, space padding to 8. It streams:
/// the header's length is known before any data is encrypted (every field has a fixed encoded length), so the
/// data is encrypted chunk by chunk straight into its place in a temporary file and the header is written last;
/// then the file is flushed and renamed over the target. Memory: one chunk (v2) or the largest tensor (v1).
/// </summary>
public static class CryptoTensorsWriter
{
    private const int CopyBlock = 4 << 20;
    private const int WindowBytes = 16 << 20;

    /// <summary>Writes <paramref name="tensors"/> to <paramref name="path"/> atomically.</summary>
    public static void Write(string path, IEnumerable<TensorSource> tensors, WriterOptions options,
        IProgress<TensorProgress>? progress = null, CancellationToken cancellationToken = default)
    {
        var order = tensors.ToList();
        var names = new HashSet<string>(StringComparer.Ordinal);
        foreach (var t in order)
        {
            if (!names.Add(t.Name)) throw Errors.Create(ErrorCode.DuplicateKey, "duplicate tensor name", tensor: t.Name);
            if (t.Name == "__metadata__") throw Errors.Create(ErrorCode.InvalidJson, "'__metadata__' cannot be a tensor name", tensor: t.Name);
        }
        order.Sort((a, b) => WriterOrder.Compare(a.Dtype, a.Name, b.Dtype, b.Name));

        var (master, signer) = (options.MasterKey, options.SigningKey);
        if ((master is null) != (signer is null))
            throw Errors.Create(master is null ? ErrorCode.MissingMasterKey : ErrorCode.MissingSigningKey,
                master is null ? "a signing key was given without a master key" : "a master key was given without a signing key: encrypted files must be signed");
        var selected = master is null ? new HashSet<string>(StringComparer.Ordinal)
            : options.EncryptOnly is null ? new HashSet<string>(names, StringComparer.Ordinal)
            : new HashSet<string>(options.EncryptOnly.Where(names.Contains), StringComparer.Ordinal);
        var encrypting = selected.Count > 0;
        if (encrypting && options.FormatVersion is not (1 or 2))
            throw Errors.Create(ErrorCode.UnsupportedVersion, $"unsupported format version {options.FormatVersion}");
        long? chunkSize = encrypting && options.FormatVersion == 2 ? options.ChunkSize : null;
        if (chunkSize is <= 0 or > WriterOptions.MaxChunkSize)
            throw Errors.Create(ErrorCode.InvalidChunkSize, $"chunk size must be between 1 and {WriterOptions.MaxChunkSize} bytes, not {chunkSize}");

        var offsets = new List<HeaderTensor>(order.Count);
        ulong offset = 0;
        foreach (var t in order)
        {
            offsets.Add(new HeaderTensor(t.Name, t.Dtype, t.Shape, offset, offset + (ulong)t.ByteLength));
            offset += (ulong)t.ByteLength;
        }

        var metadata = options.Metadata is null ? null : new Dictionary<string, string>(options.Metadata, StringComparer.Ordinal);
        foreach (var r in ReservedFields.All) metadata?.Remove(r);

        using var plan = encrypting ? CryptoPlan.Create(order, selected, master!, signer!, options, chunkSize) : null;
        if (plan is not null)
        {
            metadata ??= new Dictionary<string, string>(StringComparer.Ordinal);
            plan.AddFields(metadata, offsets, placeholder: true);
        }
        var headerLength = HeaderSerializer.Pad(HeaderSerializer.Serialize(metadata, offsets)).Length;

        using var file = new AtomicFile(path);
        var stream = file.Stream;
        var total = order.Sum(t => t.ByteLength);

        // Work items in file order: v2 chunks, whole v1 tensors, blocks of plain tensors.
        var items = new List<(int Tensor, long Offset, int Length, long Chunk)>();
        var lastItem = new int[order.Count];
        long largestItem = 0;
        for (var ti = 0; ti < order.Count; ti++)
        {
            var t = order[ti];
            if (plan is not null && plan.TryGet(t.Name, out _))
            {
                if (chunkSize is { } cs)
                    for (long c = 0; c < ChunkNonce.Count(t.ByteLength, cs); c++) items.Add((ti, c * cs, (int)Math.Min(cs, t.ByteLength - c * cs), c));
                else items.Add((ti, 0, checked((int)t.ByteLength), -1));
            }
            else for (long o = 0; o < t.ByteLength; o += CopyBlock) items.Add((ti, o, (int)Math.Min(CopyBlock, t.ByteLength - o), -1));
            lastItem[ti] = items.Count - 1;
            if (items.Count > 0) largestItem = Math.Max(largestItem, items[^1].Length);
        }

        // A bounded window of items is read and sealed in parallel, then written in order.
        var windowSize = (int)Math.Max(Math.Max(WindowBytes, largestItem), 2L * Environment.ProcessorCount * (chunkSize ?? 0));
        var pooled = windowSize <= 64 << 20;
        var buffer = pooled ? ArrayPool<byte>.Shared.Rent(windowSize) : GC.AllocateUninitializedArray<byte>(windowSize);
        try
        {
            stream.Position = 8 + headerLength;
            long done = 0;
            var tensorsDone = 0;
            for (var first = 0; first < items.Count;)
            {
                cancellationToken.ThrowIfCancellationRequested();
                var end = first;
                long used = 0;
                while (end < items.Count && (end == first || used + items[end].Length <= windowSize)) used += items[end++].Length;
                var starts = new int[end - first];
                for (int k = first, at = 0; k < end; k++) { starts[k - first] = at; at += items[k].Length; }
                var windowStart = first;
                try
                {
                    Parallel.For(first, end, new ParallelOptions { CancellationToken = cancellationToken }, k =>
                    {
                        var (ti, offset, length, chunk) = items[k];
                        var span = buffer.AsSpan(starts[k - windowStart], length);
                        order[ti].Read(offset, span);
                        if (plan is not null && plan.TryGet(order[ti].Name, out var job)) plan.Seal(job, chunk, span);
                    });
                }
                catch (AggregateException ae)
                {
                    // Surface the typed error (a source's CryptoTensorsException or I/O error), not the wrapper.
                    var inner = ae.Flatten().InnerExceptions;
                    System.Runtime.ExceptionServices.ExceptionDispatchInfo.Capture(inner.OfType<CryptoTensorsException>().FirstOrDefault() ?? inner[0]).Throw();
                }
                stream.Write(buffer, 0, (int)used);
                done += used;
                while (tensorsDone < order.Count && lastItem[tensorsDone] < end) tensorsDone++;
                progress?.Report(new TensorProgress(done, total, tensorsDone, order.Count));
                first = end;
            }
            if (tensorsDone < order.Count) progress?.Report(new TensorProgress(done, total, order.Count, order.Count));

            if (plan is not null) plan.AddFields(metadata!, offsets, placeholder: false);
            var header = HeaderSerializer.Pad(HeaderSerializer.Serialize(metadata, offsets));
            if (header.Length != headerLength)
                throw new InvalidOperationException($"header length changed from {headerLength} to {header.Length} between layout and signing");
            stream.Position = 0;
            Span<byte> prefix = stackalloc byte[8];
            BinaryPrimitives.WriteUInt64LittleEndian(prefix, (ulong)header.Length);
            stream.Write(prefix);
            stream.Write(header);
            file.Commit();
        }
        finally
        {
            CryptographicOperations.ZeroMemory(buffer);
            if (pooled) ArrayPool<byte>.Shared.Return(buffer);
        }
    }

    /// <summary>Asynchronous <see cref="Write"/> (runs on the thread pool).</summary>
    public static Task WriteAsync(string path, IEnumerable<TensorSource> tensors, WriterOptions options,
        IProgress<TensorProgress>? progress = null, CancellationToken cancellationToken = default)
        => Task.Run(() => Write(path, tensors, options, progress, cancellationToken), cancellationToken);
}
