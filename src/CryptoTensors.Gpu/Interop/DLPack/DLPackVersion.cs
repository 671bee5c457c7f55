using System.Runtime.InteropServices;

namespace CryptoTensors.Gpu.Interop.DLPack;

/// <summary>
/// <c>DLPackVersion</c> of <c>dlpack.h</c>: the ABI version a <see cref="DLManagedTensorVersioned"/> was made for.
/// A consumer that sees another major version must only call the deleter; another minor version only adds enum values.
/// </summary>
/// <param name="Major"><c>major</c>: changes when the layout of <see cref="DLManagedTensorVersioned"/> changes.</param>
/// <param name="Minor"><c>minor</c>: changes when codes (device types, dtype codes) are added.</param>
[StructLayout(LayoutKind.Sequential)]
public readonly record struct DLPackVersion(uint Major, uint Minor)
{
    /// <summary>The version this library writes: 1.1, the first with the float8/float6/float4 dtype codes it uses.</summary>
    public static DLPackVersion Current { get; } = new(1, 1);
}
