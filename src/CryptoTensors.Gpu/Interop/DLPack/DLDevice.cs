using System.Runtime.InteropServices;

namespace CryptoTensors.Gpu.Interop.DLPack;

/// <summary><c>DLDevice</c> of <c>dlpack.h</c> (8 bytes).</summary>
/// <param name="DeviceType"><c>device_type</c>.</param>
/// <param name="DeviceId"><c>device_id</c>: the device ordinal; 0 for host, pinned and managed memory.</param>
[StructLayout(LayoutKind.Sequential)]
public readonly record struct DLDevice(DLDeviceType DeviceType, int DeviceId)
{
    /// <summary>Host memory (<see cref="DLDeviceType.Cpu"/>, id 0).</summary>
    public static DLDevice Cpu { get; } = new(DLDeviceType.Cpu, 0);

    /// <summary>Page-locked host memory registered with CUDA (<see cref="DLDeviceType.CudaHost"/>, id 0).</summary>
    public static DLDevice CudaHost { get; } = new(DLDeviceType.CudaHost, 0);

    /// <summary>Memory of CUDA device <paramref name="ordinal"/>.</summary>
    public static DLDevice Cuda(int ordinal) => new(DLDeviceType.Cuda, ordinal);
}
