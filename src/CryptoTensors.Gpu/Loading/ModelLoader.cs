using System.Runtime.CompilerServices;
using CryptoTensors.Gpu.Crypto;
using CryptoTensors.Gpu.Loading.Native;
using CryptoTensors.Gpu.Reading;
using CryptoTensors.Gpu.Writing;

namespace CryptoTensors.Gpu.Loading;

/// <summary>A tensor's place in caller-owned memory.</summary>
/// <param name="Pointer">Start of the tensor's bytes (must stay valid and pinned for the whole load).</param>
/// <param name="Length">Must equal the tensor's byte length.</param>
public readonly record struct TensorDestination(IntPtr Pointer, long Length);

/// <summary>
/// Loads many tensors at once: one scheduler over every chunk of every selected tensor (v2 chunks, whole v1
/// tensors, blocks of plain tensors), so one huge tensor and a thousand small ones both keep every core busy.
/// With <see cref="ReadPath.MemoryMapped"/> (the default where the native shim loads) each work item decrypts from a
/// guarded mapping of the file straight into its final place; with <see cref="ReadPath.PositionalRead"/> it reads into
/// a cache-resident per-worker staging buffer and decrypts from there into its place: no per-chunk allocation, one
/// cipher per worker per data key. Any failure clears every destination and throws the error of the first failing
/// tensor/chunk in file order; nothing is cached.
/// </summary>
public static unsafe class ModelLoader
{
    /// <summary>
    /// Loads the selected tensors into one page-locked buffer (from <paramref name="pool"/> when given), tensors 256-byte
    /// aligned. Touches no CUDA unless <see cref="LoadOptions.RegisterWithCuda"/> (or the pool's flags) asks for it.
    /// </summary>
    public static LoadedModel Load(CryptoTensorsReader reader, PinnedMemoryPool? pool = null, LoadOptions? options = null, CancellationToken cancellationToken = default)
    {
        using var lease = reader.Lease();
        options ??= new LoadOptions();
        var tensors = LoadWorkPlan.Select(reader, options.Tensors);
        var layout = LoadWorkPlan.AlignedLayout(tensors, 256, out var size);
        var buffer = pool is not null ? pool.Acquire(Math.Max(size, 1))
            : PinnedHostBuffer.NativeShimAvailable
                ? PinnedHostBuffer.Allocate(Math.Max(size, 1), options.RegisterWithCuda ? HostAllocationFlags.Default | HostAllocationFlags.CudaRegister : HostAllocationFlags.Default)
            : PinnedHostBuffer.AllocateManaged(Math.Max(size, 1));
        try
        {
            var baseAddress = buffer.Pointer;
            LoadInto(reader, t => new TensorDestination(baseAddress + (nint)layout[t.Name].Offset, t.ByteLength), options, cancellationToken);
            return new LoadedModel(buffer, tensors, layout);
        }
        catch
        {
            buffer.Dispose();
            throw;
        }
    }

    /// <summary>Loads the selected tensors into memory the caller owns (host memory, pinned for the duration).</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public static void LoadInto(CryptoTensorsReader reader, Func<TensorDescriptor, TensorDestination> destinationOf,
        LoadOptions? options = null, CancellationToken cancellationToken = default)
    {
        // Keeps the data keys and the file open for the whole load, even if the reader is disposed meanwhile.
        using var lease = reader.Lease();
        options ??= new LoadOptions();
        var chunkSize = reader.CryptoKeys?.ChunkSize;
        var targets = new List<LoadTarget<TensorDestination>>();
        foreach (var t in LoadWorkPlan.Select(reader, options.Tensors))
        {
            var d = destinationOf(t);
            if (d.Length != t.ByteLength)
                throw Errors.Create(ErrorCode.DestinationSize, $"destination is {d.Length} bytes, tensor is {t.ByteLength}", tensor: t.Name);
            targets.Add(LoadWorkPlan.Target(reader, t, d));
        }

        var (items, remaining) = LoadWorkPlan.Build(targets, chunkSize, options.PlainBlockSize);
        // Small items (tiny tensors, small chunks) are scheduled in runs of about BatchBytes, so the per-iteration cost
        // of the scheduler is paid per run, not per 4 KiB tensor; large items stay one per iteration.
        var batches = LoadWorkPlan.Batches(items, BatchBytes);

        var progress = options.Progress;
        var total = progress is null ? 0 : targets.Sum(t => t.Tensor.ByteLength);
        long bytesDone = 0;
        var tensorsDone = remaining.Count(r => r == 0);
        var errors = new System.Collections.Concurrent.ConcurrentBag<(int Item, Exception Error)>();

        FileMapping? mapping = null;
        try
        {
            LoadWorkPlan.Validate(targets, chunkSize);
            mapping = FileMapping.OpenFor(reader, options.ReadPath);
            var parallel = new ParallelOptions { MaxDegreeOfParallelism = Math.Max(1, options.MaxDegreeOfParallelism), CancellationToken = cancellationToken };
            Parallel.For(0, batches.Count, parallel, () => new WorkerState(reader), [MethodImpl(MethodImplOptions.AggressiveOptimization)] (batch, loop, state) =>
            {
                var (first, end) = batches[batch];
                for (var index = first; index < end; index++)
                {
                    if (loop.ShouldExitCurrentIteration || cancellationToken.IsCancellationRequested) return state;
                    var item = items[index];
                    var t = targets[item.Tensor];
                    try
                    {
                        Process(reader, t, item, state, mapping);
                    }
                    catch (Exception e)
                    {
                        errors.Add((index, e));
                        loop.Stop();
                        return state;
                    }
                    if (progress is null) continue;
                    var done = Interlocked.Add(ref bytesDone, item.Length);
                    var finished = Interlocked.Decrement(ref remaining[item.Tensor]) == 0 ? Interlocked.Increment(ref tensorsDone) : Volatile.Read(ref tensorsDone);
                    progress.Report(new TensorProgress(done, total, finished, targets.Count));
                }
                return state;
            }, state => state.Dispose());
            cancellationToken.ThrowIfCancellationRequested();
            WorkItemReader.Complete(reader, targets, errors, mapping);
        }
        catch
        {
            foreach (var t in targets) Clear(t.Destination);
            throw;
        }
        finally
        {
            mapping?.Dispose();
        }
    }

    /// <summary>Bytes of small work items one scheduler iteration takes (see <see cref="LoadWorkPlan.Batches"/>).</summary>
    internal const int BatchBytes = 64 << 10;

    private static void Clear(TensorDestination d)
    {
        for (long o = 0; o < d.Length; o += int.MaxValue)
            new Span<byte>((void*)(d.Pointer + (nint)o), (int)Math.Min(int.MaxValue, d.Length - o)).Clear();
    }

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void Process(CryptoTensorsReader reader, LoadTarget<TensorDestination> t, LoadWorkItem item, WorkerState state, FileMapping? mapping)
        => WorkItemReader.Read(reader, mapping, t, item, state.Ciphers,
            new Span<byte>((void*)(t.Destination.Pointer + (nint)item.Offset), item.Length), state.Staging);

    /// <summary>Per-worker state: the cipher of the data key used last and a staging buffer for copy-then-decrypt.</summary>
    private sealed class WorkerState(CryptoTensorsReader reader) : IDisposable
    {
        public DataKeyCipherCache Ciphers { get; } = new(reader);

        public StagingBuffer Staging { get; } = new();

        public void Dispose()
        {
            Ciphers.Dispose();
            Staging.Dispose();
        }
    }
}

/// <summary>
/// Tensors loaded into one page-locked buffer. Dispose returns the buffer (to its pool, if any), or, while DLPack
/// exports of it (<see cref="ToDLPack"/>) are outstanding, lets the last export's deleter return it.
/// </summary>
public sealed partial class LoadedModel : IDisposable
{
    private readonly Dictionary<string, (long Offset, long Length)> _layout;

    internal LoadedModel(PinnedHostBuffer buffer, IReadOnlyList<TensorDescriptor> tensors, Dictionary<string, (long Offset, long Length)> layout)
    {
        Buffer = buffer;
        Tensors = tensors;
        _layout = layout;
    }

    /// <summary>The buffer holding every tensor.</summary>
    public PinnedHostBuffer Buffer { get; }

    /// <summary>The tensors, in load order.</summary>
    public IReadOnlyList<TensorDescriptor> Tensors { get; }

    /// <summary>Offset of a tensor in <see cref="Buffer"/> (256-byte aligned).</summary>
    public long OffsetOf(string name) => _layout.TryGetValue(name, out var l) ? l.Offset : throw Errors.Create(ErrorCode.TensorNotFound, "tensor not loaded", tensor: name);

    /// <summary>The bytes of a tensor (up to 2 GiB; use <see cref="PointerOf"/> beyond).</summary>
    public Span<byte> GetSpan(string name)
    {
        var (offset, length) = _layout.TryGetValue(name, out var l) ? l : throw Errors.Create(ErrorCode.TensorNotFound, "tensor not loaded", tensor: name);
        return Buffer.AsSpan(offset, checked((int)length));
    }

    /// <summary>Address of a tensor's first byte.</summary>
    public IntPtr PointerOf(string name) => Buffer.Pointer + (nint)OffsetOf(name);

    /// <summary>Returns the buffer (to its pool, which reuses it without clearing: the next load overwrites it). With DLPack
    /// exports outstanding, the buffer is returned when the last of them is deleted; spans and views end here either way.</summary>
    public void Dispose() => Buffer.Dispose();
}
