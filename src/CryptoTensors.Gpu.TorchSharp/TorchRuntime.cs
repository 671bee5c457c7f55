using System.Runtime.InteropServices;
using TorchSharp;

namespace CryptoTensors.Gpu.TorchSharp;

/// <summary>
/// Finds libtorch for TorchSharp. This project references only the managed TorchSharp package (with
/// <c>libLibTorchSharp.so</c>), not the libtorch packages, so libtorch must come from the machine: typically the
/// <c>torch/lib</c> folder of a PyTorch install (CUDA builds included), given to <see cref="Initialize"/> or in
/// the <c>CRYPTOTENSORS_TORCH_LIB</c> environment variable. Its libraries are loaded with
/// <see cref="NativeLibrary.Load(string)"/> before TorchSharp's own loader runs, which then finds them by name.
/// </summary>
public static class TorchRuntime
{
    /// <summary>The environment variable naming a <c>torch/lib</c> folder.</summary>
    public const string TorchLibVariable = "CRYPTOTENSORS_TORCH_LIB";

    // Dependency order: each library's DT_NEEDED entries are loaded before it.
    private static readonly string[] Libraries =
        ["libc10.so", "libtorch_cpu.so", "libc10_cuda.so", "libtorch_cuda.so", "libtorch.so"];

    private static readonly object Gate = new();
    private static (bool Done, string? Error) _state;

    /// <summary>
    /// Loads libtorch from <paramref name="torchLibDirectory"/> (or <c>CRYPTOTENSORS_TORCH_LIB</c>, or PyTorch's
    /// <c>torch/lib</c> found through <c>python3</c> when neither is set), then initialises TorchSharp for CPU and,
    /// when available, CUDA. Returns false with the reason when TorchSharp cannot run on this machine.
    /// </summary>
    public static bool Initialize(out string? error, string? torchLibDirectory = null)
    {
        lock (Gate)
        {
            if (!_state.Done) _state = (true, TryInitialize(torchLibDirectory));
            error = _state.Error;
            return error is null;
        }
    }

    /// <summary>Like <see cref="Initialize(out string?, string?)"/>, throwing <see cref="InvalidOperationException"/> with the reason.</summary>
    public static void EnsureInitialized(string? torchLibDirectory = null)
    {
        if (!Initialize(out var error, torchLibDirectory)) throw new InvalidOperationException("TorchSharp cannot run here: " + error);
    }

    private static string? TryInitialize(string? dir)
    {
        dir ??= Environment.GetEnvironmentVariable(TorchLibVariable) is { Length: > 0 } env ? env : FindPyTorchLib();
        var loaded = new List<string>();
        if (dir is not null)
        {
            foreach (var lib in Libraries)
            {
                var path = Path.Combine(dir, lib);
                if (!File.Exists(path)) continue;
                if (!NativeLibrary.TryLoad(path, out _)) return $"{path} exists but could not be loaded";
                loaded.Add(lib);
            }
        }
        try
        {
            torch.InitializeDeviceType(DeviceType.CPU);
            if (loaded.Contains("libtorch_cuda.so")) torch.TryInitializeDeviceType(DeviceType.CUDA);
            return null;
        }
        catch (Exception e) when (e is NotSupportedException or DllNotFoundException or TypeInitializationException or EntryPointNotFoundException)
        {
            var why = MissingGlibcxx() is { } g ? $"libLibTorchSharp.so needs {g}, which this machine's libstdc++ lacks; " : "";
            var where = dir is null ? $"no libtorch found (set {TorchLibVariable} to a PyTorch torch/lib folder)" : $"libtorch from {dir} ({string.Join(", ", loaded)})";
            return $"{why}{where}: {Flatten(e)}";
        }
    }

    private static string Flatten(Exception e)
    {
        var parts = new List<string>();
        for (var x = e; x is not null; x = x.InnerException) parts.Add(x.Message.Split('\n')[0]);
        return string.Join(" -> ", parts.Distinct());
    }

    /// <summary>The newest <c>GLIBCXX_3.4.x</c> that libLibTorchSharp.so needs and this machine's libstdc++ lacks, or null.</summary>
    internal static string? MissingGlibcxx()
    {
        var bridge = Path.Combine(AppContext.BaseDirectory, "runtimes", "linux-x64", "native", "libLibTorchSharp.so");
        if (!File.Exists(bridge)) bridge = Path.Combine(AppContext.BaseDirectory, "libLibTorchSharp.so");
        var std = new[] { "/usr/lib/x86_64-linux-gnu/libstdc++.so.6", "/lib/x86_64-linux-gnu/libstdc++.so.6" }.FirstOrDefault(File.Exists);
        if (!File.Exists(bridge) || std is null) return null;
        var needed = Versions(File.ReadAllBytes(bridge));
        var have = Versions(File.ReadAllBytes(std));
        return needed.Except(have).OrderBy(v => v.Length).ThenBy(v => v, StringComparer.Ordinal).LastOrDefault();
    }

    private static HashSet<string> Versions(byte[] elf)
    {
        var text = System.Text.Encoding.Latin1.GetString(elf);
        return System.Text.RegularExpressions.Regex.Matches(text, @"GLIBCXX_3\.4\.\d+").Select(m => m.Value).ToHashSet(StringComparer.Ordinal);
    }

    private static string? FindPyTorchLib()
    {
        try
        {
            using var p = System.Diagnostics.Process.Start(new System.Diagnostics.ProcessStartInfo("python3", "-c \"import os,torch;print(os.path.join(os.path.dirname(torch.__file__),'lib'))\"")
            {
                RedirectStandardOutput = true, RedirectStandardError = true, UseShellExecute = false,
            });
            if (p is null) return null;
            var output = p.StandardOutput.ReadToEnd().Trim();
            p.WaitForExit(30_000);
            return p.ExitCode == 0 && Directory.Exists(output) ? output : null;
        }
        catch (System.ComponentModel.Win32Exception)
        {
            return null;
        }
    }
}
