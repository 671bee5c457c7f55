using CryptoTensors.Gpu.Keys;
using CryptoTensors.Gpu.Reading;
using CryptoTensors.Gpu.Workloads;
using CryptoTensors.Gpu.Writing;

namespace CryptoTensors.Cli.Commands;

/// <summary>
/// What the device benches load: a workload written plain and encrypted (v2, AES-256-GCM, signed with fresh bench keys)
/// into a folder, and the reader options for each file.
/// </summary>
internal sealed class BenchFiles : IDisposable
{
    private readonly MasterKey _master = MasterKey.Generate(kid: "bench-enc");
    private readonly SigningKey _signer = SigningKey.Generate("bench-sign");

    private BenchFiles(string workload)
    {
        Tensors = DemoWorkloads.Create(workload);
        Bytes = Tensors.Sum(t => t.ByteLength);
        Keys = new ReaderOptions { MasterKey = _master, VerificationKey = _signer.Public, Keys = new KeyRegistry() };
    }

    /// <summary>The workload's tensors (nothing written yet: <see cref="Write"/>).</summary>
    public static BenchFiles For(string workload) => new(workload);

    public IReadOnlyList<TensorSource> Tensors { get; }

    public long Bytes { get; }

    /// <summary>The plain file, once written.</summary>
    public string Plain { get; private set; } = "";

    /// <summary>The encrypted (v2) file, once written.</summary>
    public string V2 { get; private set; } = "";

    /// <summary>Opens <see cref="V2"/>.</summary>
    public ReaderOptions Keys { get; }

    /// <summary>Opens <see cref="Plain"/>.</summary>
    public ReaderOptions NoKeys { get; } = new() { Keys = new KeyRegistry() };

    /// <summary>Writes the plain file and its encrypted copy into <paramref name="dir"/>.</summary>
    public void Write(string dir)
    {
        Plain = Path.Combine(dir, "plain.safetensors");
        V2 = Path.Combine(dir, "v2.cryptotensors");
        CryptoTensorsWriter.Write(Plain, Tensors, new WriterOptions());
        BenchCommand.EncryptCopy(Plain, V2, new WriterOptions { MasterKey = _master, SigningKey = _signer });
    }

    public void Dispose()
    {
        _master.Dispose();
        _signer.Dispose();
    }
}
