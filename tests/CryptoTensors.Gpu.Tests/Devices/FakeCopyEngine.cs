using System.Collections.Concurrent;
using System.Security.Cryptography;
using CryptoTensors.Gpu.Devices.Staging;

namespace CryptoTensors.Gpu.Tests.Devices;

/// <summary>
/// A copy engine whose "device" is a host array and whose copies run later on background threads (one per
/// stream, random delays), like DMA engines: if the scheduler reused a slot before its copy finished, the copied
/// bytes would differ from what was submitted, which this engine records as a violation.
/// </summary>
internal sealed unsafe class FakeCopyEngine : IDeviceCopyEngine, IDisposable
{
    public const ulong BaseAddress = 0x7000_0000_0000;
    private readonly byte[] _memory;
    private readonly int _streams;
    private readonly Random _random = new(5);
    private StagingRing? _ring;
    private BlockingCollection<Action>[] _queues = [];
    private Thread[] _threads = [];
    private int[] _pending = [];
    private readonly object _gate = new();

    public FakeCopyEngine(long deviceBytes, int streams = 2)
    {
        _memory = GC.AllocateArray<byte>(checked((int)deviceBytes), pinned: true);
        _streams = streams;
    }

    public string Name => "fake";
    public Span<byte> Memory => _memory;
    public ConcurrentBag<string> Violations { get; } = [];
    public int Attaches { get; private set; }
    public int Detaches { get; private set; }
    public int Copies;
    public int MaxBusySlots;
    public bool Attached => _ring is not null;
    public List<(ulong Destination, long Length)> Cleared { get; } = [];

    public Span<byte> At(ulong address, long length) => _memory.AsSpan(checked((int)(address - BaseAddress)), checked((int)length));

    /// <summary>Runs inside <see cref="Attach"/>, while the load holds its ring.</summary>
    public Action? OnAttach { get; set; }

    public void Attach(StagingRing ring)
    {
        OnAttach?.Invoke();
        if (_ring is not null) Violations.Add("attached twice");
        _ring = ring;
        Attaches++;
        _pending = new int[ring.SlotCount];
        _queues = Enumerable.Range(0, _streams).Select(_ => new BlockingCollection<Action>()).ToArray();
        _threads = _queues.Select(q => new Thread(() => { foreach (var a in q.GetConsumingEnumerable()) a(); }) { IsBackground = true }).ToArray();
        foreach (var t in _threads) t.Start();
    }

    public void EnterWorker() { if (_ring is null) Violations.Add("worker entered before attach"); }

    public void CopyAsync(int slot, long length, ulong destination)
    {
        var ring = _ring!;
        if (length > ring.SlotBytes) Violations.Add($"copy of {length} bytes from a {ring.SlotBytes}-byte slot");
        if (destination < BaseAddress || destination - BaseAddress + (ulong)length > (ulong)_memory.Length) Violations.Add($"copy outside device memory: {destination:x}+{length}");
        var source = new ReadOnlySpan<byte>((void*)ring.SlotPointer(slot), (int)length);
        var submitted = SHA256.HashData(source);
        int delay;
        lock (_gate)
        {
            if (_pending[slot] != 0) Violations.Add($"slot {slot} submitted while its previous copy is pending");
            _pending[slot]++;
            MaxBusySlots = Math.Max(MaxBusySlots, _pending.Count(p => p > 0));
            delay = _random.Next(0, 3);
        }
        Interlocked.Increment(ref Copies);
        _queues[slot % _streams].Add(() =>
        {
            if (delay > 0) Thread.Sleep(delay);
            var src = new ReadOnlySpan<byte>((void*)ring.SlotPointer(slot), (int)length);
            if (!SHA256.HashData(src).AsSpan().SequenceEqual(submitted)) Violations.Add($"slot {slot} was overwritten before its copy ran");
            src.CopyTo(At(destination, length));
            lock (_gate)
            {
                _pending[slot]--;
                Monitor.PulseAll(_gate);
            }
        });
    }

    public void WaitForSlot(int slot)
    {
        lock (_gate)
            while (_pending[slot] != 0) Monitor.Wait(_gate);
    }

    public void Synchronize()
    {
        lock (_gate)
            while (_pending.Any(p => p != 0)) Monitor.Wait(_gate);
    }

    public void Clear(ulong destination, long length)
    {
        lock (_gate)
        {
            if (_pending.Any(p => p != 0)) Violations.Add("clear while copies are pending");
            Cleared.Add((destination, length));
        }
        At(destination, length).Clear();
    }

    public void Detach()
    {
        foreach (var q in _queues) q.CompleteAdding();
        foreach (var t in _threads) t.Join();
        _ring = null;
        Detaches++;
    }

    public void Dispose()
    {
        if (_ring is not null) Detach();
    }
}
