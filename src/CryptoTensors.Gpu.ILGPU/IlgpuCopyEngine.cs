using ILGPU;
using ILGPU.Runtime;
using CryptoTensors.Gpu.Devices.Staging;

namespace CryptoTensors.Gpu.ILGPU;

/// <summary>
/// Copies staging slots into ILGPU buffers with asynchronous copies on ILGPU streams, one stream per slot (so
/// waiting for a slot waits for exactly its own copy). Destinations are offsets into the concatenation of the
/// target buffers in the order given. On a CUDA accelerator the ring is page-locked for the accelerator
/// (<c>CreatePageLockFromPinned</c>) unless the native shim already registered it.
/// </summary>
public sealed unsafe class IlgpuCopyEngine : IDeviceCopyEngine, IDisposable
{
    private readonly Accelerator _accelerator;
    private readonly MemoryBuffer1D<byte, Stride1D.Dense>[] _targets;
    private readonly long[] _starts;
    private AcceleratorStream[] _streams = [];
    private PageLockScope<byte>? _pageLock;
    private StagingRing? _ring;

    /// <summary>Creates an engine that fills <paramref name="targets"/> (destination offsets run across them, in order).</summary>
    public IlgpuCopyEngine(Accelerator accelerator, IReadOnlyList<MemoryBuffer1D<byte, Stride1D.Dense>> targets)
    {
        _accelerator = accelerator;
        _targets = targets.ToArray();
        _starts = new long[_targets.Length];
        long start = 0;
        for (var i = 0; i < _targets.Length; i++)
        {
            _starts[i] = start;
            start = checked(start + _targets[i].Length);
        }
    }

    /// <summary>The address at which target <paramref name="index"/> starts.</summary>
    public ulong AddressOf(int index) => (ulong)_starts[index];

    /// <inheritdoc />
    public string Name => $"ilgpu-{_accelerator.AcceleratorType.ToString().ToLowerInvariant()}";

    /// <inheritdoc />
    public void Attach(StagingRing ring)
    {
        _ring = ring;
        if (_accelerator.AcceleratorType == AcceleratorType.Cuda && !ring.Buffer.IsCudaRegistered)
            _pageLock = _accelerator.CreatePageLockFromPinned<byte>(ring.Buffer.Pointer, ring.Length);
        _streams = new AcceleratorStream[ring.SlotCount];
        for (var i = 0; i < _streams.Length; i++) _streams[i] = _accelerator.CreateStream();
    }

    /// <inheritdoc />
    public void EnterWorker() => _accelerator.Bind();

    /// <inheritdoc />
    public void CopyAsync(int slot, long length, ulong destination)
    {
        var view = ViewOf(destination, length).AsContiguous();
        ref var source = ref *(byte*)_ring!.SlotPointer(slot);
        view.CopyFromCPUUnsafeAsync(_streams[slot], ref source, length);
    }

    /// <inheritdoc />
    public void WaitForSlot(int slot) => _streams[slot].Synchronize();

    /// <inheritdoc />
    public void Synchronize()
    {
        foreach (var s in _streams) s.Synchronize();
        _accelerator.Synchronize();
    }

    /// <inheritdoc />
    public void Clear(ulong destination, long length)
    {
        _accelerator.Bind();
        ViewOf(destination, length).MemSetToZero(_accelerator.DefaultStream);
        _accelerator.Synchronize();
    }

    /// <inheritdoc />
    public void Detach()
    {
        foreach (var s in _streams) s.Dispose();
        _streams = [];
        _pageLock?.Dispose();
        _pageLock = null;
        _ring = null;
    }

    /// <inheritdoc />
    public void Dispose() => Detach();

    private ArrayView1D<byte, Stride1D.Dense> ViewOf(ulong destination, long length)
    {
        var i = Array.BinarySearch(_starts, (long)destination);
        if (i < 0) i = ~i - 1;
        // Skip empty targets that share a start with the one holding the bytes.
        while (i + 1 < _starts.Length && _starts[i + 1] == (long)destination && length > 0) i++;
        if (i < 0 || (long)destination - _starts[i] + length > _targets[i].Length)
            throw new ArgumentOutOfRangeException(nameof(destination), $"copy of {length} bytes at {destination} is outside the target buffers");
        return _targets[i].View.SubView((long)destination - _starts[i], length);
    }
}
