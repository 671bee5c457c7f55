using System.Runtime.InteropServices;

namespace CryptoTensors.Gpu.Interop.DLPack;

/// <summary>
/// <c>DLTensor</c> of <c>dlpack.h</c> (48 bytes on 64-bit platforms): a non-owning description of strided memory.
/// The pointers are owned by whoever made the enclosing <see cref="DLManagedTensorVersioned"/>.
/// </summary>
[StructLayout(LayoutKind.Sequential)]
public unsafe struct DLTensor
{
    /// <summary><c>data</c>: the first byte (device-specific for device memory); <c>NULL</c> when there are no elements.</summary>
    public void* Data;

    /// <summary><c>device</c>: where <see cref="Data"/> lives.</summary>
    public DLDevice Device;

    /// <summary><c>ndim</c>: number of dimensions (0 for a scalar).</summary>
    public int NDim;

    /// <summary><c>dtype</c>: the element type.</summary>
    public DLDataType DType;

    /// <summary><c>shape</c>: <see cref="NDim"/> extents.</summary>
    public long* Shape;

    /// <summary><c>strides</c>: <see cref="NDim"/> strides in elements (not bytes); <c>NULL</c> means C-contiguous.</summary>
    public long* Strides;

    /// <summary><c>byte_offset</c>: bytes from <see cref="Data"/> to the first element.</summary>
    public ulong ByteOffset;
}
