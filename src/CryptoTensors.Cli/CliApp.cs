using System.CommandLine;
using CryptoTensors.Cli.Commands;
using CryptoTensors.Gpu;
using CryptoTensors.Gpu.Keys;

namespace CryptoTensors.Cli;

/// <summary>The command tree of <c>ctensors</c>, runnable in process (tests use it directly).</summary>
public static class CliApp
{
    /// <summary>Exit code for usage errors and I/O failures outside the format's categories.</summary>
    public const int UsageExitCode = 1;

    /// <summary>Parses and runs <paramref name="args"/>; returns the exit code.</summary>
    public static int Run(string[] args, TextWriter stdout, TextWriter stderr) => Run(args, stdout, stderr, null);

    /// <summary>Parses and runs <paramref name="args"/> with <paramref name="stdin"/> as standard input (<c>-</c> arguments).</summary>
    public static int Run(string[] args, TextWriter stdout, TextWriter stderr, Stream? stdin)
    {
        var io = new CliIO(stdout, stderr, stdin);
        var root = new RootCommand("ctensors: encrypt, sign, verify, inspect, rotate and load CryptoTensors files (byte-compatible with the reference).");
        root.Subcommands.Add(KeygenCommand.Create(io));
        root.Subcommands.Add(EncryptCommand.Create(io));
        root.Subcommands.Add(DecryptCommand.Create(io));
        root.Subcommands.Add(InspectCommand.Create(io));
        root.Subcommands.Add(VerifyCommand.Create(io));
        root.Subcommands.Add(RewrapCommand.Create(io));
        root.Subcommands.Add(PolicyCommand.Create(io));
        root.Subcommands.Add(DemoCommand.Create(io));
        root.Subcommands.Add(BenchCommand.Create(io));
        root.Subcommands.Add(KeyServerCommand.Create(io));
        root.Subcommands.Add(RssProbeCommand.Create(io));
        var parsed = root.Parse(args);
        if (parsed.Errors.Count > 0 && parsed.Action is System.CommandLine.Invocation.ParseErrorAction)
        {
            // One line per argument error, no help text (that comes with --help only).
            var command = string.Join(' ', parsed.CommandResult.Command is RootCommand ? ["ctensors"] : ["ctensors", parsed.CommandResult.Command.Name]);
            foreach (var error in parsed.Errors)
                stderr.WriteLine($"ctensors: error: {CliIO.OneLine(error.Message)} (see '{command} --help')");
            return UsageExitCode;
        }
        return parsed.Invoke(new InvocationConfiguration { Output = stdout, Error = stderr, EnableDefaultExceptionHandler = false });
    }
}

/// <summary>Output streams and the one-line error convention.</summary>
internal sealed class CliIO(TextWriter stdout, TextWriter stderr, Stream? stdin = null)
{
    public Stream In => stdin ?? Console.OpenStandardInput();

    public TextWriter Out { get; } = stdout;

    public TextWriter Err { get; } = stderr;

    /// <summary>Runs a command body, mapping every failure to a one-line message and its category's exit code.</summary>
    public int Guard(Func<int> body, Func<Exception, int?>? onError = null)
    {
        try
        {
            return body();
        }
        catch (Exception e) when (IsExpected(e))
        {
            var custom = onError?.Invoke(e);
            if (custom is { } c) return c;
            WriteError(e);
            return ExitCode(e);
        }
    }

    /// <summary>
    /// For <see cref="Guard"/>'s onError: prints an extra explanation line after the error line (when there is one)
    /// and leaves the exit code to the default.
    /// </summary>
    public int? Explain(string? explanation)
    {
        if (explanation is null) return null;
        explained = explanation;
        return null;
    }

    private string? explained;

    /// <summary>Writes the error line of <paramref name="e"/> on standard error, then the explanation set by <see cref="Explain"/>, if any.</summary>
    public void WriteError(Exception e)
    {
        Err.WriteLine("ctensors: error: " + Message(e));
        if (explained is not null) Err.WriteLine(OneLine(explained));
        explained = null;
    }

    /// <summary>The failures a command reports as one line and an exit code (anything else is a bug and propagates).</summary>
    public static bool IsExpected(Exception e)
        => e is CryptoTensorsException or IOException or UnauthorizedAccessException or ArgumentException or OperationCanceledException
            or CliException or Gpu.Devices.Cuda.CudaException;

    public static int ExitCode(Exception e) => e switch
    {
        CliException c => c.ExitCode,
        CryptoTensorsException ce => (int)ce.Kind,
        _ => CliApp.UsageExitCode,
    };

    /// <summary>The one-line message of a failure, with the hint a CLI user needs where the library's text lacks it.</summary>
    public static string Message(Exception e) => OneLine(e switch
    {
        KeyException { Code: ErrorCode.MissingMasterKey, Kid: { } kid } k =>
            $"the file needs the master key with kid '{kid}': give --key FILE (a JWK or JWK Set holding it), --key-url URL (a key server) or set {EnvKeyProvider.VariableName} [{k.Message}]",
        KeyException { Code: ErrorCode.MissingVerificationKey, Kid: { } kid } k =>
            $"the file needs the verification key with kid '{kid}': give --verify-key FILE (a JWK or JWK Set holding it) or set {EnvKeyProvider.VariableName} [{k.Message}]",
        PolicyDeniedException { InputDocument: not null } p => p.Message + " (--context and --device set the input; --explain shows it)",
        _ => e.Message,
    });

    public static string OneLine(string s) => s.Replace('\r', ' ').Replace('\n', ' ');
}
