using System.Runtime.InteropServices;
using CryptoTensors.Gpu.Crypto;
using CryptoTensors.Gpu.Loading.Native;
using CryptoTensors.Gpu.Reading;
using Microsoft.Win32.SafeHandles;

namespace CryptoTensors.Gpu.Loading;

/// <summary>
/// A read-only mapping of a model file (<c>ct_mapping_open</c> in the native shim) that cannot crash the process:
/// every read of it runs under the shim's SIGBUS guard, so a file truncated by another process while mapped yields
/// <see cref="ErrorCode.IncompleteBuffer"/> instead of killing the process. Reads copy or decrypt straight from the
/// mapping into their destination, and <see cref="Release"/> drops consumed pages from the resident set (the page
/// cache keeps them). Available only where the shim loaded (<see cref="Available"/>).
/// </summary>
internal sealed unsafe class FileMapping : SafeHandle
{
    /// <summary>Used by <see cref="Open"/>.</summary>
    internal FileMapping() : base(IntPtr.Zero, ownsHandle: true) { }

    /// <summary>Whether guarded mappings can be made here (the native shim loaded).</summary>
    internal static bool Available => NativeMethods.Available;

    private SafeFileHandle? _file;

    /// <summary>Mapped bytes (the reader's file length).</summary>
    internal long Length { get; private set; }

    /// <summary>
    /// Whether the file is now shorter than the mapping. Bytes past the new end in its last page read as zeros
    /// without a fault, so the loaders check this after a load (and after a failure, to report the real cause).
    /// </summary>
    internal bool Shrank => RandomAccess.GetLength(_file!) < Length;

    /// <summary>Throws <see cref="ErrorCode.IncompleteBuffer"/> (naming <paramref name="tensor"/>) when the file shrank.</summary>
    internal void EnsureIntact(string? tensor = null)
    {
        if (Shrank) throw CryptoTensorsReader.FileChanged(tensor);
    }

    /// <inheritdoc />
    public override bool IsInvalid => handle == IntPtr.Zero;

    /// <summary>The mapping a load with <paramref name="path"/> reads through (null for positional reads or an empty file).</summary>
    internal static FileMapping? OpenFor(CryptoTensorsReader reader, ReadPath path)
        => ReadPaths.Resolve(path) == ReadPath.MemoryMapped && reader.FileLength > 0 ? Open(reader.FileHandle, reader.FileLength) : null;

    /// <summary>Maps the first <paramref name="length"/> bytes of <paramref name="file"/>; refuses a file that no longer has them.</summary>
    internal static FileMapping Open(SafeFileHandle file, long length)
    {
        NativeMethods.EnsureAvailable();
        var mapping = new FileMapping();
        var added = false;
        try
        {
            file.DangerousAddRef(ref added);
            nint address = 0;
            var status = NativeMethods.MappingOpen((int)file.DangerousGetHandle(), (ulong)length, &address);
            if (status == NativeMethods.MappedFileEnded) throw CryptoTensorsReader.FileChanged();
            if (status != 0) throw NativeMethods.Failure(status, "ct_mapping_open");
            mapping.SetHandle(address);
            mapping.Length = length;
            mapping._file = file;
            return mapping;
        }
        catch
        {
            mapping.SetHandleAsInvalid();
            throw;
        }
        finally
        {
            if (added) file.DangerousRelease();
        }
    }

    /// <summary>Copies <paramref name="destination"/>.Length bytes at <paramref name="offset"/> into it.</summary>
    internal void CopyTo(long offset, Span<byte> destination, string tensor)
    {
        var source = At(offset, destination.Length);
        int status;
        fixed (byte* d = destination) status = NativeMethods.MappingCopy(d, source, (nuint)destination.Length);
        if (status == NativeMethods.MappedFileEnded) throw CryptoTensorsReader.FileChanged(tensor);
        if (status != 0) throw NativeMethods.Failure(status, "ct_mapping_copy");
    }

    /// <summary>
    /// Decrypts <paramref name="plaintext"/>.Length bytes at <paramref name="offset"/> into it with the accelerated
    /// backend (<see cref="AeadCipher.DecryptsFromMapping"/>), straight from the mapping. Returns false on a tag
    /// mismatch (output zeroed).
    /// </summary>
    internal bool TryDecrypt(AeadCipher cipher, ReadOnlySpan<byte> nonce, long offset, ReadOnlySpan<byte> tag, Span<byte> plaintext, string tensor)
    {
        var status = cipher.DecryptFromMapping(nonce, At(offset, plaintext.Length), tag, plaintext);
        if (status == NativeMethods.MappedFileEnded)
        {
            plaintext.Clear();
            throw CryptoTensorsReader.FileChanged(tensor);
        }
        return status == 0;
    }

    /// <summary>Drops the whole pages inside the range from the resident set; later reads fault them back in from the page cache.</summary>
    internal void Release(long offset, long length)
    {
        if (length <= 0) return;
        NativeMethods.MappingRelease(At(offset, length), (nuint)length);
    }

    private byte* At(long offset, long length)
    {
        if (offset < 0 || length < 0 || offset > Length - length)
            throw new ArgumentOutOfRangeException(nameof(offset), $"range {offset}+{length} is outside the {Length}-byte mapping");
        return (byte*)handle + offset;
    }

    /// <inheritdoc />
    protected override bool ReleaseHandle() => NativeMethods.MappingClose(handle, (ulong)Length) == 0;
}
