using System.Security.Cryptography;
using CryptoTensors.Gpu.Crypto;
using CryptoTensors.Gpu.Devices;
using CryptoTensors.Gpu.Format;
using CryptoTensors.Gpu.ILGPU;
using CryptoTensors.Gpu.Keys;
using CryptoTensors.Gpu.Reading;
using CryptoTensors.Gpu.Tests;
using CryptoTensors.Gpu.Workloads;
using CryptoTensors.Gpu.Writing;
using ILGPU;
using ILGPU.Runtime;
using ILGPU.Runtime.CPU;
using ILGPU.Runtime.Cuda;

namespace CryptoTensors.Gpu.Interop.Tests;

/// <summary>
/// The ILGPU path: the same staging-ring pipeline, copies on ILGPU streams. Runs on the CPU accelerator
/// everywhere and on every CUDA accelerator where one exists (skipped with the reason elsewhere).
/// </summary>
[NonParallelizable]
public class IlgpuLoaderTests
{
    public static IEnumerable<string> Kinds() => ["cpu", "cuda"];

    private static (Context Context, Accelerator Accelerator) Open(string kind)
    {
        var context = Context.Create(b => b.Default());
        try
        {
            if (kind == "cpu") return (context, context.CreateCPUAccelerator(0));
            var cuda = context.GetCudaDevices();
            if (cuda.Count == 0) Assert.Ignore("needs a CUDA GPU: ILGPU finds no CUDA device on this machine");
            return (context, cuda[0].CreateAccelerator(context));
        }
        catch
        {
            context.Dispose();
            throw;
        }
    }

    private static (string Path, List<TensorSource> Tensors, MasterKey Master, SigningKey Signer) Model(TempDir tmp, int version)
    {
        var master = MasterKey.Generate(AeadAlgorithm.Aes256Gcm);
        var signer = SigningKey.Generate();
        var tensors = TestModels.EveryDtype();
        tensors.AddRange(DemoWorkloads.Tiny());
        tensors.Add(TestModels.Tensor("big", Dtype.F32, [257, 129], 3));
        CryptoTensorsWriter.Write(tmp.File("m"), tensors, new WriterOptions
        {
            MasterKey = master, SigningKey = signer, FormatVersion = version, ChunkSize = 4096,
            EncryptOnly = tensors.Where((t, i) => i % 4 != 0).Select(t => t.Name).ToList(),
        });
        return (tmp.File("m"), tensors, master, signer);
    }

    [Test]
    public void AnEncryptedModelLoadsIntoIlgpuBuffersWithTheSameBytes([ValueSource(nameof(Kinds))] string kind, [Values(1, 2)] int version,
        [Values(DecryptSite.Cpu, DecryptSite.Gpu)] DecryptSite site)
    {
        var (context, accelerator) = Open(kind);
        using var _c = context;
        using var _a = accelerator;
        using var tmp = new TempDir();
        var (path, tensors, master, signer) = Model(tmp, version);
        using var _m = master;
        using var _s = signer;
        using var reader = CryptoTensorsReader.Open(path, TestModels.Keys(master, signer));
        using var model = IlgpuLoader.Load(accelerator, reader, new DeviceLoadOptions { Slots = 3, SlotBytes = 8192, DecryptOn = site });
        Assert.That(model.DecryptedOn, Is.EqualTo(site));
        var want = TestModels.Plain(tensors);
        foreach (var t in tensors)
        {
            var got = model[t.Name].GetAsArray1D();
            Assert.That(SHA256.HashData(got), Is.EqualTo(SHA256.HashData(want[t.Name])), t.Name);
        }
        Assert.That(model.Staging.RingBytes, Is.EqualTo(3 * 8192));
        var floats = model.View<float>("big");
        Assert.That(floats.Length, Is.EqualTo(257 * 129));
    }

    [Test]
    public void ATamperedChunkLeavesEveryBufferZeroedAndNamesTheTensor([ValueSource(nameof(Kinds))] string kind, [Values(DecryptSite.Cpu, DecryptSite.Gpu)] DecryptSite site)
    {
        var (context, accelerator) = Open(kind);
        using var _c = context;
        using var _a = accelerator;
        using var tmp = new TempDir();
        var (path, _, master, signer) = Model(tmp, 2);
        using var _m = master;
        using var _s = signer;
        using (var r0 = CryptoTensorsReader.Open(path, TestModels.Keys(master, signer)))
        {
            r0.Header.TryGetTensor("big", out var info);
            using var f = new FileStream(path, FileMode.Open, FileAccess.ReadWrite);
            f.Position = r0.Header.DataStart + (long)info.Begin + 100_000;
            var b = f.ReadByte();
            f.Position -= 1;
            f.WriteByte((byte)(b ^ 4));
        }
        using var reader = CryptoTensorsReader.Open(path, TestModels.Keys(master, signer));
        byte[]? left = null;
        var ex = Assert.Throws<DecryptionException>(() => IlgpuLoader.Load(accelerator, reader, new DeviceLoadOptions { DecryptOn = site }, null, default,
            buffer => left = buffer.GetAsArray1D()));
        Assert.That((ex!.Tensor, ex.Chunk), Is.EqualTo(("big", 100_000L / 4096)));
        Assert.That(left, Is.Not.Null.And.Not.Empty);
        Assert.That(left!.All(b => b == 0), Is.True, "every destination is zeroed before the buffer is freed");
    }

    [Test]
    public void TheCopyEngineRefusesCopiesOutsideItsBuffers()
    {
        var (context, accelerator) = Open("cpu");
        using var _c = context;
        using var _a = accelerator;
        using var a = accelerator.Allocate1D<byte>(100);
        using var b = accelerator.Allocate1D<byte>(50);
        using var engine = new IlgpuCopyEngine(accelerator, [a, b]);
        Assert.That((engine.AddressOf(0), engine.AddressOf(1)), Is.EqualTo((0UL, 100UL)));
        Assert.Throws<ArgumentOutOfRangeException>(() => engine.Clear(90, 20), "a copy may not span two tensors");
        Assert.Throws<ArgumentOutOfRangeException>(() => engine.Clear(140, 20));
        engine.Clear(100, 50);
    }
}
