using CryptoTensors.Gpu.Format;

namespace CryptoTensors.Gpu.Interop.DLPack;

/// <summary>How safetensors <see cref="Dtype"/>s are described to DLPack.</summary>
public static class DLPackDtypes
{
    /// <summary>
    /// The <see cref="DLDataType"/> of <paramref name="dtype"/>, always one lane. Every safetensors dtype has one:
    /// <list type="bullet">
    /// <item><see cref="Dtype.BOOL"/> is <see cref="DLDataTypeCode.Bool"/> with 8 bits (one byte per element, as stored).</item>
    /// <item><see cref="Dtype.BF16"/> is <see cref="DLDataTypeCode.Bfloat"/> 16; <see cref="Dtype.C64"/> is
    /// <see cref="DLDataTypeCode.Complex"/> 64 (two <c>float</c>s).</item>
    /// <item>The FP8 types follow PyTorch's reading of safetensors: <see cref="Dtype.F8_E4M3"/> is
    /// <c>float8_e4m3fn</c>, <see cref="Dtype.F8_E5M2"/> is <c>float8_e5m2</c>, <see cref="Dtype.F8_E8M0"/> is
    /// <c>float8_e8m0fnu</c>.</item>
    /// <item>The sub-byte types <see cref="Dtype.F4"/> (<c>float4_e2m1fn</c>, 4 bits), <see cref="Dtype.F6_E2M3"/> and
    /// <see cref="Dtype.F6_E3M2"/> (<c>float6_e2m3fn</c>, <c>float6_e3m2fn</c>, 6 bits) keep their bit width. Safetensors
    /// stores them packed (a tensor takes shape product × bits / 8 bytes, see <see cref="Dtypes.TryByteSize"/>), which is
    /// DLPack's default for sub-byte types (<see cref="DLPackFlags.IsSubbyteTypePadded"/> unset): the exported shape is
    /// the safetensors shape, in elements, and the bytes are passed as stored, element <c>i</c> in bits
    /// <c>[i × bits, (i + 1) × bits)</c> counting from the least significant bit of the first byte. Consumers that only
    /// know byte-sized elements (e.g. PyTorch's <c>float4_e2m1fn_x2</c>) may refuse them.</item>
    /// </list>
    /// </summary>
    /// <exception cref="MalformedFileException"><see cref="ErrorCode.UnknownDtype"/>: not a defined <see cref="Dtype"/>.</exception>
    public static DLDataType ToDLDataType(this Dtype dtype) => dtype switch
    {
        Dtype.BOOL => new(DLDataTypeCode.Bool, 8, 1),
        Dtype.U8 => new(DLDataTypeCode.UInt, 8, 1),
        Dtype.I8 => new(DLDataTypeCode.Int, 8, 1),
        Dtype.U16 => new(DLDataTypeCode.UInt, 16, 1),
        Dtype.I16 => new(DLDataTypeCode.Int, 16, 1),
        Dtype.U32 => new(DLDataTypeCode.UInt, 32, 1),
        Dtype.I32 => new(DLDataTypeCode.Int, 32, 1),
        Dtype.U64 => new(DLDataTypeCode.UInt, 64, 1),
        Dtype.I64 => new(DLDataTypeCode.Int, 64, 1),
        Dtype.F16 => new(DLDataTypeCode.Float, 16, 1),
        Dtype.F32 => new(DLDataTypeCode.Float, 32, 1),
        Dtype.F64 => new(DLDataTypeCode.Float, 64, 1),
        Dtype.BF16 => new(DLDataTypeCode.Bfloat, 16, 1),
        Dtype.C64 => new(DLDataTypeCode.Complex, 64, 1),
        Dtype.F8_E4M3 => new(DLDataTypeCode.Float8E4M3Fn, 8, 1),
        Dtype.F8_E5M2 => new(DLDataTypeCode.Float8E5M2, 8, 1),
        Dtype.F8_E8M0 => new(DLDataTypeCode.Float8E8M0Fnu, 8, 1),
        Dtype.F6_E2M3 => new(DLDataTypeCode.Float6E2M3Fn, 6, 1),
        Dtype.F6_E3M2 => new(DLDataTypeCode.Float6E3M2Fn, 6, 1),
        Dtype.F4 => new(DLDataTypeCode.Float4E2M1Fn, 4, 1),
        _ => throw Errors.Create(ErrorCode.UnknownDtype, $"dtype {(int)dtype} has no DLPack type"),
    };
}
