using System.Runtime.InteropServices;
using static CryptoTensors.Gpu.Devices.Cuda.CudaNativeMethods;

namespace CryptoTensors.Gpu.Devices.Cuda;

/// <summary>
/// One CUDA device and its primary context — the context libtorch and the CUDA runtime use, so device pointers
/// filled here are valid for TorchSharp and other runtime-API code in the process. Dispose releases this
/// object's reference on the primary context (the driver keeps it while anyone else holds one).
/// </summary>
public sealed unsafe class CudaDevice : IDisposable
{
    private static readonly Lazy<(int Count, CudaUnavailableException? Error)> Initialized = new(Initialize);
    private readonly PrimaryContextHandle _context;

    private CudaDevice(int ordinal, int device, PrimaryContextHandle context, string name, long totalMemory)
    {
        Ordinal = ordinal;
        Handle = device;
        _context = context;
        Name = name;
        TotalMemory = totalMemory;
    }

    /// <summary>The device ordinal (<c>cuda:N</c>).</summary>
    public int Ordinal { get; }

    /// <summary>The device's name, e.g. <c>NVIDIA H100 80GB HBM3</c>.</summary>
    public string Name { get; }

    /// <summary>Device memory in bytes.</summary>
    public long TotalMemory { get; }

    internal int Handle { get; }

    internal nint Context => _context.DangerousGetHandle();

    /// <summary>Number of CUDA devices; throws <see cref="CudaUnavailableException"/> when there is no driver.</summary>
    public static int DeviceCount => Initialized.Value.Error is { } e ? e.Reason == CudaUnavailableReason.NoDevice ? 0 : throw e : Initialized.Value.Count;

    /// <summary>Whether a CUDA driver and at least one device are usable; <paramref name="reason"/> says why not.</summary>
    public static bool IsAvailable(out string? reason)
    {
        reason = Initialized.Value.Error?.Message;
        return reason is null;
    }

    /// <summary>The driver's CUDA version (e.g. 12080 for 12.8).</summary>
    public static int DriverVersion
    {
        get
        {
            int v;
            Check(Driver.cuDriverGetVersion(&v), "cuDriverGetVersion");
            return v;
        }
    }

    /// <summary>
    /// Opens device <paramref name="ordinal"/>, retaining its primary context. Throws
    /// <see cref="CudaUnavailableException"/> ("CUDA driver not found" / "no CUDA device") on machines without one.
    /// </summary>
    public static CudaDevice Open(int ordinal = 0)
    {
        var (count, error) = Initialized.Value;
        if (error is not null) throw error;
        if ((uint)ordinal >= (uint)count)
            throw new CudaUnavailableException(CudaUnavailableReason.NoDevice, $"no CUDA device {ordinal}: this machine has {count}");
        var api = Driver;
        int device;
        Check(api.cuDeviceGet(&device, ordinal), "cuDeviceGet");
        nint ctx;
        Check(api.cuDevicePrimaryCtxRetain(&ctx, device), "cuDevicePrimaryCtxRetain");
        var handle = new PrimaryContextHandle(ctx, device);
        try
        {
            var name = stackalloc byte[256];
            Check(api.cuDeviceGetName(name, 256, device), "cuDeviceGetName");
            nuint total;
            Check(api.cuDeviceTotalMem(&total, device), "cuDeviceTotalMem_v2");
            return new CudaDevice(ordinal, device, handle, Marshal.PtrToStringUTF8((nint)name) ?? "", (long)total);
        }
        catch
        {
            handle.Dispose();
            throw;
        }
    }

    /// <summary>Makes the primary context current on the calling thread (done by every method that needs it).</summary>
    public void MakeCurrent() => Check(Driver.cuCtxSetCurrent(Context), "cuCtxSetCurrent");

    /// <summary>Allocates <paramref name="length"/> bytes of device memory (<c>cuMemAlloc</c>: 256-byte aligned or better).</summary>
    public CudaDeviceBuffer Allocate(long length)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(length);
        MakeCurrent();
        ulong ptr;
        Check(Driver.cuMemAlloc(&ptr, (nuint)Math.Max(length, 1)), "cuMemAlloc_v2");
        return new CudaDeviceBuffer(this, ptr, length);
    }

    /// <summary>Creates a non-blocking stream on this device.</summary>
    public CudaStream CreateStream()
    {
        MakeCurrent();
        nint s;
        Check(Driver.cuStreamCreate(&s, StreamNonBlocking), "cuStreamCreate");
        return new CudaStream(this, s, owned: true);
    }

    /// <summary>Wraps a stream created elsewhere (e.g. TorchSharp's current stream); it is not destroyed on dispose.</summary>
    public CudaStream WrapStream(IntPtr stream) => new(this, stream, owned: false);

    /// <summary>Waits until every operation on the device's context has finished.</summary>
    public void Synchronize()
    {
        MakeCurrent();
        Check(Driver.cuCtxSynchronize(), "cuCtxSynchronize");
    }

    /// <summary>Keeps the primary context alive while a resource allocated in it exists.</summary>
    internal void AddRef()
    {
        var added = false;
        _context.DangerousAddRef(ref added);
    }

    internal void Release() => _context.DangerousRelease();

    /// <inheritdoc />
    public override string ToString() => $"cuda:{Ordinal} ({Name})";

    /// <summary>Releases this object's reference on the primary context.</summary>
    public void Dispose() => _context.Dispose();

    private static (int, CudaUnavailableException?) Initialize()
    {
        if (!TryGetDriver(out var api, out var error))
            return (0, new CudaUnavailableException(CudaUnavailableReason.DriverNotFound, $"CUDA driver not found: {error}"));
        var r = api!.cuInit(0);
        if (r == ErrorNoDevice)
            return (0, new CudaUnavailableException(CudaUnavailableReason.NoDevice, "no CUDA device: the driver loaded but cuInit reports CUDA_ERROR_NO_DEVICE"));
        if (r != 0)
            return (0, new CudaUnavailableException(CudaUnavailableReason.NoDevice, $"no CUDA device: cuInit failed with {ErrorName(r)} ({r})"));
        int count;
        r = api.cuDeviceGetCount(&count);
        if (r != 0 || count <= 0)
            return (0, new CudaUnavailableException(CudaUnavailableReason.NoDevice, "no CUDA device: the driver reports none"));
        return (count, null);
    }

    private sealed class PrimaryContextHandle : SafeHandle
    {
        private readonly int _device;

        public PrimaryContextHandle(nint context, int device) : base(IntPtr.Zero, ownsHandle: true)
        {
            SetHandle(context);
            _device = device;
        }

        public override bool IsInvalid => handle == IntPtr.Zero;

        protected override bool ReleaseHandle() => Driver.cuDevicePrimaryCtxRelease(_device) == 0;
    }
}

/// <summary>A CUDA stream (<c>CUstream</c>). Owned streams are destroyed on dispose.</summary>
public sealed unsafe class CudaStream : SafeHandle
{
    private readonly bool _owned;

    internal CudaStream(CudaDevice device, nint stream, bool owned) : base(IntPtr.Zero, ownsHandle: true)
    {
        Device = device;
        _owned = owned;
        device.AddRef();
        SetHandle(stream);
    }

    /// <summary>The device the stream belongs to.</summary>
    public CudaDevice Device { get; }

    /// <summary>The raw <c>CUstream</c> (for interop with other CUDA code; 0 is the legacy default stream).</summary>
    public IntPtr Pointer => handle;

    /// <inheritdoc />
    public override bool IsInvalid => false;

    /// <summary>Blocks until every operation queued on the stream has finished.</summary>
    public void Synchronize()
    {
        Device.MakeCurrent();
        CudaNativeMethods.Check(CudaNativeMethods.Driver.cuStreamSynchronize(handle), "cuStreamSynchronize");
    }

    /// <inheritdoc />
    protected override bool ReleaseHandle()
    {
        var ok = !_owned || handle == 0 || CudaNativeMethods.Driver.cuStreamDestroy(handle) == 0;
        Device.Release();
        return ok;
    }
}

/// <summary>A CUDA event (timing disabled), used to tell when a staging slot's copy has finished.</summary>
internal sealed unsafe class CudaEvent : SafeHandle
{
    private readonly CudaDevice _device;

    private CudaEvent(CudaDevice device, nint e) : base(IntPtr.Zero, ownsHandle: true)
    {
        _device = device;
        device.AddRef();
        SetHandle(e);
    }

    public static CudaEvent Create(CudaDevice device, bool timing = false)
    {
        device.MakeCurrent();
        nint e;
        CudaNativeMethods.Check(CudaNativeMethods.Driver.cuEventCreate(&e, timing ? 0 : CudaNativeMethods.EventDisableTiming), "cuEventCreate");
        return new CudaEvent(device, e);
    }

    public override bool IsInvalid => handle == IntPtr.Zero;

    public void Record(CudaStream stream) => CudaNativeMethods.Check(CudaNativeMethods.Driver.cuEventRecord(handle, stream.Pointer), "cuEventRecord");

    public void Synchronize() => CudaNativeMethods.Check(CudaNativeMethods.Driver.cuEventSynchronize(handle), "cuEventSynchronize");

    public float ElapsedMillisecondsSince(CudaEvent start)
    {
        float ms;
        CudaNativeMethods.Check(CudaNativeMethods.Driver.cuEventElapsedTime(&ms, start.handle, handle), "cuEventElapsedTime");
        return ms;
    }

    protected override bool ReleaseHandle()
    {
        var ok = CudaNativeMethods.Driver.cuEventDestroy(handle) == 0;
        _device.Release();
        return ok;
    }
}
