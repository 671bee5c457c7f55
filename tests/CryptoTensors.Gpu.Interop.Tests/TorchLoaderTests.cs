using System.Security.Cryptography;
using CryptoTensors.Gpu.Crypto;
using CryptoTensors.Gpu.Format;
using CryptoTensors.Gpu.Keys;
using CryptoTensors.Gpu.Reading;
using CryptoTensors.Gpu.Tests;
using CryptoTensors.Gpu.TorchSharp;
using CryptoTensors.Gpu.Workloads;
using CryptoTensors.Gpu.Writing;
using TorchSharp;
using static TorchSharp.torch;

namespace CryptoTensors.Gpu.Interop.Tests;

/// <summary>
/// TorchSharp tensors filled in place. TorchSharp's native bridge needs GLIBCXX_3.4.32 and a libtorch: where
/// either is missing these tests are skipped with the exact reason (Debian 12 has GLIBCXX_3.4.30); on the GPU
/// machine libtorch comes from PyTorch's torch/lib (CRYPTOTENSORS_TORCH_LIB, or found through python3).
/// </summary>
[NonParallelizable]
public class TorchLoaderTests
{
    public static IEnumerable<string> Devices() => ["cpu", "cuda"];

    private static Device Require(string kind) => TorchTestDevice.Require(kind);

    [Test]
    public void TheDtypeTableCoversWhatTorchSharpCanHoldAndRefusesTheRest()
    {
        // Pure mapping: runs everywhere (no native code involved).
        Assert.That(TorchLoader.ScalarTypeOf(Dtype.BF16), Is.EqualTo(ScalarType.BFloat16));
        Assert.That(TorchLoader.ScalarTypeOf(Dtype.F16), Is.EqualTo(ScalarType.Float16));
        Assert.That(TorchLoader.ScalarTypeOf(Dtype.BOOL), Is.EqualTo(ScalarType.Bool));
        Assert.That(TorchLoader.ScalarTypeOf(Dtype.U8), Is.EqualTo(ScalarType.Byte));
        Assert.That(TorchLoader.ScalarTypeOf(Dtype.C64), Is.EqualTo(ScalarType.ComplexFloat32));
        var ex = Assert.Throws<NotSupportedException>(() => TorchLoader.ScalarTypeOf(Dtype.F8_E4M3, "w"));
        Assert.That(ex!.Message, Does.Contain("'w'").And.Contain("F8_E4M3"));
    }

    [Test]
    public void WhereTorchSharpCannotRunTheReasonNamesTheMissingLibrary()
    {
        if (TorchRuntime.Initialize(out var error)) Assert.Ignore("TorchSharp runs on this machine: nothing to explain");
        Assert.That(error, Is.Not.Null.And.Not.Empty);
        if (TorchRuntime.MissingGlibcxx() is { } g) Assert.That(error, Does.Contain(g));
        // One line of our own, never TorchSharp's native loader trace.
        Assert.That(error, Does.Not.Contain("\n").And.Not.Contain("LoadNativeBackend"));
        Assert.Throws<InvalidOperationException>(() => TorchRuntime.EnsureInitialized());
    }

    [Test]
    public void AFailedInitializationCopiesNoLibtorchIntoTheOutputFolder()
    {
        if (TorchRuntime.Initialize(out _)) Assert.Ignore("TorchSharp runs on this machine: no failed initialization to check");
        // TorchSharp's static initializer, when it cannot load its native backend, consolidates libtorch from the NuGet
        // cache into cpu/ (or cuda-*/) beside TorchSharp.dll; TorchRuntime must fail before anything touches it.
        var torchSharpDir = Path.GetDirectoryName(typeof(torch).Assembly.Location)!;
        Assert.That(Directory.GetDirectories(torchSharpDir, "cpu").Concat(Directory.GetDirectories(torchSharpDir, "cuda-*")), Is.Empty);
        Assert.That(Directory.GetFiles(AppContext.BaseDirectory, "libtorch*.so*", SearchOption.AllDirectories), Is.Empty);
    }

    [Test]
    public void AFolderWithoutLibtorchIsNamedWithTheMissingLibraries()
    {
        using var tmp = new TempDir();
        var error = TorchRuntime.LoadPrerequisites(tmp.Path, out var cuda);
        Assert.That(error, Does.Contain($"no libtorch in {tmp.Path}: libc10.so, libtorch_cpu.so, libtorch.so missing"));
        Assert.That(error, Does.Not.Contain("\n"));
        Assert.That(cuda, Is.False);
    }

    [Test]
    public void ALibtorchThatCannotBeLoadedIsNamedWithTheLoadersOwnError()
    {
        using var tmp = new TempDir();
        foreach (var lib in new[] { "libc10.so", "libtorch_cpu.so", "libtorch.so" })
            File.WriteAllBytes(tmp.File(lib), new byte[4096]);
        var error = TorchRuntime.LoadPrerequisites(tmp.Path, out _);
        // The dynamic loader's text for a file that is no ELF object, after the path of the first library tried.
        Assert.That(error, Does.Contain($"{tmp.File("libc10.so")} could not be loaded: ").And.Contain("invalid ELF header"));
        Assert.That(error, Does.Not.Contain("\n"));
    }

    [Test]
    public void AnEncryptedModelLoadsIntoTorchTensorsInPlace([ValueSource(nameof(Devices))] string kind)
    {
        var device = Require(kind);
        using var tmp = new TempDir();
        using var master = MasterKey.Generate(AeadAlgorithm.Aes256Gcm);
        using var signer = SigningKey.Generate();
        var tensors = DemoWorkloads.Tiny().ToList();
        tensors.Add(TestModels.Tensor("bf16", Dtype.BF16, [33, 65], 9));
        CryptoTensorsWriter.Write(tmp.File("m"), tensors, new WriterOptions { MasterKey = master, SigningKey = signer, ChunkSize = 4096 });
        var loaded = TorchLoader.LoadToTorch(tmp.File("m"), device, TestModels.Keys(master, signer));
        try
        {
            var want = TestModels.Plain(tensors);
            foreach (var t in tensors)
            {
                var x = loaded[t.Name];
                Assert.That(x.device_type, Is.EqualTo(device.type));
                Assert.That(x.shape, Is.EqualTo(t.Shape.Select(d => (long)d).ToArray()), t.Name);
                Assert.That(x.dtype, Is.EqualTo(TorchLoader.ScalarTypeOf(t.Dtype)));
                using var host = x.cpu();
                Assert.That(SHA256.HashData(host.bytes.ToArray()), Is.EqualTo(SHA256.HashData(want[t.Name])), t.Name);
            }
        }
        finally
        {
            foreach (var x in loaded.Values) x.Dispose();
        }
    }

    [Test]
    public void AStateDictLoadsIntoAModuleInPlaceAndMismatchesAreRefusedBeforeAnyWrite([ValueSource(nameof(Devices))] string kind)
    {
        var device = Require(kind);
        using var tmp = new TempDir();
        using var master = MasterKey.Generate(AeadAlgorithm.Aes256Gcm);
        using var signer = SigningKey.Generate();
        using var module = nn.Linear(64, 32).to(device);
        var tensors = new List<TensorSource>
        {
            TestModels.Tensor("weight", Dtype.F32, [32, 64], 1),
            TestModels.Tensor("bias", Dtype.F32, [32], 2),
        };
        CryptoTensorsWriter.Write(tmp.File("m"), tensors, new WriterOptions { MasterKey = master, SigningKey = signer, ChunkSize = 1024 });
        var (missing, unexpected) = TorchLoader.LoadStateDict(module, tmp.File("m"), TestModels.Keys(master, signer));
        Assert.That(missing.Concat(unexpected), Is.Empty);
        var want = TestModels.Plain(tensors);
        using (var w = module.state_dict()["weight"].cpu())
            Assert.That(w.bytes.ToArray(), Is.EqualTo(want["weight"]));

        CryptoTensorsWriter.Write(tmp.File("bad"), [TestModels.Tensor("weight", Dtype.F32, [64, 32], 3), TestModels.Tensor("bias", Dtype.F32, [32], 4)],
            new WriterOptions { MasterKey = master, SigningKey = signer });
        Assert.Throws<ArgumentException>(() => TorchLoader.LoadStateDict(module, tmp.File("bad"), TestModels.Keys(master, signer)));
        using (var w = module.state_dict()["weight"].cpu())
            Assert.That(w.bytes.ToArray(), Is.EqualTo(want["weight"]), "a refused state dict changes nothing");
    }
}
