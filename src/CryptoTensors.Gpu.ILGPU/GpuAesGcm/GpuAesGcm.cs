using System.Buffers.Binary;
using System.Runtime.InteropServices;
using ILGPU;
using ILGPU.Runtime;

namespace CryptoTensors.Gpu.ILGPU;

/// <summary>
/// AES-128/256-GCM decryption on an ILGPU accelerator (<see cref="GcmKernels"/>): many messages (v2 chunks, whole v1
/// tensors) of many keys per launch, each authenticated before it is decrypted in place, a failed one zeroed. The key
/// schedule runs on the host from the unwrapped data keys (in a pinned array zeroed after use); the round keys are
/// uploaded for the launch and the device copy is zeroed and freed when it ends.
/// </summary>
internal sealed class GpuAesGcm : IDisposable
{
    /// <summary>Default segment: 256 blocks (4 KiB), so a 2 MiB chunk is hashed and decrypted by 512 threads.</summary>
    public const int DefaultSegmentBlocks = 256;

    private readonly Accelerator _accelerator;
    private readonly Action<Index1D, ArrayView<byte>, ArrayView<GcmWorkItem>, ArrayView<GcmSegment>, ArrayView<uint>, ArrayView<uint>, ArrayView<byte>, ArrayView<ulong>, int> _ghash;
    private readonly Action<Index1D, ArrayView<byte>, ArrayView<GcmWorkItem>, ArrayView<uint>, ArrayView<uint>, ArrayView<byte>, ArrayView<ulong>, ArrayView<int>, int> _verify;
    private readonly Action<Index1D, ArrayView<byte>, ArrayView<GcmWorkItem>, ArrayView<GcmSegment>, ArrayView<uint>, ArrayView<uint>, ArrayView<byte>, ArrayView<int>, int> _ctr;
    private readonly int _segmentBlocks;
    private readonly MemoryBuffer1D<uint, Stride1D.Dense> _te;
    private readonly MemoryBuffer1D<byte, Stride1D.Dense> _sbox;
    private readonly MemoryBuffer1D<byte, Stride1D.Dense> _noAad;

    /// <summary>Kernels for <paramref name="accelerator"/>; messages are cut into segments of <paramref name="segmentBlocks"/> 16-byte blocks.</summary>
    public GpuAesGcm(Accelerator accelerator, int segmentBlocks = DefaultSegmentBlocks)
    {
        ArgumentOutOfRangeException.ThrowIfLessThan(segmentBlocks, 1);
        _accelerator = accelerator;
        _segmentBlocks = segmentBlocks;
        accelerator.Bind();
        _ghash = accelerator.LoadAutoGroupedStreamKernel<Index1D, ArrayView<byte>, ArrayView<GcmWorkItem>, ArrayView<GcmSegment>, ArrayView<uint>, ArrayView<uint>,
            ArrayView<byte>, ArrayView<ulong>, int>(GcmKernels.GhashSegments);
        _verify = accelerator.LoadAutoGroupedStreamKernel<Index1D, ArrayView<byte>, ArrayView<GcmWorkItem>, ArrayView<uint>, ArrayView<uint>, ArrayView<byte>,
            ArrayView<ulong>, ArrayView<int>, int>(GcmKernels.VerifyTags);
        _ctr = accelerator.LoadAutoGroupedStreamKernel<Index1D, ArrayView<byte>, ArrayView<GcmWorkItem>, ArrayView<GcmSegment>, ArrayView<uint>, ArrayView<uint>,
            ArrayView<byte>, ArrayView<int>, int>(GcmKernels.CtrSegments);
        _te = accelerator.Allocate1D(AesTables.Te0);
        _sbox = accelerator.Allocate1D(AesTables.SBox);
        _noAad = accelerator.Allocate1D<byte>(1);
    }

    /// <summary>Builds the work item of one 12-byte-nonce message at <paramref name="offset"/>.</summary>
    public static GcmWorkItem Item(long offset, int length, int keyIndex, ReadOnlySpan<byte> nonce, ReadOnlySpan<byte> tag, long aadOffset = 0, int aadLength = 0)
    {
        if (nonce.Length != 12 || tag.Length != 16) throw new ArgumentException("GCM work items take 12-byte nonces and 16-byte tags");
        return new GcmWorkItem
        {
            DataOffset = offset, Length = length, KeyIndex = keyIndex, AadOffset = aadOffset, AadLength = aadLength, J0Counter = 1,
            N0 = BinaryPrimitives.ReadUInt32BigEndian(nonce), N1 = BinaryPrimitives.ReadUInt32BigEndian(nonce[4..]), N2 = BinaryPrimitives.ReadUInt32BigEndian(nonce[8..]),
            T0 = BinaryPrimitives.ReadUInt32BigEndian(tag), T1 = BinaryPrimitives.ReadUInt32BigEndian(tag[4..]),
            T2 = BinaryPrimitives.ReadUInt32BigEndian(tag[8..]), T3 = BinaryPrimitives.ReadUInt32BigEndian(tag[12..]),
        };
    }

    /// <summary>
    /// Authenticates and decrypts <paramref name="items"/> in place in <paramref name="data"/>, with
    /// <paramref name="keys"/> the concatenated data keys (<paramref name="keySize"/> bytes each, indexed by
    /// <see cref="GcmWorkItem.KeyIndex"/>). Returns each item's status (<see cref="GcmKernels.Authenticated"/> or
    /// not: then its bytes are zero). Synchronous: the round keys are gone from the device when it returns.
    /// </summary>
    public int[] Decrypt(ArrayView<byte> data, ReadOnlySpan<GcmWorkItem> items, ReadOnlySpan<byte> keys, int keySize, ArrayView<byte> aad = default)
    {
        if (items.Length == 0) return [];
        var rounds = AesTables.Rounds(keySize);
        if (keys.Length == 0 || keys.Length % keySize != 0) throw new ArgumentException("keys must be whole data keys", nameof(keys));
        var keyCount = keys.Length / keySize;
        foreach (ref readonly var it in items)
        {
            if (it.KeyIndex < 0 || it.KeyIndex >= keyCount || it.Length < 0 || it.DataOffset < 0 || it.DataOffset + it.Length > data.Length)
                throw new ArgumentOutOfRangeException(nameof(items), "a work item lies outside the data or names no key");
        }
        _accelerator.Bind();
        var words = GC.AllocateArray<uint>(keyCount * GcmKernels.KeyStride, pinned: true);
        MemoryBuffer1D<uint, Stride1D.Dense>? roundKeys = null;
        try
        {
            for (var i = 0; i < keyCount; i++) AesTables.Expand(keys.Slice(i * keySize, keySize), words.AsSpan(i * GcmKernels.KeyStride, GcmKernels.KeyStride));
            roundKeys = _accelerator.Allocate1D(words);
            CryptographicZero(words);
            var work = items.ToArray();
            var segments = new List<GcmSegment>();
            for (var i = 0; i < work.Length; i++)
            {
                var blocks = ((long)work[i].Length + 15) / 16;
                work[i].SegmentFirst = segments.Count;
                for (long f = 0; f < blocks; f += _segmentBlocks)
                    segments.Add(new GcmSegment { Item = i, FirstBlock = f, Blocks = (int)Math.Min(_segmentBlocks, blocks - f) });
                work[i].SegmentCount = segments.Count - work[i].SegmentFirst;
            }
            using var list = _accelerator.Allocate1D(work);
            using var segs = _accelerator.Allocate1D(segments.Count > 0 ? segments.ToArray() : [default(GcmSegment)]);
            using var partials = _accelerator.Allocate1D<ulong>(Math.Max(1, 2L * segments.Count));
            using var status = _accelerator.Allocate1D<int>(items.Length);
            status.MemSetToZero();
            ArrayView<byte> aadView = aad.Length > 0 ? aad : _noAad.View.AsContiguous();
            if (segments.Count > 0) _ghash(segments.Count, data, list.View, segs.View, roundKeys.View, _te.View, _sbox.View, partials.View, rounds);
            _verify(work.Length, aadView, list.View, roundKeys.View, _te.View, _sbox.View, partials.View, status.View, rounds);
            if (segments.Count > 0) _ctr(segments.Count, data, list.View, segs.View, roundKeys.View, _te.View, _sbox.View, status.View, rounds);
            _accelerator.Synchronize();
            return status.GetAsArray1D();
        }
        finally
        {
            CryptographicZero(words);
            if (roundKeys is not null)
            {
                try
                {
                    roundKeys.MemSetToZero();
                    _accelerator.Synchronize();
                }
                finally
                {
                    roundKeys.Dispose();
                }
            }
        }
    }

    private static void CryptographicZero(uint[] words) => System.Security.Cryptography.CryptographicOperations.ZeroMemory(MemoryMarshal.AsBytes(words.AsSpan()));

    /// <inheritdoc />
    public void Dispose()
    {
        _te.Dispose();
        _sbox.Dispose();
        _noAad.Dispose();
    }
}
