namespace CryptoTensors.Gpu.Tests;

/// <summary>Locations of the repository, the shared vectors and scratch space.</summary>
internal static class TestPaths
{
    public static string RepoRoot { get; } = FindRoot();

    public static string SharedDir => Path.GetFullPath(Path.Combine(RepoRoot, "..", "shared"));

    /// <summary>The vector folder: <c>CRYPTOTENSORS_VECTORS</c> when set, else <c>../shared/vectors</c>.</summary>
    public static string VectorsDir
    {
        get
        {
            var env = Environment.GetEnvironmentVariable("CRYPTOTENSORS_VECTORS");
            var dir = string.IsNullOrEmpty(env) ? Path.Combine(SharedDir, "vectors") : env;
            if (!File.Exists(Path.Combine(dir, "index.json")))
                Assert.Fail($"test vectors not found: no index.json in '{dir}' (set CRYPTOTENSORS_VECTORS or place shared/ beside the repository)");
            return dir;
        }
    }

    public static string Oracle => Path.Combine(SharedDir, "tools", "ctoracle.py");

    private static string FindRoot()
    {
        var dir = new DirectoryInfo(AppContext.BaseDirectory);
        while (dir is not null && !File.Exists(Path.Combine(dir.FullName, "CryptoTensors.Gpu.sln"))) dir = dir.Parent;
        return dir?.FullName ?? throw new InvalidOperationException("repository root not found above " + AppContext.BaseDirectory);
    }
}

/// <summary>A temporary directory removed at dispose.</summary>
internal sealed class TempDir : IDisposable
{
    public TempDir()
    {
        Path = System.IO.Path.Combine(System.IO.Path.GetTempPath(), "ctensors-test-" + Guid.NewGuid().ToString("N"));
        Directory.CreateDirectory(Path);
    }

    public string Path { get; }

    public string File(string name) => System.IO.Path.Combine(Path, name);

    public void Dispose()
    {
        try { Directory.Delete(Path, recursive: true); } catch (IOException) { }
    }
}
