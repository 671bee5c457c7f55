using CryptoTensors.Gpu.Loading.Native;

namespace CryptoTensors.Gpu.Devices.Staging;

/// <summary>
/// A bounded ring of equally sized slots of page-locked host memory (from the native shim, CUDA-registered when
/// the driver is present) through which a device load moves every byte: host memory of a load is the ring's size
/// whatever the model's. Create one and pass it in <see cref="DeviceLoadOptions.Ring"/> to reuse its touched,
/// registered pages across loads; one load at a time per ring (a second concurrent load is refused).
/// </summary>
public sealed class StagingRing : IDisposable
{
    private readonly Queue<int> _free = new();
    private readonly SemaphoreSlim _available;
    private int _loading;

    private StagingRing(PinnedHostBuffer buffer, int slots, long slotBytes)
    {
        Buffer = buffer;
        SlotCount = slots;
        SlotBytes = slotBytes;
        for (var i = 0; i < slots; i++) _free.Enqueue(i);
        _available = new SemaphoreSlim(slots, slots);
    }

    /// <summary>The ring's memory.</summary>
    public PinnedHostBuffer Buffer { get; }

    /// <summary>Number of slots.</summary>
    public int SlotCount { get; }

    /// <summary>Bytes per slot (a multiple of 4 KiB).</summary>
    public long SlotBytes { get; }

    /// <summary>Total bytes (<see cref="SlotCount"/> × <see cref="SlotBytes"/>).</summary>
    public long Length => SlotCount * SlotBytes;

    /// <summary>
    /// Allocates a ring of <paramref name="slots"/> slots of <paramref name="slotBytes"/> (rounded up to 4 KiB).
    /// <paramref name="cudaRegister"/> registers it with the CUDA driver when one is present (needed by
    /// <see cref="CudaCopyEngine"/>, which otherwise registers it itself); without the native shim the managed
    /// fallback is used (fine for CPU engines and tests).
    /// </summary>
    public static StagingRing Allocate(int slots, long slotBytes, bool cudaRegister = true)
    {
        ArgumentOutOfRangeException.ThrowIfLessThan(slots, 1);
        ArgumentOutOfRangeException.ThrowIfLessThan(slotBytes, 1);
        slotBytes = checked((slotBytes + 4095) / 4096 * 4096);
        var length = checked(slots * slotBytes);
        var flags = HostAllocationFlags.Touch | HostAllocationFlags.Lock | (cudaRegister ? HostAllocationFlags.CudaRegister : 0);
        var buffer = PinnedHostBuffer.NativeShimAvailable ? PinnedHostBuffer.Allocate(length, flags) : PinnedHostBuffer.AllocateManaged(length);
        return new StagingRing(buffer, slots, slotBytes);
    }

    /// <summary>Address of slot <paramref name="slot"/>.</summary>
    public IntPtr SlotPointer(int slot)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(slot);
        ArgumentOutOfRangeException.ThrowIfGreaterThanOrEqual(slot, SlotCount);
        return Buffer.Pointer + (nint)(slot * SlotBytes);
    }

    internal unsafe Span<byte> Slot(int slot, int length) => new((void*)SlotPointer(slot), length);

    /// <summary>Takes a free slot, waiting for one when all are taken (never deadlocks: a slot is held only while it is filled).</summary>
    internal int Acquire(CancellationToken cancellationToken)
    {
        _available.Wait(cancellationToken);
        lock (_free) return _free.Dequeue();
    }

    internal void Return(int slot)
    {
        lock (_free) _free.Enqueue(slot);
        _available.Release();
    }

    /// <summary>Claims the ring for one load; throws when another load holds it.</summary>
    internal void BeginLoad()
    {
        if (Interlocked.CompareExchange(ref _loading, 1, 0) != 0)
            throw new InvalidOperationException("the staging ring is in use by another load");
    }

    internal void EndLoad() => Volatile.Write(ref _loading, 0);

    /// <summary>Frees the ring's memory.</summary>
    public void Dispose()
    {
        Buffer.Dispose();
        _available.Dispose();
    }
}
