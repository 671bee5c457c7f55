namespace CryptoTensors.Gpu.Devices.Staging;

/// <summary>
/// The device side of a staged load (<see cref="DeviceLoader"/>): moves filled slots of a <see cref="StagingRing"/>
/// to device memory asynchronously and tells when a slot may be written again. Implemented for the CUDA driver
/// (<see cref="CudaCopyEngine"/>), for ILGPU accelerators (CryptoTensors.Gpu.ILGPU), and by tests with a fake
/// that copies to host memory on a background thread — the scheduler is the same, only the copy call differs.
/// Destinations are device addresses (<c>CUdeviceptr</c>) or, for engines without raw addresses, offsets into
/// the engine's own address space.
/// </summary>
public interface IDeviceCopyEngine
{
    /// <summary>A short name for logs and benchmarks (e.g. <c>cuda-driver</c>).</summary>
    string Name { get; }

    /// <summary>Called once per load before any copy, on the calling thread, with the ring to copy from.</summary>
    void Attach(StagingRing ring);

    /// <summary>Called on every worker thread before it submits copies (CUDA: makes the context current).</summary>
    void EnterWorker();

    /// <summary>
    /// Queues a copy of the first <paramref name="length"/> bytes of slot <paramref name="slot"/> to
    /// <paramref name="destination"/>, and marks the slot busy until that copy has finished.
    /// </summary>
    void CopyAsync(int slot, long length, ulong destination);

    /// <summary>Blocks until the last copy queued from <paramref name="slot"/> has finished (returns at once if none).</summary>
    void WaitForSlot(int slot);

    /// <summary>Blocks until every queued copy has finished.</summary>
    void Synchronize();

    /// <summary>Sets <paramref name="length"/> bytes at <paramref name="destination"/> to zero (after a failed load; synchronous).</summary>
    void Clear(ulong destination, long length);

    /// <summary>Called once per load after the last copy finished or the load failed; releases what <see cref="Attach"/> set up.</summary>
    void Detach();
}
