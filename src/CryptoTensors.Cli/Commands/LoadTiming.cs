using System.Diagnostics;
using CryptoTensors.Gpu.Loading;
using CryptoTensors.Gpu.Reading;

namespace CryptoTensors.Cli.Commands;

/// <summary>Timing of whole-model loads, shared by <c>demo</c> and <c>bench</c>.</summary>
internal static unsafe class LoadTiming
{
    /// <summary>The smallest of <paramref name="n"/> runs (seconds).</summary>
    public static double Best(int n, Func<double> run)
    {
        var best = double.MaxValue;
        for (var i = 0; i < n; i++) best = Math.Min(best, run());
        return best;
    }

    /// <summary>
    /// Times <paramref name="run"/> at least <paramref name="minRuns"/> times, and on while the runs so far took less than
    /// <see cref="ShortRunBudgetSeconds"/> (at most <see cref="MaxRuns"/>): a load of a few milliseconds is timed over
    /// enough runs that the best is its steady-state cost, as micro-benchmark harnesses do. The best run, the first
    /// (which pays for compiling the code it runs first) and the number of runs.
    /// </summary>
    public static (double Best, double First, int Runs) Repeated(int minRuns, Func<double> run)
    {
        double best = double.MaxValue, first = 0, total = 0;
        var runs = 0;
        while (runs < Math.Max(1, minRuns) || (total < ShortRunBudgetSeconds && runs < MaxRuns))
        {
            var t = run();
            if (runs++ == 0) first = t;
            best = Math.Min(best, t);
            total += t;
        }
        return (best, first, runs);
    }

    /// <summary>How long the repeated runs of one short load may take in all before the count stops growing.</summary>
    public const double ShortRunBudgetSeconds = 0.25;

    /// <summary>The most runs of one short load.</summary>
    public const int MaxRuns = 200;

    public static double Load(string path, ReaderOptions options, byte* destination, ReadPath readPath)
    {
        var sw = Stopwatch.StartNew();
        using var reader = CryptoTensorsReader.Open(path, options);
        LoadAll(reader, destination, readPath);
        return sw.Elapsed.TotalSeconds;
    }

    /// <summary>Every tensor of <paramref name="reader"/> through the parallel loader, packed one after another at <paramref name="destination"/>.</summary>
    public static void LoadAll(CryptoTensorsReader reader, byte* destination, ReadPath readPath)
    {
        var offsets = new Dictionary<string, long>(StringComparer.Ordinal);
        long offset = 0;
        foreach (var t in reader.Tensors)
        {
            offsets[t.Name] = offset;
            offset += t.ByteLength;
        }
        ModelLoader.LoadInto(reader, t => new TensorDestination((IntPtr)(destination + offsets[t.Name]), t.ByteLength), new LoadOptions { ReadPath = readPath });
    }

}
