namespace CryptoTensors.Cli;

/// <summary>The command tree of <c>ctensors</c>, runnable in process (tests use it directly).</summary>
public static class CliApp
{
    /// <summary>Parses and runs <paramref name="args"/>; returns the exit code.</summary>
    public static int Run(string[] args, TextWriter stdout, TextWriter stderr)
    {
        stderr.WriteLine("ctensors: no command yet");
        return args.Length == 0 ? 1 : 1;
    }
}
