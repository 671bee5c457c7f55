using System.Runtime.InteropServices;
using static CryptoTensors.Gpu.Devices.Cuda.CudaNativeMethods;

namespace CryptoTensors.Gpu.Devices.Cuda;

/// <summary>Device memory from <c>cuMemAlloc</c>, freed on dispose.</summary>
public sealed unsafe class CudaDeviceBuffer : SafeHandle
{
    private readonly ulong _pointer;

    internal CudaDeviceBuffer(CudaDevice device, ulong pointer, long length) : base(IntPtr.Zero, ownsHandle: true)
    {
        Device = device;
        _pointer = pointer;
        Length = length;
        device.AddRef();
        SetHandle((nint)pointer);
    }

    /// <summary>The device the memory lives on.</summary>
    public CudaDevice Device { get; }

    /// <summary>The device address (<c>CUdeviceptr</c>).</summary>
    public ulong DevicePointer => IsClosed ? throw new ObjectDisposedException(nameof(CudaDeviceBuffer)) : _pointer;

    /// <summary>Size in bytes.</summary>
    public long Length { get; }

    /// <inheritdoc />
    public override bool IsInvalid => handle == IntPtr.Zero;

    /// <summary>Copies <paramref name="destination"/>.Length bytes from <paramref name="offset"/> to host memory (synchronous).</summary>
    public void CopyToHost(long offset, Span<byte> destination)
    {
        CheckRange(offset, destination.Length);
        Device.MakeCurrent();
        fixed (byte* d = destination)
            Check(Driver.cuMemcpyDtoH(d, _pointer + (ulong)offset, (nuint)destination.Length), "cuMemcpyDtoH_v2");
    }

    /// <summary>Copies <paramref name="source"/> to <paramref name="offset"/> (synchronous).</summary>
    public void CopyFromHost(long offset, ReadOnlySpan<byte> source)
    {
        CheckRange(offset, source.Length);
        Device.MakeCurrent();
        fixed (byte* s = source)
            Check(Driver.cuMemcpyHtoD(_pointer + (ulong)offset, s, (nuint)source.Length), "cuMemcpyHtoD_v2");
    }

    /// <summary>Sets <paramref name="length"/> bytes from <paramref name="offset"/> to zero (synchronous: <c>cuMemsetD8</c> may
    /// return before the memory is set, so the context is synchronized before this returns).</summary>
    public void Clear(long offset, long length)
    {
        CheckRange(offset, length);
        Device.MakeCurrent();
        Check(Driver.cuMemsetD8(_pointer + (ulong)offset, 0, (nuint)length), "cuMemsetD8_v2");
        Check(Driver.cuCtxSynchronize(), "cuCtxSynchronize");
    }

    private void CheckRange(long offset, long length)
    {
        if (offset < 0 || length < 0 || offset > Length - length)
            throw new ArgumentOutOfRangeException(nameof(offset), $"range [{offset}, {offset}+{length}) is outside the {Length}-byte buffer");
    }

    /// <inheritdoc />
    protected override bool ReleaseHandle()
    {
        Driver.cuCtxSetCurrent(Device.Context);
        var ok = Driver.cuMemFree(_pointer) == 0;
        Device.Release();
        return ok;
    }
}
