namespace CryptoTensors.Gpu.Tests;

/// <summary>Locations of the repository, its test vectors and oracle, and scratch space.</summary>
internal static class TestPaths
{
    public static string RepoRoot => FindRoot() ?? throw new InvalidOperationException("repository root not found above " + AppContext.BaseDirectory);

    /// <summary>The repository root, or null where the tests run outside a checkout (scripts/gpu-kit's payload).</summary>
    public static string? RepoRootOrNull => FindRoot();

    /// <summary>The vector folder: <c>CRYPTOTENSORS_VECTORS</c> when set, else the repository's <c>tests/vectors</c>.</summary>
    public static string VectorsDir
    {
        get
        {
            var env = Environment.GetEnvironmentVariable("CRYPTOTENSORS_VECTORS");
            var dir = string.IsNullOrEmpty(env) ? Path.Combine(RepoRoot, "tests", "vectors") : env;
            if (!File.Exists(Path.Combine(dir, "index.json")))
                Assert.Fail($"test vectors not found: no index.json in '{dir}' (tests/vectors is part of the repository; CRYPTOTENSORS_VECTORS selects another set)");
            return dir;
        }
    }

    /// <summary>The independent format oracle, <c>tests/oracle/ctoracle.py</c>.</summary>
    public static string Oracle => Path.Combine(RepoRoot, "tests", "oracle", "ctoracle.py");

    private static readonly Lazy<string?> Root = new(() =>
    {
        var dir = new DirectoryInfo(AppContext.BaseDirectory);
        while (dir is not null && !File.Exists(Path.Combine(dir.FullName, "CryptoTensors.Gpu.sln"))) dir = dir.Parent;
        return dir?.FullName;
    });

    private static string? FindRoot() => Root.Value;
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
