namespace CryptoTensors.Gpu.Interop.DLPack;

/// <summary><c>DLDataTypeCode</c> of <c>dlpack.h</c> (1.1), stored in the <c>uint8_t code</c> of <see cref="DLDataType"/>.</summary>
public enum DLDataTypeCode : byte
{
    /// <summary><c>kDLInt</c>: signed integer.</summary>
    Int = 0,
    /// <summary><c>kDLUInt</c>: unsigned integer.</summary>
    UInt = 1,
    /// <summary><c>kDLFloat</c>: IEEE binary floating point.</summary>
    Float = 2,
    /// <summary><c>kDLOpaqueHandle</c>: reserved for testing.</summary>
    OpaqueHandle = 3,
    /// <summary><c>kDLBfloat</c>: bfloat16.</summary>
    Bfloat = 4,
    /// <summary><c>kDLComplex</c>: complex, a compact (real, imaginary) pair; bits count both.</summary>
    Complex = 5,
    /// <summary><c>kDLBool</c>: boolean, stored in 8 bits.</summary>
    Bool = 6,
    /// <summary><c>kDLFloat8_e3m4</c>.</summary>
    Float8E3M4 = 7,
    /// <summary><c>kDLFloat8_e4m3</c> (IEEE-like, with infinities).</summary>
    Float8E4M3 = 8,
    /// <summary><c>kDLFloat8_e4m3b11fnuz</c>.</summary>
    Float8E4M3B11Fnuz = 9,
    /// <summary><c>kDLFloat8_e4m3fn</c> (finite, one NaN encoding: OCP FP8 E4M3, <c>torch.float8_e4m3fn</c>).</summary>
    Float8E4M3Fn = 10,
    /// <summary><c>kDLFloat8_e4m3fnuz</c>.</summary>
    Float8E4M3Fnuz = 11,
    /// <summary><c>kDLFloat8_e5m2</c> (OCP FP8 E5M2, <c>torch.float8_e5m2</c>).</summary>
    Float8E5M2 = 12,
    /// <summary><c>kDLFloat8_e5m2fnuz</c>.</summary>
    Float8E5M2Fnuz = 13,
    /// <summary><c>kDLFloat8_e8m0fnu</c> (OCP MX scale, <c>torch.float8_e8m0fnu</c>).</summary>
    Float8E8M0Fnu = 14,
    /// <summary><c>kDLFloat6_e2m3fn</c> (OCP MX FP6; bits must be 6).</summary>
    Float6E2M3Fn = 15,
    /// <summary><c>kDLFloat6_e3m2fn</c> (OCP MX FP6; bits must be 6).</summary>
    Float6E3M2Fn = 16,
    /// <summary><c>kDLFloat4_e2m1fn</c> (OCP MX FP4; bits must be 4).</summary>
    Float4E2M1Fn = 17,
}
