using BenchmarkDotNet.Running;

namespace CryptoTensors.Gpu.Benchmarks;

/// <summary>
/// Micro-benchmarks (BenchmarkDotNet). Run: <c>dotnet run -c Release --project benchmarks/CryptoTensors.Gpu.Benchmarks -- --filter '*'</c>.
/// Whole-model loads are measured by <c>ctensors demo</c>.
/// </summary>
public static class Program
{
    public static void Main(string[] args)
    {
        if (args is ["open-breakdown"]) OpenBreakdown.Run();
        else if (args is ["open-breakdown", var part]) OpenBreakdown.Loop(part);
        else if (args is ["load-breakdown", ..]) LoadBreakdown.Run(args.Length > 1 ? int.Parse(args[1], System.Globalization.CultureInfo.InvariantCulture) : 6);
        else BenchmarkSwitcher.FromAssembly(typeof(Program).Assembly).Run(args);
    }
}
