using System.Runtime.InteropServices;

namespace CryptoTensors.Gpu.Loading.Native;

/// <summary>
/// Finds one of this project's native libraries beside the application or this assembly (where
/// native/Native.targets copies them in a build of this repository), or in the host's native search directories
/// (where an application that references the CryptoTensors.Gpu package finds <c>runtimes/linux-x64/native/</c>, listed
/// in its deps.json), and checks it before use, so a missing or stale build is a reason, not a crash.
/// </summary>
internal static class NativeLibraryLocator
{
    /// <summary>
    /// Loads <paramref name="fileName"/> from the first candidate directory where it exists and where
    /// <paramref name="check"/> (given the handle; returns null when the library is acceptable, else why not)
    /// accepts it. Returns the handle, or 0 and the reasons: why each existing candidate was refused, or, when none
    /// exists, where it was looked for.
    /// </summary>
    public static (nint Handle, string? Error) Load(string fileName, string? missingHint, Func<nint, string?> check)
    {
        var candidates = new List<string> { Path.Combine(AppContext.BaseDirectory, fileName) };
        var assemblyDirectory = Path.GetDirectoryName(typeof(NativeLibraryLocator).Assembly.Location);
        if (!string.IsNullOrEmpty(assemblyDirectory)) candidates.Add(Path.Combine(assemblyDirectory, fileName));
        candidates.AddRange(NativeSearchDirectories().Select(directory => Path.Combine(directory, fileName)).Where(File.Exists));

        var missing = new List<string>();
        var reasons = new List<string>();
        foreach (var path in candidates.Distinct(StringComparer.Ordinal))
        {
            if (!File.Exists(path))
            {
                missing.Add($"{path} does not exist{(missingHint is null ? "" : " (" + missingHint + ")")}");
                continue;
            }
            nint handle;
            try
            {
                handle = NativeLibrary.Load(path);
            }
            catch (Exception ex) when (ex is DllNotFoundException or BadImageFormatException)
            {
                reasons.Add($"{path}: {ex.Message.ReplaceLineEndings(" ").Trim()}");
                continue;
            }
            if (check(handle) is not { } refusal) return (handle, null);
            NativeLibrary.Free(handle);
            reasons.Add($"{path} {refusal}");
        }
        // A library that exists but does not load (a dependency missing, a stale build) is the reason worth reading.
        return (0, string.Join("; ", reasons.Count > 0 ? reasons : missing));
    }

    /// <summary>
    /// The host's <c>NATIVE_DLL_SEARCH_DIRECTORIES</c>: the application directory and, for every package native asset of
    /// this platform in the deps.json, its folder (<c>runtimes/linux-x64/native/</c> under the application in a build
    /// or portable publish output, or in the NuGet package cache where assets are not copied). The caller tries only
    /// those that hold the file, so these directories add no "does not exist" reasons.
    /// </summary>
    private static IEnumerable<string> NativeSearchDirectories()
        => (AppContext.GetData("NATIVE_DLL_SEARCH_DIRECTORIES") as string ?? "")
            .Split(Path.PathSeparator, StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries);
}
