using System.Runtime.InteropServices;

namespace CryptoTensors.Gpu.Loading.Native;

/// <summary>
/// Finds one of this project's native libraries beside the application or this assembly (where
/// native/Native.targets copies them) and checks it before use, so a missing or stale build is a reason, not a crash.
/// </summary>
internal static class NativeLibraryLocator
{
    /// <summary>
    /// Loads <paramref name="fileName"/> from the first candidate directory where it exists and where
    /// <paramref name="check"/> (given the handle; returns null when the library is acceptable, else why not)
    /// accepts it. Returns the handle, or 0 and every candidate's reason.
    /// </summary>
    public static (nint Handle, string? Error) Load(string fileName, string? missingHint, Func<nint, string?> check)
    {
        var candidates = new List<string> { Path.Combine(AppContext.BaseDirectory, fileName) };
        var assemblyDirectory = Path.GetDirectoryName(typeof(NativeLibraryLocator).Assembly.Location);
        if (!string.IsNullOrEmpty(assemblyDirectory)) candidates.Add(Path.Combine(assemblyDirectory, fileName));

        var reasons = new List<string>();
        foreach (var path in candidates.Distinct(StringComparer.Ordinal))
        {
            if (!File.Exists(path))
            {
                reasons.Add($"{path} does not exist{(missingHint is null ? "" : " (" + missingHint + ")")}");
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
        return (0, string.Join("; ", reasons));
    }
}
