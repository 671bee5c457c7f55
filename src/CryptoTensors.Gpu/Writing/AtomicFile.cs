namespace CryptoTensors.Gpu.Writing;

/// <summary>
/// Writes a file atomically: a temporary file beside the target, flushed to disk, then renamed over the target.
/// On any failure the temporary file is deleted and the target is untouched.
/// </summary>
internal sealed class AtomicFile : IDisposable
{
    private bool _committed;

    public AtomicFile(string target, UnixFileMode? mode = null)
    {
        Target = Path.GetFullPath(target);
        var dir = Path.GetDirectoryName(Target)!;
        if (!Directory.Exists(dir)) throw new DirectoryNotFoundException($"output directory '{dir}' does not exist");
        TempPath = Path.Combine(dir, "." + Path.GetFileName(Target) + ".tmp-" + Guid.NewGuid().ToString("N")[..12]);
        var fso = new FileStreamOptions { Mode = FileMode.CreateNew, Access = FileAccess.ReadWrite, Share = FileShare.None, BufferSize = 0 };
        if (mode is { } m && !OperatingSystem.IsWindows()) fso.UnixCreateMode = m;
        Stream = new FileStream(TempPath, fso);
    }

    public string Target { get; }

    public string TempPath { get; }

    public FileStream Stream { get; }

    public void Commit()
    {
        Stream.Flush(flushToDisk: true);
        Stream.Dispose();
        File.Move(TempPath, Target, overwrite: true);
        _committed = true;
    }

    public void Dispose()
    {
        if (_committed) return;
        Stream.Dispose();
        try { File.Delete(TempPath); } catch (IOException) { }
    }
}
