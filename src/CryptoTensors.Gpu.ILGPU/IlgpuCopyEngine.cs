using ILGPU;
using ILGPU.Runtime;
using ILGPU.Runtime.CPU;
using CryptoTensors.Gpu.Devices.Staging;

namespace CryptoTensors.Gpu.ILGPU;

/// <summary>
/// Copies staging slots into ILGPU buffers with asynchronous copies on ILGPU streams, one stream per slot (so
/// waiting for a slot waits for exactly its own copy). Destinations are offsets into the concatenation of the
/// target buffers in the order given. On a CUDA accelerator the ring is page-locked once for the accelerator
/// (<c>CreatePageLockFromPinned</c>, with the accelerator bound) unless the native shim already registered it; copies
/// never page-lock again, whatever the context's <c>PageLockingMode</c>.
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
        // Page-lock in this accelerator's context: CreatePageLockFromPinned registers in whatever context is current
        // on the calling thread, so the accelerator is bound here first.
        _accelerator.Bind();
        if (_accelerator.AcceleratorType == AcceleratorType.Cuda && !ring.Buffer.IsCudaRegistered)
            _pageLock = _accelerator.CreatePageLockFromPinned<byte>(ring.Buffer.Pointer, ring.Length);
        _streams = new AcceleratorStream[ring.SlotCount];
        for (var i = 0; i < _streams.Length; i++) _streams[i] = _accelerator.CreateStream();
    }

    /// <inheritdoc />
    public void EnterWorker() => _accelerator.Bind();

    /// <inheritdoc />
    /// <remarks>
    /// Not <c>CopyFromCPUUnsafeAsync</c>: under <c>PageLockingMode.Aggressive</c> it page-locks the source for each copy
    /// (which fails on the ring, registered already), copies on the accelerator's default stream instead of the one
    /// given, and unregisters while the copy may still run. The slot is wrapped as CPU memory (no page-locking, no
    /// allocation: the ring is page-locked once, in <see cref="Attach"/> or by the native shim) and copied on the
    /// slot's own stream.
    /// </remarks>
    public void CopyAsync(int slot, long length, ulong destination)
    {
        var view = ViewOf(destination, length).AsContiguous();
        using var source = CPUMemoryBuffer.Create(_accelerator, _ring!.SlotPointer(slot), length, 1);
        view.CopyFrom(_streams[slot], source.AsRawArrayView());
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
