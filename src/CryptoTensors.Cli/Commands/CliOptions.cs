using System.CommandLine;
using System.CommandLine.Parsing;
using System.Runtime.InteropServices;
using System.Text.Json;

namespace CryptoTensors.Cli.Commands;

/// <summary>
/// A refusal whose exit code is not the one its exception type would give (e.g. a broken <c>--policy</c> file is a
/// policy error, exit 2, on every command). The message is the one line printed on standard error.
/// </summary>
internal sealed class CliException(int exitCode, string message, Exception? inner = null) : Exception(message, inner)
{
    public int ExitCode { get; } = exitCode;
}

/// <summary>Option helpers shared by the commands: case-insensitive choices, files named by options, output checks.</summary>
internal static unsafe partial class CliOptions
{
    /// <summary>
    /// Restricts <paramref name="option"/> to <paramref name="values"/>, compared without regard to case, and
    /// normalises the value to its listed spelling (<c>--alg AES256GCM</c> is <c>aes256gcm</c>).
    /// </summary>
    public static Option<string> OneOf(this Option<string> option, params string[] values)
    {
        option.HelpName = string.Join('|', values);
        option.CustomParser = r =>
        {
            var token = r.Tokens.Count == 0 ? "" : r.Tokens[^1].Value;
            var match = values.FirstOrDefault(v => string.Equals(v, token, StringComparison.OrdinalIgnoreCase));
            if (match is null) r.AddError($"{option.Name} '{token}' is not one of {string.Join(", ", values)}");
            return match ?? token;
        };
        option.CompletionSources.Add(values);
        return option;
    }

    /// <summary>Reads a text file named by <paramref name="option"/>; failures name the option, the file and the cause.</summary>
    public static string ReadText(string option, string path)
    {
        if (Directory.Exists(path)) throw new IOException($"{option} '{path}' is a directory, not a file");
        if (!File.Exists(path)) throw new FileNotFoundException($"{option} '{path}': no such file", path);
        return File.ReadAllText(path);
    }

    /// <summary>A JSON object read from the file named by <paramref name="option"/>.</summary>
    public static JsonElement ReadJsonObject(string option, string path)
    {
        var text = ReadText(option, path);
        JsonElement value;
        try
        {
            using var doc = JsonDocument.Parse(text, new JsonDocumentOptions { MaxDepth = Gpu.Policy.PolicyLimits.MaxDepthLimit });
            value = doc.RootElement.Clone();
        }
        catch (JsonException e)
        {
            throw new ArgumentException($"{option} '{path}' is not JSON: {e.Message}", e);
        }
        if (value.ValueKind != JsonValueKind.Object) throw new ArgumentException($"{option} '{path}' must hold a JSON object, not {value.ValueKind}");
        return value;
    }

    /// <summary>
    /// Checks an output path before any work is done: for a single-file input the output must not be an existing
    /// directory; and an output that is the input itself (after resolving links) is refused unless
    /// <paramref name="force"/> is given, since it would replace the input.
    /// </summary>
    public static void CheckOutput(string input, string output, bool directoryInput, bool force, string forceOption = "--force")
    {
        if (!directoryInput && Directory.Exists(output))
            throw new ArgumentException($"-o '{output}' is an existing directory; name the output file");
        if (directoryInput && File.Exists(output))
            throw new ArgumentException($"-o '{output}' is a file; a sharded input needs an output directory");
        if (!force && SamePath(input, output))
            throw new ArgumentException($"-o '{output}' is the input itself: writing it would replace the input; give {forceOption} to do so");
    }

    /// <summary>True when both paths name the same existing file or directory (symbolic links resolved).</summary>
    internal static bool SamePath(string a, string b)
    {
        if (!Path.Exists(a) || !Path.Exists(b)) return false;
        return string.Equals(RealPath(a), RealPath(b), StringComparison.Ordinal);
    }

    private static string RealPath(string path)
    {
        var full = Path.GetFullPath(path);
        if (!OperatingSystem.IsLinux() && !OperatingSystem.IsMacOS()) return full;
        var resolved = realpath(full, IntPtr.Zero);
        if (resolved == IntPtr.Zero) return full;
        try
        {
            return Marshal.PtrToStringUTF8(resolved) ?? full;
        }
        finally
        {
            NativeMemory.Free((void*)resolved);
        }
    }

    [LibraryImport("libc", StringMarshalling = StringMarshalling.Utf8)]
    private static partial IntPtr realpath(string path, IntPtr resolved);
}
