using System.Diagnostics;
using System.Runtime.InteropServices;
using System.Text;
using System.Text.Json;

namespace CryptoTensors.Gpu.Tests.Devices;

/// <summary>
/// <c>scripts/gpu-kit rehearse</c>: packs the GPU kit (Release publish of the CLI, the test programs and the GPT-2
/// example, a .NET runtime, the natives), unpacks it and runs it in a clean environment without <c>dotnet</c> on PATH,
/// against the fake CUDA driver, then checks its <c>summary.json</c>: the kit fits in 60 MiB, the CUDA tests and the
/// GPT-2 bench pass on the fake, and every step that cannot run here says why. The qwen3-4b bench (8 GB of files,
/// minutes on two cores) is left out here (<c>--skip</c>); <c>scripts/gpu-kit rehearse DIR</c> runs it. Slow (a Release
/// publish and the compression: two to five minutes on two cores).
/// </summary>
[NonParallelizable]
[Category("GpuKit")]
public class GpuKitTests
{
    private static readonly string[] StepNames =
        ["nvidia-smi", "cuda-tests", "ilgpu-cuda-tests", "torch-tests", "gpt2-example", "bench-gpt2", "bench-qwen3-4b"];

    private static readonly TimeSpan Limit = TimeSpan.FromMinutes(20);

    [Test]
    public void ARehearsalFitsIn60MiBPassesOnTheFakeDriverAndSaysWhyTheRestSkip()
    {
        if (!OperatingSystem.IsLinux() || RuntimeInformation.ProcessArchitecture != Architecture.X64)
            Assert.Ignore("the kit carries linux-x64 natives and is packed on Linux x64 only");
        var repo = TestPaths.RepoRootOrNull;
        if (repo is null)
        {
            Assert.Ignore("packs the repository: runs from a checkout only");
            return;
        }
        if (Environment.GetEnvironmentVariable("GPU_KIT_REHEARSE") is { Length: > 0 })
            Assert.Ignore("this process runs inside a kit already");
        foreach (var tool in new[] { "python3", "xz", "tar", "timeout" })
            if (Which(tool) is null) Assert.Ignore($"scripts/gpu-kit needs {tool}, which is not on PATH");

        using var dir = new TempDir();
        var clock = Stopwatch.StartNew();
        var (code, output) = Run(Path.Combine(repo, "scripts", "gpu-kit"), repo, ["rehearse", dir.Path, "--skip", "bench-qwen3-4b"]);
        TestContext.Progress.WriteLine($"scripts/gpu-kit rehearse: {clock.Elapsed.TotalSeconds:F0} s");
        TestContext.Out.WriteLine(output);
        var summaryPath = dir.File("summary.json");
        Assert.That(File.Exists(summaryPath), Is.True, $"no summary.json (exit {code}):\n{output}");
        var summaryText = File.ReadAllText(summaryPath);
        TestContext.Out.WriteLine(summaryText);
        Assert.That(code, Is.Zero, $"the rehearsal failed:\n{output}");

        // The kit as carried: the script, its helpers and the payload.
        var kitBytes = new[] { "gpu-kit", "gpu-kit.py", "payload.tar.xz" }.Sum(f => new FileInfo(Path.Combine(dir.Path, "kit", f)).Length);
        Assert.That(kitBytes, Is.LessThanOrEqualTo(60L << 20), "the kit is larger than 60 MiB");

        using var summary = JsonDocument.Parse(summaryText);
        var steps = summary.RootElement.GetProperty("steps").EnumerateArray().ToList();
        Assert.That(steps.Select(s => s.GetProperty("name").GetString()), Is.EqualTo(StepNames));
        foreach (var s in steps)
        {
            var name = s.GetProperty("name").GetString();
            Assert.That(s.GetProperty("status").GetString(), Is.AnyOf("passed", "failed", "skipped"), name);
            Assert.That(s.GetProperty("seconds").ValueKind, Is.EqualTo(JsonValueKind.Number), name);
            Assert.That(s.GetProperty("figures").ValueKind, Is.EqualTo(JsonValueKind.Object), name);
            Assert.That(s.TryGetProperty("reason", out _), Is.True, name);
        }
        var kit = summary.RootElement.GetProperty("kit");
        Assert.That(kit.GetProperty("mode").GetString(), Is.EqualTo("rehearse"));
        var step = steps.ToDictionary(s => s.GetProperty("name").GetString()!);
        string Status(string name) => step[name].GetProperty("status").GetString()!;
        string Reason(string name) => step[name].GetProperty("reason").GetString() ?? "";

        Assert.Multiple(() =>
        {
            Assert.That(Status("cuda-tests"), Is.EqualTo("passed"), Reason("cuda-tests"));
            var cuda = step["cuda-tests"].GetProperty("figures");
            Assert.That(cuda.GetProperty("passed").GetInt32(), Is.GreaterThan(20), "the CUDA tests ran");
            Assert.That(cuda.GetProperty("failed").GetInt32(), Is.Zero);
            Assert.That(Status("bench-gpt2"), Is.EqualTo("passed"), Reason("bench-gpt2"));
            var bench = step["bench-gpt2"].GetProperty("figures");
            Assert.That(bench.GetProperty("workload").GetString(), Is.EqualTo("gpt2"));
            Assert.That(bench.GetProperty("encrypted_to_device_gbps").GetDouble(), Is.GreaterThan(0));
            Assert.That(Status("bench-qwen3-4b"), Is.EqualTo("skipped"));
            Assert.That(Reason("bench-qwen3-4b"), Does.Contain("on request"));
            if (kit.GetProperty("cuda_driver").GetString() == "fake")
            {
                // No GPU here: the CUDA tests and the bench ran on the fake; what needs a real GPU or PyTorch says why not.
                Assert.That(cuda.GetProperty("cuda_driver").GetString(), Is.EqualTo("fake"));
                Assert.That(bench.GetProperty("cuda_driver").GetString(), Is.EqualTo("fake"));
                foreach (var name in new[] { "nvidia-smi", "ilgpu-cuda-tests", "torch-tests", "gpt2-example" })
                {
                    Assert.That(Status(name), Is.EqualTo("skipped"), name);
                    Assert.That(Reason(name), Is.Not.Empty, name);
                }
                Assert.That(Reason("ilgpu-cuda-tests"), Does.Contain("no GPU"));
            }
        });
    }

    private static string? Which(string tool)
        => (Environment.GetEnvironmentVariable("PATH") ?? "").Split(':', StringSplitOptions.RemoveEmptyEntries)
            .Select(d => Path.Combine(d, tool)).FirstOrDefault(File.Exists);

    /// <summary>Runs the script with the outer build's MSBuild variables removed and no node reuse (nothing outlives the test).</summary>
    private static (int Code, string Output) Run(string program, string directory, string[] args)
    {
        var start = ChildProcess.Start(program, directory, args);
        // A faster compression level than the default -9e: the size checked here is then an upper bound.
        start.Environment["GPU_KIT_XZ_LEVEL"] = "-6";
        start.Environment.Remove("CRYPTOTENSORS_CUDA_DRIVER");
        if (Environment.GetEnvironmentVariable("DOTNET_HOST_PATH") is { Length: > 0 } host && Path.GetDirectoryName(host) is { } hostDir)
            start.Environment["PATH"] = hostDir + ":" + start.Environment["PATH"];
        return ChildProcess.Run(start, Limit);
    }
}
