using System.Runtime.InteropServices;

namespace CryptoTensors.Gpu.Interop.DLPack;

/// <summary><c>DLDataType</c> of <c>dlpack.h</c> (4 bytes): an element type in native byte order.</summary>
/// <param name="Code"><c>code</c>: the kind of number.</param>
/// <param name="Bits"><c>bits</c>: bits per lane (e.g. 16 for bfloat16, 64 for complex64, 4 for float4).</param>
/// <param name="Lanes"><c>lanes</c>: vector lanes per element; 1 for every tensor this library exports.</param>
[StructLayout(LayoutKind.Sequential)]
public readonly record struct DLDataType(DLDataTypeCode Code, byte Bits, ushort Lanes);
