using System.Globalization;

namespace CryptoTensors.Gpu.Writing;

/// <summary>
/// Writes a file atomically: a temporary file beside the target, flushed to disk, then renamed over the target.
/// On any failure the temporary file is deleted and the target is untouched; a write error (a full disk) is one
/// <see cref="IOException"/> naming the target. A process killed mid-write (SIGKILL, power loss) cannot delete its
/// temporary file, so the file is named <c>.NAME.ctensors-tmp-PID-RANDOM</c> and the next write of the same target
/// removes those whose process is gone (<see cref="RemoveStaleTemporaries"/>).
/// </summary>
internal sealed class AtomicFile : IDisposable
{
    /// <summary>The marker between the target's name and the writer's pid in a temporary file's name.</summary>
    internal const string TempMarker = ".ctensors-tmp-";

    private readonly FileStream _file;
    private bool _committed;

    /// <summary>
    /// Tests only: wraps the temporary file's stream (e.g. in one that fails after N bytes, to stand for a full disk).
    /// Async-local, so it applies only to writes started from the test that set it.
    /// </summary>
    internal static readonly AsyncLocal<Func<Stream, Stream>?> TestStreamWrapper = new();

    public AtomicFile(string target, UnixFileMode? mode = null)
    {
        Target = Path.GetFullPath(target);
        var dir = Path.GetDirectoryName(Target)!;
        if (!Directory.Exists(dir)) throw new DirectoryNotFoundException($"output directory '{dir}' does not exist");
        RemoveStaleTemporaries(Target);
        TempPath = TempPathFor(Target, Environment.ProcessId);
        var fso = new FileStreamOptions { Mode = FileMode.CreateNew, Access = FileAccess.ReadWrite, Share = FileShare.None, BufferSize = 0 };
        if (mode is { } m && !OperatingSystem.IsWindows()) fso.UnixCreateMode = m;
        try
        {
            _file = new FileStream(TempPath, fso);
        }
        catch (IOException e)
        {
            throw WriteFailed(e);
        }
        var wrapped = TestStreamWrapper.Value?.Invoke(_file) ?? _file;
        Stream = new GuardedStream(wrapped, this);
    }

    public string Target { get; }

    public string TempPath { get; }

    /// <summary>The temporary file; its I/O errors are rethrown as one <see cref="IOException"/> naming <see cref="Target"/>.</summary>
    public Stream Stream { get; }

    /// <summary>A fresh temporary name for <paramref name="target"/> written by process <paramref name="pid"/>.</summary>
    internal static string TempPathFor(string target, int pid)
        => Path.Combine(Path.GetDirectoryName(target)!,
            "." + Path.GetFileName(target) + TempMarker + pid.ToString(CultureInfo.InvariantCulture) + "-" + Guid.NewGuid().ToString("N")[..12]);

    /// <summary>
    /// Deletes the temporary files of <paramref name="target"/> left by processes that no longer run (killed while
    /// writing it). Files of live processes (another writer at work) and any other file are left alone; a file that
    /// cannot be deleted is skipped. Returns the paths deleted.
    /// </summary>
    internal static List<string> RemoveStaleTemporaries(string target)
    {
        var removed = new List<string>();
        var dir = Path.GetDirectoryName(Path.GetFullPath(target))!;
        var prefix = "." + Path.GetFileName(target) + TempMarker;
        IEnumerable<string> candidates;
        try
        {
            candidates = Directory.EnumerateFiles(dir, prefix + "*").ToList();
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            return removed;
        }
        foreach (var path in candidates)
        {
            var rest = Path.GetFileName(path).AsSpan(prefix.Length);
            var dash = rest.IndexOf('-');
            if (dash <= 0 || !int.TryParse(rest[..dash], NumberStyles.None, CultureInfo.InvariantCulture, out var pid)) continue;
            if (pid == Environment.ProcessId || ProcessIsAlive(pid)) continue;
            try
            {
                File.Delete(path);
                removed.Add(path);
            }
            catch (Exception e) when (e is IOException or UnauthorizedAccessException) { }
        }
        return removed;
    }

    /// <summary>Whether a process with that pid runs (on Linux: <c>/proc/PID</c> exists; a reused pid counts as alive, erring on keeping the file).</summary>
    internal static bool ProcessIsAlive(int pid)
    {
        if (OperatingSystem.IsLinux()) return Directory.Exists("/proc/" + pid.ToString(CultureInfo.InvariantCulture));
        try
        {
            using var p = System.Diagnostics.Process.GetProcessById(pid);
            return !p.HasExited;
        }
        catch (ArgumentException)
        {
            return false;
        }
        catch (InvalidOperationException)
        {
            return false;
        }
    }

    public void Commit()
    {
        try
        {
            Stream.Flush();
            _file.Flush(flushToDisk: true);
            Stream.Dispose();
            _file.Dispose();
            File.Move(TempPath, Target, overwrite: true);
        }
        catch (IOException e) when (e is not OutputWriteException)
        {
            throw WriteFailed(e);
        }
        _committed = true;
    }

    public void Dispose()
    {
        if (_committed) return;
        try { Stream.Dispose(); } catch (IOException) { }
        try { _file.Dispose(); } catch (IOException) { }
        try { File.Delete(TempPath); } catch (IOException) { }
    }

    /// <summary>One error naming the target, for any I/O failure of the temporary file (e.g. ENOSPC).</summary>
    internal OutputWriteException WriteFailed(IOException e)
        => e as OutputWriteException ?? new OutputWriteException($"cannot write '{Target}': {e.Message} (the output was not written; its partial temporary file is removed)", e);

    /// <summary>Forwards to the temporary file, turning its I/O errors into <see cref="OutputWriteException"/>.</summary>
    private sealed class GuardedStream(Stream inner, AtomicFile owner) : Stream
    {
        public override bool CanRead => inner.CanRead;
        public override bool CanSeek => inner.CanSeek;
        public override bool CanWrite => inner.CanWrite;
        public override long Length => inner.Length;

        public override long Position
        {
            get => inner.Position;
            set => Guard(() => inner.Position = value);
        }

        public override void Flush() => Guard(inner.Flush);
        public override int Read(byte[] buffer, int offset, int count) => inner.Read(buffer, offset, count);
        public override long Seek(long offset, SeekOrigin origin) => Guard(() => inner.Seek(offset, origin));
        public override void SetLength(long value) => Guard(() => inner.SetLength(value));
        public override void Write(byte[] buffer, int offset, int count) => Guard(() => inner.Write(buffer, offset, count));

        public override void Write(ReadOnlySpan<byte> buffer)
        {
            try
            {
                inner.Write(buffer);
            }
            catch (IOException e)
            {
                throw owner.WriteFailed(e);
            }
        }

        protected override void Dispose(bool disposing)
        {
            if (disposing) inner.Dispose();
            base.Dispose(disposing);
        }

        private void Guard(Action action)
        {
            try
            {
                action();
            }
            catch (IOException e)
            {
                throw owner.WriteFailed(e);
            }
        }

        private T Guard<T>(Func<T> action)
        {
            try
            {
                return action();
            }
            catch (IOException e)
            {
                throw owner.WriteFailed(e);
            }
        }
    }
}

/// <summary>
/// Writing an output failed (e.g. the disk is full); the message names the output. Nothing was written to it: the
/// partial temporary file is removed and an existing file of that name is left as it was.
/// </summary>
public sealed class OutputWriteException : IOException
{
    /// <summary>Creates the exception.</summary>
    public OutputWriteException(string message, Exception inner) : base(message, inner) { }
}
