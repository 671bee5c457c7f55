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

    /// <summary>
    /// The runtime configuration property (runtimeconfig.json <c>configProperties</c>, or an MSBuild
    /// <c>RuntimeHostConfigurationOption</c>) naming a libtorch folder, looked at after <see cref="TorchLibVariable"/>:
    /// the repository's programs set it to libtorch-cpu in the NuGet cache (eng/Libtorch.targets).
    /// </summary>
    public const string TorchLibConfigName = "CryptoTensors.TorchLib";

    // Dependency order: each library's DT_NEEDED entries are loaded before it.
    private static readonly string[] Libraries =
        ["libc10.so", "libtorch_cpu.so", "libc10_cuda.so", "libtorch_cuda.so", "libtorch.so"];

    private static readonly object Gate = new();
    private static (bool Done, string? Error) _state;

    /// <summary>
    /// Loads libtorch from <paramref name="torchLibDirectory"/> (or <c>CRYPTOTENSORS_TORCH_LIB</c>, or the
    /// <see cref="TorchLibConfigName"/> runtime configuration property, or PyTorch's
    /// <c>torch/lib</c> found through <c>python3</c>, or a libtorch in the application's folder, when neither is set),
    /// then initialises TorchSharp for CPU and, when available, CUDA. Returns false with the reason, on one line, when
    /// TorchSharp cannot run on this machine; what it checks first (libstdc++ versions, libtorch) is checked before
    /// anything touches <c>TorchSharp.torch</c>, whose own fallback would copy libtorch from the NuGet cache.
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
        dir ??= Environment.GetEnvironmentVariable(TorchLibVariable) is { Length: > 0 } env ? env
            : AppContext.GetData(TorchLibConfigName) is string { Length: > 0 } configured ? configured
            : FindPyTorchLib() ?? FindBundledLibtorch();
        // Nothing below touches TorchSharp.torch until its native backend is known to load: torch's static initializer,
        // when it cannot load that backend, prints a long trace and falls back to copying libtorch out of the NuGet cache
        // into the application's folder (hundreds of MB).
        if (LoadPrerequisites(dir, out var cudaLoaded) is { } missing) return missing;
        try
        {
            torch.InitializeDeviceType(DeviceType.CPU);
            if (cudaLoaded) torch.TryInitializeDeviceType(DeviceType.CUDA);
            return null;
        }
        catch (Exception e) when (e is NotSupportedException or DllNotFoundException or TypeInitializationException or EntryPointNotFoundException)
        {
            return $"TorchSharp did not initialise with libtorch from {dir}: {Flatten(e)}";
        }
    }

    /// <summary>
    /// Checks and loads, without touching <c>TorchSharp.torch</c>, what TorchSharp's native bridge needs: the
    /// <c>GLIBCXX</c> versions it was built against in the libstdc++ this process loads, libtorch in
    /// <paramref name="dir"/> (loaded here, in dependency order), then the bridge itself. Returns null when all of it
    /// loaded, else the reasons on one line, with the loader's own error text where a load failed.
    /// </summary>
    internal static string? LoadPrerequisites(string? dir, out bool cudaLoaded)
    {
        cudaLoaded = false;
        var bridge = BridgePath();
        if (bridge is null)
            return $"{BridgeName} is not in {Path.Combine(AppContext.BaseDirectory, "runtimes", "linux-x64", "native")} (TorchSharp's native bridge ships for linux-x64)";
        var reasons = new List<string>();
        if (MissingGlibcxx(bridge, out var libstdcxx) is { } glibcxx)
            reasons.Add($"{BridgeName} needs {glibcxx}, which the loaded libstdc++ ({libstdcxx}) lacks");
        if (dir is null)
        {
            reasons.Add($"no libtorch found: set {TorchLibVariable} to a PyTorch torch/lib folder (python3 finds no torch package and the application ships no libtorch)");
        }
        else if (Required.Where(lib => !File.Exists(Path.Combine(dir, lib))).ToList() is { Count: > 0 } absent)
        {
            reasons.Add($"no libtorch in {dir}: {string.Join(", ", absent)} missing (set {TorchLibVariable} to a PyTorch torch/lib folder)");
        }
        else
        {
            foreach (var lib in Libraries)
            {
                var path = Path.Combine(dir, lib);
                if (!File.Exists(path)) continue;
                if (Load(path) is { } error)
                {
                    reasons.Add(error);
                    break;
                }
                cudaLoaded |= lib == "libtorch_cuda.so";
            }
        }
        if (reasons.Count == 0 && Load(bridge) is { } bridgeError) reasons.Add(bridgeError);
        return reasons.Count == 0 ? null : string.Join("; ", reasons);
    }

    private const string BridgeName = "libLibTorchSharp.so";

    // What libLibTorchSharp.so links against (its DT_NEEDED libtorch entries); the CUDA libraries are optional.
    private static readonly string[] Required = ["libc10.so", "libtorch_cpu.so", "libtorch.so"];

    /// <summary>Loads a native library by path: null, or "PATH could not be loaded: " and the loader's error on one line.</summary>
    private static string? Load(string path)
    {
        try
        {
            NativeLibrary.Load(path);
            return null;
        }
        catch (Exception e) when (e is DllNotFoundException or BadImageFormatException)
        {
            return $"{path} could not be loaded: {OneLine(e.Message)}";
        }
    }

    private static string OneLine(string text) => string.Join(' ', text.Split((char[]?)null, StringSplitOptions.RemoveEmptyEntries));

    private static string Flatten(Exception e)
    {
        var parts = new List<string>();
        for (var x = e; x is not null; x = x.InnerException) parts.Add(x.Message.Split('\n')[0].Trim());
        return string.Join(" -> ", parts.Distinct());
    }

    /// <summary>A libtorch the application ships itself (a libtorch-cpu/-cuda package copied into its folder), or null.</summary>
    private static string? FindBundledLibtorch()
        => new[] { Path.Combine(AppContext.BaseDirectory, "runtimes", "linux-x64", "native"), AppContext.BaseDirectory }
            .FirstOrDefault(d => File.Exists(Path.Combine(d, "libtorch_cpu.so")));

    private static string? BridgePath()
        => new[] { Path.Combine(AppContext.BaseDirectory, "runtimes", "linux-x64", "native", BridgeName), Path.Combine(AppContext.BaseDirectory, BridgeName) }
            .FirstOrDefault(File.Exists);

    /// <summary>The newest <c>GLIBCXX_3.4.x</c> that libLibTorchSharp.so needs and this process's libstdc++ lacks, or null.</summary>
    internal static string? MissingGlibcxx() => BridgePath() is { } bridge ? MissingGlibcxx(bridge, out _) : null;

    private static string? MissingGlibcxx(string bridge, out string? libstdcxx)
    {
        libstdcxx = LoadedLibstdcxx();
        if (libstdcxx is null) return null;
        var needed = Versions(File.ReadAllBytes(bridge));
        var have = Versions(File.ReadAllBytes(libstdcxx));
        return needed.Except(have).OrderBy(v => v.Length).ThenBy(v => v, StringComparer.Ordinal).LastOrDefault();
    }

    /// <summary>
    /// The libstdc++ a load of the bridge would bind to: the one already mapped into this process (the .NET host is
    /// C++ and loads it at start), else the system one.
    /// </summary>
    private static string? LoadedLibstdcxx()
    {
        try
        {
            foreach (var line in File.ReadLines("/proc/self/maps"))
            {
                var at = line.IndexOf('/', StringComparison.Ordinal);
                if (at >= 0 && Path.GetFileName(line.AsSpan(at)).StartsWith("libstdc++.so", StringComparison.Ordinal) && File.Exists(line[at..]))
                    return line[at..];
            }
        }
        catch (IOException)
        {
        }
        catch (UnauthorizedAccessException)
        {
        }
        return new[] { "/usr/lib/x86_64-linux-gnu/libstdc++.so.6", "/lib/x86_64-linux-gnu/libstdc++.so.6" }.FirstOrDefault(File.Exists);
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
