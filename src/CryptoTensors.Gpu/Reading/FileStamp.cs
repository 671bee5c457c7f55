using Microsoft.Win32.SafeHandles;

namespace CryptoTensors.Gpu.Reading;

/// <summary>
/// What the reader remembers of the file it opened, to tell whether it changed under a read: its length and its
/// modification time (nanoseconds on Linux filesystems, stored by the kernel at its clock's coarse granularity).
/// </summary>
internal readonly record struct FileStamp(long Length, DateTime LastWriteUtc)
{
    /// <summary>The stamp of an open file (one <c>fstat</c>).</summary>
    public static FileStamp Of(SafeFileHandle file) => new(RandomAccess.GetLength(file), File.GetLastWriteTimeUtc(file));
}
