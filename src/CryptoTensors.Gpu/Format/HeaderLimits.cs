namespace CryptoTensors.Gpu.Format;

/// <summary>
/// The bounds a header must stay within before anything is sized from it (docs/BOUNDS.md lists each with where it is
/// enforced, its error code and its test). Each bound is far above what real models use, and each one keeps the memory a
/// hostile header can make a reader allocate within a small multiple of the header's own bytes.
/// </summary>
public static class HeaderLimits
{
    /// <summary>The largest header (bytes, padding included): the reference's limit, <see cref="ErrorCode.HeaderTooLarge"/>.</summary>
    public const long MaxHeaderLength = SafetensorsHeader.MaxHeaderLength;

    /// <summary>The deepest JSON nesting of a header (<see cref="ErrorCode.NestingTooDeep"/>).</summary>
    public const int MaxJsonDepth = 64;

    /// <summary>The deepest JSON nesting of a reserved field's value (<c>__crypto_keys__</c>, <c>__encryption__</c>, <c>__policy__</c>; <see cref="ErrorCode.InvalidCryptoField"/>).</summary>
    public const int MaxReservedFieldDepth = 16;

    /// <summary>The most tensors one header may list (<see cref="ErrorCode.LimitExceeded"/>); also the most <c>__encryption__</c> entries (<see cref="ErrorCode.InvalidCryptoField"/>).</summary>
    public const int MaxTensorCount = 1_000_000;

    /// <summary>The most <c>__metadata__</c> entries (<see cref="ErrorCode.LimitExceeded"/>).</summary>
    public const int MaxMetadataEntries = 100_000;

    /// <summary>The largest shape rank (number of dimensions) of a tensor, as NumPy 2's <c>NPY_MAXDIMS</c> (<see cref="ErrorCode.LimitExceeded"/>).</summary>
    public const int MaxRank = 64;
}
