using System.Runtime.CompilerServices;
using System.Buffers.Binary;

namespace CryptoTensors.Gpu.Crypto;

/// <summary>
/// v2 chunk nonces (FORMAT.md §3.4): <c>iv_i = base_iv[0..8] || BE32(BE32(base_iv[8..12]) + i)</c>, with the
/// addition checked — overflow is an error, never a wrap-around.
/// </summary>
public static class ChunkNonce
{
    /// <summary>Writes the nonce of chunk <paramref name="index"/>; false when the counter would overflow.</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public static bool TryDerive(ReadOnlySpan<byte> baseIv, long index, Span<byte> nonce)
    {
        if (baseIv.Length < AeadAlgorithms.NonceSize || index < 0 || index > uint.MaxValue) return false;
        var counter = (ulong)BinaryPrimitives.ReadUInt32BigEndian(baseIv.Slice(8, 4)) + (ulong)index;
        if (counter > uint.MaxValue) return false;
        baseIv[..8].CopyTo(nonce);
        BinaryPrimitives.WriteUInt32BigEndian(nonce.Slice(8, 4), (uint)counter);
        return true;
    }

    /// <summary>True when all <paramref name="chunkCount"/> chunks can be derived from <paramref name="baseIv"/>.</summary>
    public static bool Fits(ReadOnlySpan<byte> baseIv, long chunkCount)
        => chunkCount <= 1 || (ulong)BinaryPrimitives.ReadUInt32BigEndian(baseIv.Slice(8, 4)) + (ulong)(chunkCount - 1) <= uint.MaxValue;

    /// <summary>Number of chunks of a tensor: <c>max(1, ceil(length / chunkSize))</c>.</summary>
    public static long Count(long length, long chunkSize) => length == 0 ? 1 : (length + chunkSize - 1) / chunkSize;
}
