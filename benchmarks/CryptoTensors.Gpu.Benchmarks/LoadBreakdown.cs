using System.Diagnostics;
using System.Runtime.InteropServices;
using CryptoTensors.Gpu.Keys;
using CryptoTensors.Gpu.Loading;
using CryptoTensors.Gpu.Reading;
using CryptoTensors.Gpu.Workloads;
using CryptoTensors.Gpu.Writing;

namespace CryptoTensors.Gpu.Benchmarks;

/// <summary>
/// <c>-- load-breakdown [runs]</c>: open and parallel load of the 1000-tensor LoRA file timed separately, run by run
/// from a fresh process (as <c>ctensors bench</c> does: a cold process pays for tier-0 code), in microseconds per tensor.
/// </summary>
internal static unsafe class LoadBreakdown
{
    public static void Run(int runs)
    {
        var dir = Directory.CreateTempSubdirectory("ctensors-load-").FullName;
        try
        {
            using var master = MasterKey.Generate();
            using var signer = SigningKey.Generate();
            var path = Path.Combine(dir, "lora.ct");
            CryptoTensorsWriter.Write(path, DemoWorkloads.Lora(), new WriterOptions { MasterKey = master, SigningKey = signer });
            var options = new ReaderOptions { MasterKey = master, VerificationKey = signer.Public, Keys = new() };
            var size = 4096 * 1000;
            var dest = (byte*)NativeMemory.AlignedAlloc((nuint)size, 4096);
            try
            {
                new Span<byte>(dest, size).Fill(1);
                for (var run = 0; run < runs; run++)
                {
                    var sw = Stopwatch.StartNew();
                    using var reader = CryptoTensorsReader.Open(path, options);
                    var open = sw.Elapsed.TotalMilliseconds;
                    var offsets = new Dictionary<string, long>(StringComparer.Ordinal);
                    long offset = 0;
                    foreach (var t in reader.Tensors)
                    {
                        offsets[t.Name] = offset;
                        offset += t.ByteLength;
                    }
                    var mid = sw.Elapsed.TotalMilliseconds;
                    ModelLoader.LoadInto(reader, t => new TensorDestination((IntPtr)(dest + offsets[t.Name]), t.ByteLength), new LoadOptions { MaxDegreeOfParallelism = int.Parse(Environment.GetEnvironmentVariable("DOP") ?? "2", System.Globalization.CultureInfo.InvariantCulture), ReadPath = Enum.Parse<ReadPath>(Environment.GetEnvironmentVariable("READPATH") ?? "Auto") });
                    var total = sw.Elapsed.TotalMilliseconds;
                    Console.WriteLine($"run {run,3}: open {open * 1000 / reader.Tensors.Count,6:F2} us/tensor  load {(total - mid) * 1000 / reader.Tensors.Count,6:F2} us/tensor  total {total * 1000 / reader.Tensors.Count,6:F2} us/tensor");
                }
            }
            finally
            {
                NativeMemory.AlignedFree(dest);
            }
        }
        finally
        {
            Directory.Delete(dir, true);
        }
    }
}
