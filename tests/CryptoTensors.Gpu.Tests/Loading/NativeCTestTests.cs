using System.Diagnostics;

namespace CryptoTensors.Gpu.Tests.Loading;

/// <summary>Runs the shim's CTest suite (native/tests), which the .NET build configures and builds under build/native.</summary>
public class NativeCTestTests
{
    [Test]
    public void CTestSuitePasses()
    {
        var ctest = FindOnPath("ctest");
        if (ctest is null)
            Assert.Ignore("ctest is not on PATH");
        var root = RepositoryRoot();
        var buildDir = Path.Combine(root, "build", "native");
        Assert.That(File.Exists(Path.Combine(buildDir, "CTestTestfile.cmake")), Is.True,
            $"{buildDir} is not a configured CMake build; build the solution first");

        var start = new ProcessStartInfo(ctest)
        {
            RedirectStandardOutput = true,
            RedirectStandardError = true,
        };
        foreach (var arg in new[] { "--test-dir", buildDir, "--output-on-failure" })
            start.ArgumentList.Add(arg);
        using var process = Process.Start(start)!;
        var stderr = process.StandardError.ReadToEndAsync();
        var stdout = process.StandardOutput.ReadToEnd();
        Assert.That(process.WaitForExit(TimeSpan.FromMinutes(3)), Is.True, "ctest timed out");
        Assert.That(process.ExitCode, Is.Zero, () => stdout + stderr.Result);
        TestContext.Out.WriteLine(stdout);
    }

    private static string? FindOnPath(string name)
        => (Environment.GetEnvironmentVariable("PATH") ?? "")
            .Split(Path.PathSeparator, StringSplitOptions.RemoveEmptyEntries)
            .Select(dir => Path.Combine(dir, name))
            .FirstOrDefault(File.Exists);

    private static string RepositoryRoot()
    {
        for (var dir = new DirectoryInfo(AppContext.BaseDirectory); dir is not null; dir = dir.Parent)
        {
            if (File.Exists(Path.Combine(dir.FullName, "CryptoTensors.Gpu.sln")))
                return dir.FullName;
        }
        throw new InvalidOperationException($"No CryptoTensors.Gpu.sln above {AppContext.BaseDirectory}");
    }
}
