using CryptoTensors.Gpu.Crypto;
using CryptoTensors.Gpu.Reading;

namespace CryptoTensors.Gpu.Loading;

/// <summary>One unit of a parallel load: a v2 chunk (<see cref="Chunk"/> ≥ 0), a whole v1 tensor, or a block of a plain one.</summary>
internal readonly record struct LoadWorkItem(int Tensor, long Offset, int Length, long Chunk);

/// <summary>How the host and device loaders split tensors into work items, so one scheduler covers them all.</summary>
internal static class LoadWorkPlan
{
    /// <summary>
    /// The work items of <paramref name="tensors"/> (byte length, encrypted?) in order, and how many each tensor has:
    /// encrypted tensors by <paramref name="chunkSize"/> (whole when null: v1), plain ones in
    /// <paramref name="plainBlock"/>-byte blocks.
    /// </summary>
    public static (List<LoadWorkItem> Items, int[] PerTensor) Build(IReadOnlyList<(long Length, bool Encrypted)> tensors, long? chunkSize, int plainBlock)
    {
        var items = new List<LoadWorkItem>();
        var perTensor = new int[tensors.Count];
        for (var i = 0; i < tensors.Count; i++)
        {
            var before = items.Count;
            var (len, encrypted) = tensors[i];
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
}

/// <summary>A worker's cipher for the data key it used last (consecutive chunks share a key). Not thread-safe.</summary>
internal sealed class DataKeyCipherCache(CryptoTensorsReader reader) : IDisposable
{
    private AeadCipher? _cipher;
    private int _dekOffset = -1;

    public AeadCipher For(int dekOffset)
    {
        if (dekOffset == _dekOffset && _cipher is not null) return _cipher;
        _cipher?.Dispose();
        _cipher = null;
        _cipher = new AeadCipher(reader.Algorithm, reader.DataKeyAt(dekOffset));
        _dekOffset = dekOffset;
        return _cipher;
    }

    public void Dispose() => _cipher?.Dispose();
}
