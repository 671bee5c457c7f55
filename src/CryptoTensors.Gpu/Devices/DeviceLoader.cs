using System.Collections.Concurrent;
using System.Runtime.InteropServices;
using System.Security.Cryptography;
using CryptoTensors.Gpu.Crypto;
using CryptoTensors.Gpu.Devices.Cuda;
using CryptoTensors.Gpu.Devices.Staging;
using CryptoTensors.Gpu.Loading;
using CryptoTensors.Gpu.Reading;

namespace CryptoTensors.Gpu.Devices;

/// <summary>
/// Loads tensors to device memory through a bounded staging ring: worker threads read each v2 chunk (or plain
/// block) from the file into a free slot of page-locked memory, decrypt it there, and hand the slot to a copy
/// engine (<c>cuMemcpyHtoDAsync</c> on several streams); a slot is reused once its copy has finished. One scheduler
/// covers every chunk of every tensor. Host memory stays at the ring's size whatever the model's size. Any failure
/// waits for the queued copies, zeroes every destination on the device (done when the exception is thrown), and throws
/// the error of the first failing tensor/chunk in file order; errors of that clean-up are attached to it
/// (<see cref="CleanupErrorsKey"/>).
/// </summary>
public static unsafe class DeviceLoader
{
    /// <summary>
    /// Key in <see cref="Exception.Data"/> of a failed load's exception: an <see cref="AggregateException"/> of what
    /// failed while waiting for the queued copies and zeroing the destinations (e.g. every CUDA call after a sticky
    /// error). The exception thrown is always the load's first error.
    /// </summary>
    public const string CleanupErrorsKey = "CryptoTensors.CleanupErrors";

    /// <summary>Alignment of tensors in a <see cref="DeviceModel"/>.</summary>
    public const int Alignment = 256;

    /// <summary>
    /// Loads the selected tensors into one allocation on <paramref name="device"/>, tensors at 256-byte-aligned
    /// offsets, through a <see cref="CudaCopyEngine"/>.
    /// </summary>
    public static DeviceModel Load(CryptoTensorsReader reader, CudaDevice device, DeviceLoadOptions? options = null, CancellationToken cancellationToken = default)
    {
        options ??= new DeviceLoadOptions();
        RequireHostDecryption(options, "the CUDA driver loader");
        var tensors = LoadWorkPlan.Select(reader, options.Tensors);
        var layout = LoadWorkPlan.AlignedLayout(tensors, Alignment, out var size);
        var buffer = device.Allocate(size);
        try
        {
            using var engine = new CudaCopyEngine(device, options.Streams);
            var baseAddress = buffer.DevicePointer;
            var stats = LoadInto(reader, t => baseAddress + (ulong)layout[t.Name].Offset, engine, options, cancellationToken);
            return new DeviceModel(buffer, tensors, layout, stats);
        }
        catch
        {
            buffer.Dispose();
            throw;
        }
    }

    /// <summary>
    /// Loads the selected tensors to destinations the caller owns (device addresses of
    /// <paramref name="engine"/>'s address space, each at least the tensor's byte length), through
    /// <paramref name="engine"/>. Returns when every copy has finished.
    /// </summary>
    public static StagingStatistics LoadInto(CryptoTensorsReader reader, Func<TensorDescriptor, ulong> destinationOf, IDeviceCopyEngine engine,
        DeviceLoadOptions? options = null, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(reader);
        ArgumentNullException.ThrowIfNull(engine);
        // Keeps the data keys and the file open for the whole load, even if the reader is disposed meanwhile.
        using var lease = reader.Lease();
        options ??= new DeviceLoadOptions();
        if (!options.CopyCiphertext) RequireHostDecryption(options, $"the {engine.Name} copy engine");
        var chunkSize = reader.CryptoKeys?.ChunkSize;
        var workers = Math.Max(1, options.MaxDegreeOfParallelism);

        var validated = LoadWorkPlan.Select(reader, options.Tensors).Select(t => LoadWorkPlan.Target(reader, t, destinationOf(t))).ToList();
        // Ciphertext-only staging (the caller decrypts on the device): every entry is still validated first, then the
        // tensors travel as the file's bytes, like plain ones, so nothing on the host decrypts or holds plaintext.
        var targets = options.CopyCiphertext ? validated.Select(t => t with { Entry = null, DekOffset = -1 }).ToList() : validated;

        var ring = options.Ring;
        var ownsRing = ring is null;
        var slotBytes = ring?.SlotBytes ?? (Math.Max(options.SlotBytes > 0 ? options.SlotBytes : 2 << 20, chunkSize ?? 0) + 4095) / 4096 * 4096;
        if (ring is not null && chunkSize is { } rcs && rcs > ring.SlotBytes)
            throw new ArgumentException($"the ring's slots ({ring.SlotBytes} bytes) are smaller than the file's chunk size ({rcs})", nameof(options));

        // Work items: v2 chunks, whole v1 tensors, plain blocks of one slot.
        var (items, remaining) = LoadWorkPlan.Build(targets, chunkSize, (int)Math.Min(slotBytes, int.MaxValue));
        var oversize = chunkSize is null ? targets.Where(t => t.Entry is not null && t.Tensor.ByteLength > slotBytes).Select(t => t.Tensor.ByteLength).DefaultIfEmpty(0).Max() : 0;
        // A ring of its own is never larger than the load needs.
        ring ??= StagingRing.Allocate(Math.Clamp(items.Count, 1, options.Slots > 0 ? options.Slots : Math.Max(4, 4 * workers)), slotBytes,
            cudaRegister: engine is CudaCopyEngine);
        ring.BeginLoad();
        var stats = new StagingStatistics(ring.Length, ring.SlotCount, ring.SlotBytes, oversize);

        var total = targets.Sum(t => t.Tensor.ByteLength);
        long bytesDone = 0;
        var tensorsDone = remaining.Count(r => r == 0);
        var errors = new ConcurrentBag<(int Item, Exception Error)>();
        var attached = false;
        FileMapping? mapping = null;
        try
        {
            LoadWorkPlan.Validate(validated, chunkSize);
            mapping = FileMapping.OpenFor(reader, options.ReadPath);
            engine.Attach(ring);
            attached = true;
            var parallel = new ParallelOptions { MaxDegreeOfParallelism = workers, CancellationToken = cancellationToken };
            Parallel.For(0, items.Count, parallel, () => { engine.EnterWorker(); return new DataKeyCipherCache(reader); }, (index, loop, ciphers) =>
            {
                if (loop.ShouldExitCurrentIteration) return ciphers;
                var item = items[index];
                var t = targets[item.Tensor];
                try
                {
                    if (item.Chunk < 0 && t.Entry is not null && item.Length > slotBytes) ProcessOversize(reader, mapping, ring, engine, t, item, ciphers, cancellationToken);
                    else Process(reader, mapping, ring, engine, t, item, ciphers, cancellationToken);
                }
                catch (Exception e)
                {
                    errors.Add((index, e));
                    loop.Stop();
                    return ciphers;
                }
                var done = Interlocked.Add(ref bytesDone, item.Length);
                var finished = Interlocked.Decrement(ref remaining[item.Tensor]) == 0 ? Interlocked.Increment(ref tensorsDone) : Volatile.Read(ref tensorsDone);
                options.Progress?.Report(new Writing.TensorProgress(done, total, finished, targets.Count));
                return ciphers;
            }, ciphers => ciphers.Dispose());
            // A failed item's error first: a driver call below must not replace it (after a sticky CUDA error every call fails).
            if (!errors.IsEmpty) WorkItemReader.Complete(reader, targets, errors, mapping);
            engine.Synchronize();
            cancellationToken.ThrowIfCancellationRequested();
            WorkItemReader.Complete(reader, targets, errors, mapping);
            return stats;
        }
        catch (Exception error)
        {
            // The first error is what the caller gets (a DecryptionException stays one); what fails while cleaning up
            // is attached to it, never thrown instead of it.
            var cleanup = new List<Exception>();
            if (attached)
            {
                try { engine.Synchronize(); } catch (Exception e) { cleanup.Add(e); }
            }
            foreach (var t in targets)
            {
                if (t.Tensor.ByteLength == 0) continue;
                try { engine.Clear(t.Destination, t.Tensor.ByteLength); }
                catch (Exception e) { cleanup.Add(e); }
            }
            if (cleanup.Count > 0)
                error.Data[CleanupErrorsKey] = new AggregateException(
                    "cleaning up after the failed load failed too: device memory of the load may not have been zeroed", cleanup);
            throw;
        }
        finally
        {
            mapping?.Dispose();
            if (attached) engine.Detach();
            ring.EndLoad();
            if (ownsRing) ring.Dispose();
        }
    }

    /// <summary>Refuses <see cref="DecryptSite.Gpu"/> where <paramref name="loader"/> has no device decryption (Auto means the host there).</summary>
    internal static void RequireHostDecryption(DeviceLoadOptions options, string loader)
    {
        if (options.DecryptOn == DecryptSite.Gpu)
            throw new NotSupportedException($"DecryptOn = Gpu is not available for {loader}: device decryption runs through IlgpuLoader (CryptoTensors.Gpu.ILGPU); use DecryptOn = Cpu or Auto here");
    }

    /// <summary>One work item through one slot: its plaintext into the slot (decrypted from the mapping, or read and decrypted in place), then the copy queued.</summary>
    private static void Process(CryptoTensorsReader reader, FileMapping? mapping, StagingRing ring, IDeviceCopyEngine engine, LoadTarget<ulong> t, LoadWorkItem item,
        DataKeyCipherCache ciphers, CancellationToken cancellationToken)
    {
        if (item.Length == 0) return;
        var slot = ring.Acquire(cancellationToken);
        try
        {
            engine.WaitForSlot(slot);
            WorkItemReader.Read(reader, mapping, t, item, ciphers, ring.Slot(slot, item.Length), null);
            engine.CopyAsync(slot, item.Length, t.Destination + (ulong)item.Offset);
        }
        finally
        {
            ring.Return(slot);
        }
    }

    /// <summary>A v1 tensor larger than a slot: authenticated whole in a temporary buffer, then moved through the ring.</summary>
    private static void ProcessOversize(CryptoTensorsReader reader, FileMapping? mapping, StagingRing ring, IDeviceCopyEngine engine, LoadTarget<ulong> t, LoadWorkItem item,
        DataKeyCipherCache ciphers, CancellationToken cancellationToken)
    {
        var length = item.Length;
        var temp = (byte*)NativeMemory.Alloc((nuint)length);
        try
        {
            var whole = new Span<byte>(temp, length);
            WorkItemReader.Read(reader, mapping, t, item, ciphers, whole, null);
            for (long o = 0; o < length; o += ring.SlotBytes)
            {
                var n = (int)Math.Min(ring.SlotBytes, length - o);
                var slot = ring.Acquire(cancellationToken);
                try
                {
                    engine.WaitForSlot(slot);
                    whole.Slice((int)o, n).CopyTo(ring.Slot(slot, n));
                    engine.CopyAsync(slot, n, t.Destination + (ulong)o);
                }
                finally
                {
                    ring.Return(slot);
                }
            }
        }
        finally
        {
            CryptographicOperations.ZeroMemory(new Span<byte>(temp, length));
            NativeMemory.Free(temp);
        }
    }
}
