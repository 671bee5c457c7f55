using System.CommandLine;
using CryptoTensors.Cli.Commands;
using CryptoTensors.Gpu;

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
        root.Subcommands.Add(RssProbeCommand.Create(io));
        var parsed = root.Parse(args);
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
        catch (Exception e) when (e is CryptoTensorsException or IOException or UnauthorizedAccessException or ArgumentException or OperationCanceledException
            or Gpu.Devices.Cuda.CudaException)
        {
            var custom = onError?.Invoke(e);
            if (custom is { } c) return c;
            Err.WriteLine("ctensors: error: " + OneLine(e.Message));
            return ExitCode(e);
        }
    }

    public static int ExitCode(Exception e) => e is CryptoTensorsException ce ? (int)ce.Kind : CliApp.UsageExitCode;

    public static string OneLine(string s) => s.Replace('\r', ' ').Replace('\n', ' ');
}
