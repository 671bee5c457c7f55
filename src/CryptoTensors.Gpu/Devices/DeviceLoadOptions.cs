using CryptoTensors.Gpu.Devices.Staging;
using CryptoTensors.Gpu.Writing;

namespace CryptoTensors.Gpu.Devices;

/// <summary>Options of a load to device memory through a staging ring.</summary>
public sealed record DeviceLoadOptions
{
    /// <summary>Worker threads that read and decrypt into the ring (default: all cores).</summary>
    public int MaxDegreeOfParallelism { get; init; } = Environment.ProcessorCount;

    /// <summary>Load only these tensors (null: all).</summary>
    public IReadOnlyCollection<string>? Tensors { get; init; }

    /// <summary>How ciphertext is read (default <see cref="Loading.ReadPath.Auto"/>: a guarded memory mapping where the native shim loads).</summary>
    public Loading.ReadPath ReadPath { get; init; } = Loading.ReadPath.Auto;

    /// <summary>
    /// A ring to reuse across loads (its pages stay touched and registered). Null: one is allocated for the load
    /// with <see cref="SlotBytes"/> and <see cref="Slots"/>, and freed after it.
    /// </summary>
    public StagingRing? Ring { get; init; }

    /// <summary>
    /// Bytes per slot of a ring allocated for the load (default 0: the file's chunk size, at least 2 MiB). A v2 chunk
    /// must fit in one slot; a larger chunk size raises it.
    /// </summary>
    public long SlotBytes { get; init; }

    /// <summary>Slots of a ring allocated for the load (default 0: four per worker, at least 4).</summary>
    public int Slots { get; init; }

    /// <summary>Streams of the CUDA copy engine (default 2).</summary>
    public int Streams { get; init; } = 2;

    /// <summary>Progress (bytes and tensors), reported as slots are queued for copy.</summary>
    public IProgress<TensorProgress>? Progress { get; init; }

    /// <summary>
    /// Where encrypted tensors are decrypted (default <see cref="DecryptSite.Cpu"/>: the host decrypts into the ring, as
    /// always). <see cref="DecryptSite.Gpu"/> moves only ciphertext through the ring and decrypts and authenticates every
    /// chunk on the device; it is implemented by <c>IlgpuLoader</c> (CryptoTensors.Gpu.ILGPU) for AES-GCM files, and
    /// refused (<see cref="NotSupportedException"/>) by the CUDA driver and TorchSharp loaders for now.
    /// </summary>
    public DecryptSite DecryptOn { get; init; } = DecryptSite.Cpu;

    /// <summary>
    /// Set by loaders that decrypt on the device themselves: the ring then carries the file's bytes as they are
    /// (ciphertext), after every entry's nonce/tag fields were validated; plaintext never reaches host memory.
    /// </summary>
    internal bool CopyCiphertext { get; init; }
}

/// <summary>Where a device load decrypts (<see cref="DeviceLoadOptions.DecryptOn"/>).</summary>
public enum DecryptSite
{
    /// <summary>On the host, into the page-locked staging ring (the default).</summary>
    Cpu,
    /// <summary>On the device: the ring carries ciphertext only; kernels authenticate and decrypt in device memory.</summary>
    Gpu,
    /// <summary>
    /// The loader picks: <c>IlgpuLoader</c> decrypts on a CUDA accelerator for AES-GCM files and on the host otherwise
    /// (a documented rule, not a measured probe); the other loaders decrypt on the host.
    /// </summary>
    Auto,
}

/// <summary>What a staged load used on the host.</summary>
/// <param name="RingBytes">Size of the staging ring.</param>
/// <param name="Slots">Slots in the ring.</param>
/// <param name="SlotBytes">Bytes per slot.</param>
/// <param name="OversizeBytes">
/// Largest temporary buffer for a v1 (monolithic) tensor bigger than a slot: such a tensor is authenticated whole
/// before any byte leaves the host, so it needs its own buffer (0 for v2 and plain files).
/// </param>
public readonly record struct StagingStatistics(long RingBytes, int Slots, long SlotBytes, long OversizeBytes);
