using System.Runtime.CompilerServices;
using CryptoTensors.Gpu.Crypto;
using CryptoTensors.Gpu.Reading;

namespace CryptoTensors.Gpu.Loading;

/// <summary>A tensor to load: where its bytes start in the file, where they go, and its crypto state (null entry: plain).</summary>
internal sealed record LoadTarget<TDestination>(TensorDescriptor Tensor, long FileOffset, TDestination Destination, EncryptionEntry? Entry, int DekOffset);

/// <summary>One unit of a parallel load: a v2 chunk (<see cref="Chunk"/> ≥ 0), a whole v1 tensor, or a block of a plain one.</summary>
internal readonly record struct LoadWorkItem(int Tensor, long Offset, int Length, long Chunk);

/// <summary>How the host and device loaders split tensors into work items, so one scheduler covers them all.</summary>
internal static class LoadWorkPlan
{
    /// <summary>The tensors named in <paramref name="names"/> (each once, in order), or every tensor when null.</summary>
    public static List<TensorDescriptor> Select(CryptoTensorsReader reader, IReadOnlyCollection<string>? names)
        => names is null ? reader.Tensors.ToList() : names.Distinct(StringComparer.Ordinal).Select(reader.GetTensor).ToList();

    /// <summary>Offsets of <paramref name="tensors"/> packed one after another, each starting on an <paramref name="alignment"/> boundary.</summary>
    public static Dictionary<string, (long Offset, long Length)> AlignedLayout(IReadOnlyList<TensorDescriptor> tensors, int alignment, out long size)
    {
        var layout = new Dictionary<string, (long Offset, long Length)>(tensors.Count, StringComparer.Ordinal);
        size = 0;
        foreach (var t in tensors)
        {
            layout[t.Name] = (size, t.ByteLength);
            size = checked(size + (t.ByteLength + alignment - 1) / alignment * alignment);
        }
        return layout;
    }

    /// <summary>The load target of <paramref name="tensor"/> going to <paramref name="destination"/>.</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public static LoadTarget<T> Target<T>(CryptoTensorsReader reader, TensorDescriptor tensor, T destination)
    {
        reader.Header.TryGetTensor(tensor.Name, out var info);
        var crypto = reader.CryptoOf(tensor.Name);
        return new LoadTarget<T>(tensor, reader.Header.DataStart + (long)info.Begin, destination, crypto?.Entry, crypto?.DekOffset ?? -1);
    }

    /// <summary>Checks every encrypted target's nonce/tag fields (the reader's rules) before any chunk is decrypted.</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public static void Validate<T>(IEnumerable<LoadTarget<T>> targets, long? chunkSize)
    {
        foreach (var t in targets)
        {
            if (t.Entry is not null) CryptoTensorsReader.ValidateEntry(t.Tensor.Name, t.Entry, t.Tensor.ByteLength, chunkSize);
        }
    }

    /// <summary>
    /// The work items of <paramref name="targets"/> in order, and how many each target has: encrypted tensors by
    /// <paramref name="chunkSize"/> (whole when null: v1), plain ones in <paramref name="plainBlock"/>-byte blocks.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public static (List<LoadWorkItem> Items, int[] PerTensor) Build<T>(IReadOnlyList<LoadTarget<T>> targets, long? chunkSize, int plainBlock)
    {
        var items = new List<LoadWorkItem>();
        var perTensor = new int[targets.Count];
        for (var i = 0; i < targets.Count; i++)
        {
            var before = items.Count;
            var len = targets[i].Tensor.ByteLength;
            var encrypted = targets[i].Entry is not null;
            if (encrypted && chunkSize is { } cs)
            {
                var chunks = ChunkNonce.Count(len, cs);
                for (long c = 0; c < chunks; c++) items.Add(new LoadWorkItem(i, c * cs, (int)Math.Min(cs, len - c * cs), c));
            }
            else if (encrypted) items.Add(new LoadWorkItem(i, 0, (int)len, -1));
            else for (long o = 0; o < len; o += plainBlock) items.Add(new LoadWorkItem(i, o, (int)Math.Min(plainBlock, len - o), -1));
            perTensor[i] = items.Count - before;
        }
        return (items, perTensor);
    }

    /// <summary>
    /// Consecutive runs <c>[First, End)</c> of <paramref name="items"/>, each closed once it holds
    /// <paramref name="batchBytes"/> bytes or more: an item that large is a run of its own, small ones share one.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public static List<(int First, int End)> Batches(List<LoadWorkItem> items, int batchBytes)
    {
        var batches = new List<(int, int)>();
        var first = 0;
        long bytes = 0;
        for (var i = 0; i < items.Count; i++)
        {
            bytes += Math.Max(items[i].Length, 1);
            if (bytes < batchBytes && i + 1 < items.Count) continue;
            batches.Add((first, i + 1));
            first = i + 1;
            bytes = 0;
        }
        return batches;
    }
}

/// <summary>A worker's cipher for the data key it used last (consecutive chunks share a key). Not thread-safe.</summary>
internal sealed class DataKeyCipherCache(CryptoTensorsReader reader) : IDisposable
{
    private AeadCipher? _cipher;
    private int _dekOffset = -1;

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public AeadCipher For(int dekOffset)
    {
        if (dekOffset == _dekOffset && _cipher is not null) return _cipher;
        var key = reader.DataKeyAt(dekOffset);
        _dekOffset = -1;
        // The accelerated backend re-expands the next data key into the same native context (no allocation per tensor).
        if (_cipher is not null && _cipher.TryRekey(key))
        {
            _dekOffset = dekOffset;
            return _cipher;
        }
        _cipher?.Dispose();
        _cipher = null;
        _cipher = new AeadCipher(reader.Algorithm, key);
        _dekOffset = dekOffset;
        return _cipher;
    }

    public void Dispose() => _cipher?.Dispose();
}
