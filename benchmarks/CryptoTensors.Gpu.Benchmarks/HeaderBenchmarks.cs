using BenchmarkDotNet.Attributes;
using CryptoTensors.Gpu.Format;
using CryptoTensors.Gpu.Keys;
using CryptoTensors.Gpu.Reading;
using CryptoTensors.Gpu.Workloads;
using CryptoTensors.Gpu.Writing;

namespace CryptoTensors.Gpu.Benchmarks;

/// <summary>Open cost: header parse, signature check and key unwrap of the 1000-tensor LoRA workload (per-tensor overhead).</summary>
[MemoryDiagnoser]
public class OpenBenchmarks
{
    private string _dir = null!;
    private string _plain = null!;
    private string _enc = null!;
    private MasterKey _master = null!;
    private SigningKey _signer = null!;
    private byte[] _header = null!;

    [GlobalSetup]
    public void Setup()
    {
        _dir = Directory.CreateTempSubdirectory("ctensors-bench-").FullName;
        _master = MasterKey.Generate();
        _signer = SigningKey.Generate();
        _plain = Path.Combine(_dir, "lora.safetensors");
        _enc = Path.Combine(_dir, "lora.cryptotensors");
        CryptoTensorsWriter.Write(_plain, DemoWorkloads.Lora(), new WriterOptions());
        CryptoTensorsWriter.Write(_enc, DemoWorkloads.Lora(), new WriterOptions { MasterKey = _master, SigningKey = _signer });
        var bytes = File.ReadAllBytes(_enc);
        _header = bytes.AsSpan(8, (int)BitConverter.ToUInt64(bytes, 0)).ToArray();
    }

    [Benchmark]
    public int ParseHeader() => SafetensorsHeader.Parse(_header, null).Tensors.Count;

    [Benchmark]
    public int OpenPlain()
    {
        using var r = CryptoTensorsReader.Open(_plain, new ReaderOptions { Keys = new() });
        return r.Tensors.Count;
    }

    [Benchmark]
    public int OpenEncrypted()
    {
        using var r = CryptoTensorsReader.Open(_enc, new ReaderOptions { MasterKey = _master, VerificationKey = _signer.Public, Keys = new() });
        return r.Tensors.Count;
    }

    [GlobalCleanup]
    public void Cleanup()
    {
        _master.Dispose();
        _signer.Dispose();
        Directory.Delete(_dir, true);
    }
}
