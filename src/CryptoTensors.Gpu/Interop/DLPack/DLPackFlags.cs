namespace CryptoTensors.Gpu.Interop.DLPack;

/// <summary>The <c>flags</c> bits of <see cref="DLManagedTensorVersioned"/> (<c>DLPACK_FLAG_BITMASK_*</c>).</summary>
[Flags]
public enum DLPackFlags : ulong
{
    /// <summary>No flag: writable, shared with the producer, sub-byte elements packed.</summary>
    None = 0,
    /// <summary><c>DLPACK_FLAG_BITMASK_READ_ONLY</c>: the consumer must not write the data.</summary>
    ReadOnly = 1UL << 0,
    /// <summary><c>DLPACK_FLAG_BITMASK_IS_COPIED</c>: the data is a copy the consumer owns alone.</summary>
    IsCopied = 1UL << 1,
    /// <summary><c>DLPACK_FLAG_BITMASK_IS_SUBBYTE_TYPE_PADDED</c>: each sub-byte element takes a whole byte.</summary>
    IsSubbyteTypePadded = 1UL << 2,
}
