using System.Runtime.CompilerServices;
namespace CryptoTensors.Gpu.Format;

/// <summary>
/// The 20 safetensors dtypes, in the reference's enum order (the writer sorts by it, descending).
/// The member names are the JSON spellings.
/// </summary>
public enum Dtype
{
    /// <summary>Boolean, 8 bits.</summary>
    BOOL = 0,
    /// <summary>MXFP4 (E2M1), 4 bits.</summary>
    F4,
    /// <summary>FP6 E2M3, 6 bits.</summary>
    F6_E2M3,
    /// <summary>FP6 E3M2, 6 bits.</summary>
    F6_E3M2,
    /// <summary>Unsigned 8-bit integer.</summary>
    U8,
    /// <summary>Signed 8-bit integer.</summary>
    I8,
    /// <summary>FP8 E5M2.</summary>
    F8_E5M2,
    /// <summary>FP8 E4M3.</summary>
    F8_E4M3,
    /// <summary>FP8 E8M0 (scale).</summary>
    F8_E8M0,
    /// <summary>Signed 16-bit integer.</summary>
    I16,
    /// <summary>Unsigned 16-bit integer.</summary>
    U16,
    /// <summary>IEEE half.</summary>
    F16,
    /// <summary>bfloat16.</summary>
    BF16,
    /// <summary>Signed 32-bit integer.</summary>
    I32,
    /// <summary>Unsigned 32-bit integer.</summary>
    U32,
    /// <summary>IEEE single.</summary>
    F32,
    /// <summary>complex64 (two F32).</summary>
    C64,
    /// <summary>IEEE double.</summary>
    F64,
    /// <summary>Signed 64-bit integer.</summary>
    I64,
    /// <summary>Unsigned 64-bit integer.</summary>
    U64,
}

/// <summary>Sizes and names of <see cref="Dtype"/>s.</summary>
public static class Dtypes
{
    private static readonly string[] Names = Enum.GetNames<Dtype>();
    private static readonly byte[][] Utf8Names = Names.Select(System.Text.Encoding.UTF8.GetBytes).ToArray();

    /// <summary>All dtypes in enum order.</summary>
    public static IReadOnlyList<Dtype> All { get; } = Enum.GetValues<Dtype>();

    /// <summary>Bits per element.</summary>
    public static int BitSize(this Dtype dtype) => dtype switch
    {
        Dtype.F4 => 4,
        Dtype.F6_E2M3 or Dtype.F6_E3M2 => 6,
        Dtype.BOOL or Dtype.U8 or Dtype.I8 or Dtype.F8_E5M2 or Dtype.F8_E4M3 or Dtype.F8_E8M0 => 8,
        Dtype.I16 or Dtype.U16 or Dtype.F16 or Dtype.BF16 => 16,
        Dtype.I32 or Dtype.U32 or Dtype.F32 => 32,
        Dtype.C64 or Dtype.F64 or Dtype.I64 or Dtype.U64 => 64,
        _ => throw new ArgumentOutOfRangeException(nameof(dtype)),
    };

    /// <summary>The JSON name.</summary>
    public static string Name(this Dtype dtype) => Names[(int)dtype];

    internal static ReadOnlySpan<byte> Utf8Name(this Dtype dtype) => Utf8Names[(int)dtype];

    /// <summary>Parses a JSON dtype name (exact, case-sensitive).</summary>
    public static bool TryParse(ReadOnlySpan<char> name, out Dtype dtype)
    {
        for (var i = 0; i < Names.Length; i++)
        {
            if (name.SequenceEqual(Names[i])) { dtype = (Dtype)i; return true; }
        }
        dtype = default;
        return false;
    }

    /// <summary>Parses a dtype name given as (unescaped) UTF-8 bytes (exact, case-sensitive).</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    internal static bool TryParseUtf8(ReadOnlySpan<byte> name, out Dtype dtype)
    {
        for (var i = 0; i < Utf8Names.Length; i++)
        {
            if (name.SequenceEqual(Utf8Names[i])) { dtype = (Dtype)i; return true; }
        }
        dtype = default;
        return false;
    }

    /// <summary>
    /// Byte size of a tensor of this dtype and shape, or an error code: <see cref="ErrorCode.ValidationOverflow"/>
    /// when the element count or bit count overflows 64 bits, <see cref="ErrorCode.MisalignedSlice"/> when the
    /// bits do not fill whole bytes.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public static ErrorCode? TryByteSize(this Dtype dtype, ReadOnlySpan<ulong> shape, out ulong bytes)
    {
        bytes = 0;
        ulong elements = 1;
        foreach (var d in shape)
        {
            if (!TryMul(elements, d, out elements)) return ErrorCode.ValidationOverflow;
        }
        if (!TryMul(elements, (ulong)dtype.BitSize(), out var bits)) return ErrorCode.ValidationOverflow;
        if (bits % 8 != 0) return ErrorCode.MisalignedSlice;
        bytes = bits / 8;
        return null;
    }

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static bool TryMul(ulong a, ulong b, out ulong r)
    {
        var hi = Math.BigMul(a, b, out r);
        return hi == 0;
    }
}
