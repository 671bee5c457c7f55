using CryptoTensors.Gpu.Devices.Cuda;
using static CryptoTensors.Gpu.Devices.Cuda.CudaNativeMethods;

namespace CryptoTensors.Gpu.Devices.Staging;

/// <summary>
/// Copies staging slots to device memory with <c>cuMemcpyHtoDAsync</c> on two or more streams (slot i on stream
/// i mod n, or all on a caller's stream), recording one CUDA event per slot so a slot is reused only once its copy
/// has finished. The ring must be page-locked and registered with the driver; an unregistered ring is registered
/// here (<c>cuMemHostRegister</c>) for the duration of the load.
/// </summary>
public sealed unsafe class CudaCopyEngine : IDeviceCopyEngine, IDisposable
{
    private readonly CudaDevice _device;
    private readonly CudaStream[] _streams;
    private readonly bool _ownsStreams;
    private CudaEvent[] _events = [];
    private StagingRing? _ring;
    private void* _registered;

    /// <summary>Creates an engine with <paramref name="streams"/> streams of its own on <paramref name="device"/>.</summary>
    public CudaCopyEngine(CudaDevice device, int streams = 2)
    {
        ArgumentOutOfRangeException.ThrowIfLessThan(streams, 1);
        _device = device;
        _streams = new CudaStream[streams];
        _ownsStreams = true;
        try
        {
            for (var i = 0; i < streams; i++) _streams[i] = device.CreateStream();
        }
        catch
        {
            foreach (var s in _streams) s?.Dispose();
            throw;
        }
    }

    /// <summary>Creates an engine that queues every copy on the caller's <paramref name="stream"/> (not disposed here).</summary>
    public CudaCopyEngine(CudaStream stream)
    {
        _device = stream.Device;
        _streams = [stream];
    }

    /// <inheritdoc />
    public string Name => "cuda-driver";

    /// <inheritdoc />
    public void Attach(StagingRing ring)
    {
        _device.MakeCurrent();
        if (!ring.Buffer.IsCudaRegistered)
        {
            var p = (void*)ring.Buffer.Pointer;
            var r = Driver.cuMemHostRegister(p, (nuint)ring.Length, MemHostRegisterPortable);
            if (r != ErrorHostMemoryAlreadyRegistered)
            {
                Check(r, "cuMemHostRegister_v2");
                _registered = p;
            }
        }
        _ring = ring;
        _events = new CudaEvent[ring.SlotCount];
        for (var i = 0; i < _events.Length; i++) _events[i] = CudaEvent.Create(_device);
    }

    /// <inheritdoc />
    public void EnterWorker() => _device.MakeCurrent();

    /// <inheritdoc />
    public void CopyAsync(int slot, long length, ulong destination)
    {
        var stream = _streams[slot % _streams.Length];
        Check(Driver.cuMemcpyHtoDAsync(destination, (void*)_ring!.SlotPointer(slot), (nuint)length, stream.Pointer), "cuMemcpyHtoDAsync_v2");
        _events[slot].Record(stream);
    }

    /// <inheritdoc />
    /// <remarks><c>cuEventSynchronize</c> returns at once for an event never recorded (a slot not used yet).</remarks>
    public void WaitForSlot(int slot) => _events[slot].Synchronize();

    /// <inheritdoc />
    public void Synchronize()
    {
        _device.MakeCurrent();
        foreach (var s in _streams) s.Synchronize();
    }

    /// <inheritdoc />
    /// <remarks><c>cuMemsetD8</c> may return before the memory is set; the context is synchronized before returning.</remarks>
    public void Clear(ulong destination, long length)
    {
        _device.MakeCurrent();
        Check(Driver.cuMemsetD8(destination, 0, (nuint)length), "cuMemsetD8_v2");
        Check(Driver.cuCtxSynchronize(), "cuCtxSynchronize");
    }

    /// <inheritdoc />
    public void Detach()
    {
        foreach (var e in _events) e.Dispose();
        _events = [];
        if (_registered is not null)
        {
            _device.MakeCurrent();
            Driver.cuMemHostUnregister(_registered);
            _registered = null;
        }
        _ring = null;
    }

    /// <summary>Destroys the engine's own streams.</summary>
    public void Dispose()
    {
        Detach();
        if (_ownsStreams) foreach (var s in _streams) s.Dispose();
    }
}
