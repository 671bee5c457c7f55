using CryptoTensors.Gpu.Writing;

namespace CryptoTensors.Gpu.Loading;

/// <summary>How the loader gets ciphertext from the file.</summary>
public enum ReadPath
{
    /// <summary>
    /// Positional reads (<c>pread</c>) straight into the destination, then decryption in place. The default: a file
    /// that shrinks while it is read yields an error, never a crash.
    /// </summary>
    PositionalRead,

    /// <summary>
    /// A read-only memory mapping; chunks are decrypted from the mapping into the destination in one pass. A file
    /// truncated by another process while mapped can crash the process (SIGBUS): use only on files you control.
    /// </summary>
    MemoryMapped,
}

/// <summary>Options of a whole-model load.</summary>
public sealed class LoadOptions
{
    /// <summary>Worker threads (default: all cores).</summary>
    public int MaxDegreeOfParallelism { get; init; } = Environment.ProcessorCount;

    /// <summary>How ciphertext is read (default <see cref="ReadPath.PositionalRead"/>).</summary>
    public ReadPath ReadPath { get; init; } = ReadPath.PositionalRead;

    /// <summary>Load only these tensors (null: all).</summary>
    public IReadOnlyCollection<string>? Tensors { get; init; }

    /// <summary>Size of the work items plain tensors are split into (default 2 MiB).</summary>
    public int PlainBlockSize { get; init; } = 2 << 20;

    /// <summary>Progress (bytes and tensors), reported as work items complete.</summary>
    public IProgress<TensorProgress>? Progress { get; init; }
}
