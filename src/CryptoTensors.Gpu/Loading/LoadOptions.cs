using CryptoTensors.Gpu.Writing;

namespace CryptoTensors.Gpu.Loading;

/// <summary>How the loader gets ciphertext from the file. Neither can crash the process when the file shrinks while it is read.</summary>
public enum ReadPath
{
    /// <summary>
    /// Positional reads (<c>pread</c>) into a per-worker staging buffer that stays in cache (or straight into the
    /// destination for plain tensors), then decryption into the destination. Works without the native shim; a file
    /// that shrinks while it is read yields <see cref="ErrorCode.IncompleteBuffer"/>.
    /// </summary>
    PositionalRead,

    /// <summary>
    /// A read-only memory mapping made by the native shim: with the accelerated AES-GCM backend each chunk is decrypted
    /// from the mapping into its destination in one pass (the BCL backend copies it to cache-resident staging first),
    /// and consumed pages are dropped from the resident set as the load goes. Every access runs under the shim's SIGBUS
    /// guard, so a file truncated by another process while mapped yields <see cref="ErrorCode.IncompleteBuffer"/>, not
    /// a crash. Requires the native shim.
    /// </summary>
    MemoryMapped,

    /// <summary>
    /// The default: <see cref="MemoryMapped"/> where the native shim is available (measured faster: one pass over the
    /// bytes instead of two), <see cref="PositionalRead"/> otherwise.
    /// </summary>
    Auto,
}

/// <summary>Resolution of <see cref="ReadPath.Auto"/>.</summary>
public static class ReadPaths
{
    /// <summary>What <paramref name="path"/> means here: <see cref="ReadPath.Auto"/> becomes the measured default.</summary>
    /// <exception cref="DllNotFoundException"><see cref="ReadPath.MemoryMapped"/> asked for where the native shim is unavailable.</exception>
    public static ReadPath Resolve(ReadPath path)
    {
        switch (path)
        {
            case ReadPath.Auto:
                return FileMapping.Available ? ReadPath.MemoryMapped : ReadPath.PositionalRead;
            case ReadPath.MemoryMapped:
                Native.NativeMethods.EnsureAvailable();
                return path;
            case ReadPath.PositionalRead:
                return path;
            default:
                throw new ArgumentOutOfRangeException(nameof(path), path, "unknown read path");
        }
    }
}

/// <summary>Options of a whole-model load.</summary>
public sealed class LoadOptions
{
    /// <summary>Worker threads (default: all cores).</summary>
    public int MaxDegreeOfParallelism { get; init; } = Environment.ProcessorCount;

    /// <summary>How ciphertext is read (default <see cref="ReadPath.Auto"/>).</summary>
    public ReadPath ReadPath { get; init; } = ReadPath.Auto;

    /// <summary>Load only these tensors (null: all).</summary>
    public IReadOnlyCollection<string>? Tensors { get; init; }

    /// <summary>Size of the work items plain tensors are split into (default 2 MiB).</summary>
    public int PlainBlockSize { get; init; } = 2 << 20;

    /// <summary>Progress (bytes and tensors), reported as work items complete.</summary>
    public IProgress<TensorProgress>? Progress { get; init; }

    /// <summary>
    /// Registers the model buffer <see cref="ModelLoader.Load"/> allocates with the CUDA driver
    /// (<see cref="Native.HostAllocationFlags.CudaRegister"/>), so GPU copies from it run at page-locked speed and DLPack
    /// exports report <c>kDLCUDAHost</c>. Default false: a host load never touches CUDA (no driver load, no <c>cuInit</c>,
    /// no context) unless asked. Registration costs time proportional to the buffer (measured by
    /// <c>ctensors bench --device</c>); ignored when a pool supplies the buffer (the pool's flags decide).
    /// </summary>
    public bool RegisterWithCuda { get; init; }
}
