namespace CryptoTensors.Cli;

/// <summary>Entry point of <c>ctensors</c>.</summary>
public static class Program
{
    /// <summary>Runs the CLI.</summary>
    public static int Main(string[] args) => CliApp.Run(args, Console.Out, Console.Error);
}
