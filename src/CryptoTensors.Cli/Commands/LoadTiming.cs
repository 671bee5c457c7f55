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
