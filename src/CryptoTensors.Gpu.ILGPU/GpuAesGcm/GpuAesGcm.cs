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
    private readonly Accelerator _accelerator;
    private readonly Action<Index1D, ArrayView<byte>, ArrayView<GcmWorkItem>, ArrayView<uint>, ArrayView<uint>, ArrayView<byte>, ArrayView<byte>, ArrayView<int>, int> _kernel;
    private readonly MemoryBuffer1D<uint, Stride1D.Dense> _te;
    private readonly MemoryBuffer1D<byte, Stride1D.Dense> _sbox;
    private readonly MemoryBuffer1D<byte, Stride1D.Dense> _noAad;

    public GpuAesGcm(Accelerator accelerator)
    {
        _accelerator = accelerator;
        accelerator.Bind();
        _kernel = accelerator.LoadAutoGroupedStreamKernel<Index1D, ArrayView<byte>, ArrayView<GcmWorkItem>, ArrayView<uint>, ArrayView<uint>, ArrayView<byte>,
            ArrayView<byte>, ArrayView<int>, int>(GcmKernels.Decrypt);
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
            using var list = _accelerator.Allocate1D(items.ToArray());
            using var status = _accelerator.Allocate1D<int>(items.Length);
            status.MemSetToZero();
            _kernel(items.Length, data, list.View, roundKeys.View, _te.View, _sbox.View, aad.Length > 0 ? aad : _noAad.View, status.View, rounds);
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
