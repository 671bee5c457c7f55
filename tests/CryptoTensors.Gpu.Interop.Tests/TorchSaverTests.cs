using System.Security.Cryptography;
using CryptoTensors.Gpu.Crypto;
using CryptoTensors.Gpu.Format;
using CryptoTensors.Gpu.Keys;
using CryptoTensors.Gpu.Reading;
using CryptoTensors.Gpu.Tests;
using CryptoTensors.Gpu.TorchSharp;
using CryptoTensors.Gpu.Writing;
using TorchSharp;
using static TorchSharp.torch;

namespace CryptoTensors.Gpu.Interop.Tests;

/// <summary>
/// TorchSaver: TorchSharp tensors written straight from their memory, checked by the independent oracle (readable by the
/// reference) and loaded back bit-identical. Like TorchLoaderTests these need TorchSharp's native bridge (GLIBCXX_3.4.32)
/// and a libtorch: elsewhere they are skipped with the reason; scripts/torch-run runs them here. The oracle step is each
/// test's last: where python3-cryptography is missing it is skipped with that reason, after the other checks passed.
/// </summary>
[NonParallelizable]
public class TorchSaverTests
{
    /// <summary>cpu: read through the data pointer; cpu-staged: the CUDA path (pieces through .cpu() of narrows), 20-byte pieces; cuda: a GPU.</summary>
    public static IEnumerable<string> Modes() => ["cpu", "cpu-staged", "cuda"];

    public static IEnumerable<string> Devices() => ["cpu", "cuda"];

    public static IEnumerable<string> Formats() => ["v1", "v2", "partial", "plain"];

    private static readonly Dictionary<string, string> Meta = new(StringComparer.Ordinal) { ["format"] = "pt", ["描述"] = "saved from TorchSharp ✓" };

    private static Device Require(string mode) => TorchTestDevice.Require(mode);

    [Test]
    public void TheDtypeTableIsTheInverseOfTheLoadersAndRefusesWhatSafetensorsLacks()
    {
        // Pure mapping: runs everywhere (no native code involved).
        foreach (var d in Dtypes.All)
        {
            ScalarType s;
            try { s = TorchLoader.ScalarTypeOf(d); }
            catch (NotSupportedException) { continue; }
            Assert.That(TorchSaver.DtypeOf(s), Is.EqualTo(d), d.Name());
        }
        foreach (var s in new[] { ScalarType.ComplexFloat64, ScalarType.QInt8, ScalarType.QUInt8, ScalarType.QInt32 })
        {
            var ex = Assert.Throws<NotSupportedException>(() => TorchSaver.DtypeOf(s, "w.x"));
            Assert.That(ex!.Message, Does.Contain("'w.x'").And.Contain(s.ToString()));
        }
    }

    [Test]
    public void EveryDtypeSavesStraightFromTorchAndLoadsBackBitIdentical([ValueSource(nameof(Modes))] string mode, [ValueSource(nameof(Formats))] string format)
    {
        var device = Require(mode);
        using var scope = NewDisposeScope();
        using var tmp = new TempDir();
        using var master = MasterKey.Generate(AeadAlgorithm.Aes256Gcm, "enc-1");
        using var signer = SigningKey.Generate("sign-1");
        var tensors = EveryDtype(device);
        var expected = tensors.ToDictionary(kv => kv.Key, kv => Values(kv.Value), StringComparer.Ordinal);
        string[] partial = ["f32", "bf16", "i64", "transposed", "strided", "scalar", "c64.conj", "empty"];
        var options = format switch
        {
            "v1" => new WriterOptions { MasterKey = master, SigningKey = signer, FormatVersion = 1, Metadata = Meta },
            // 100-byte chunks: element boundaries of 8-byte dtypes fall inside chunks; every tensor spans many chunks.
            "v2" => new WriterOptions { MasterKey = master, SigningKey = signer, ChunkSize = 100, Metadata = Meta },
            "partial" => new WriterOptions { MasterKey = master, SigningKey = signer, ChunkSize = 64, EncryptOnly = partial, Metadata = Meta },
            _ => new WriterOptions { Metadata = Meta },
        };
        var path = tmp.File("model.safetensors");
        var reports = new List<TensorProgress>();
        using (Staged(mode == "cpu-staged"))
            TorchSaver.Save(tensors, path, options, new SyncProgress(reports.Add));
        Assert.That(reports[^1], Is.EqualTo(new TensorProgress(expected.Values.Sum(b => (long)b.Length), expected.Values.Sum(b => (long)b.Length), tensors.Count, tensors.Count)));
        Assert.That(Directory.GetFileSystemEntries(tmp.Path), Is.EqualTo(new[] { path }), "no temporary file is left");

        var keys = format == "plain" ? new ReaderOptions() : TestModels.Keys(master, signer);
        using (var reader = CryptoTensorsReader.Open(path, keys))
        {
            Assert.That(reader.Metadata, Is.SupersetOf(Meta));
            foreach (var t in reader.Tensors)
            {
                var shouldEncrypt = format switch { "plain" => false, "partial" => partial.Contains(t.Name), _ => true };
                Assert.That(t.IsEncrypted, Is.EqualTo(shouldEncrypt), t.Name);
                Assert.That(t.Shape.Select(d => (long)d), Is.EqualTo(tensors[t.Name].shape), t.Name);
                Assert.That(t.Dtype, Is.EqualTo(TorchSaver.DtypeOf(tensors[t.Name].dtype)), t.Name);
            }
        }
        var loaded = TorchLoader.LoadToTorch(path, CPU, keys);
        Assert.That(loaded.Keys, Is.EquivalentTo(tensors.Keys));
        foreach (var (name, x) in loaded)
        {
            Assert.That(x.dtype, Is.EqualTo(tensors[name].dtype), name);
            Assert.That(x.shape, Is.EqualTo(tensors[name].shape), name);
            Assert.That(Values(x), Is.EqualTo(expected[name]), name);
            using var original = tensors[name].cpu();
            Assert.That(TorchEqual(x, original), Is.True, name + ": torch.equal");
        }

        // Last: the reference-compatible reader agrees, hash for hash.
        var oracle = format == "plain" ? Oracle.Verify(path, tmp.Path) : Oracle.Verify(path, tmp.Path, master, signer);
        Assert.That(oracle, Is.EquivalentTo(expected.ToDictionary(kv => kv.Key, kv => Sha(kv.Value))));
    }

    [Test]
    public void AModulesStateDictSavesAndLoadsIntoAFreshModuleWithEqualOutputs([ValueSource(nameof(Devices))] string kind)
    {
        var device = Require(kind);
        using var scope = NewDisposeScope();
        using var tmp = new TempDir();
        using var master = MasterKey.Generate(AeadAlgorithm.ChaCha20Poly1305, "enc-1");
        using var signer = SigningKey.Generate("sign-1");
        using var net = Net(1, device);
        using (no_grad())
        {
            net.train();
            net.forward(randn(64, 8, device: device) * 3 + 1);   // running statistics (buffers) away from their initial values
        }
        net.eval();
        var state = net.state_dict();
        Assert.That(state.Keys, Does.Contain("bn.running_mean").And.Contain("bn.num_batches_tracked"), "parameters and buffers");
        var expected = state.ToDictionary(kv => kv.Key, kv => Values(kv.Value), StringComparer.Ordinal);
        var path = tmp.File("net.cryptotensors");
        TorchSaver.SaveStateDict(net, path, new WriterOptions { MasterKey = master, SigningKey = signer, ChunkSize = 48, Metadata = Meta });

        using var fresh = Net(2, device);
        fresh.eval();
        var x = randn(5, 8, device: device);
        using (no_grad())
            Assert.That(TorchEqual(fresh.forward(x), net.forward(x)), Is.False, "the fresh module differs before loading");
        var (missing, unexpected) = TorchLoader.LoadStateDict(fresh, path, TestModels.Keys(master, signer));
        Assert.That(missing.Concat(unexpected), Is.Empty);
        foreach (var (name, t) in fresh.state_dict()) Assert.That(Values(t), Is.EqualTo(expected[name]), name);
        using (no_grad())
            Assert.That(TorchEqual(fresh.forward(x), net.forward(x)), Is.True, "outputs equal after loading");

        var oracle = Oracle.Verify(path, tmp.Path, master, signer);
        Assert.That(oracle, Is.EquivalentTo(expected.ToDictionary(kv => kv.Key, kv => Sha(kv.Value))));
    }

    [Test]
    public void ATamperedSavedFileIsRefusedWithTheTypedError([Values(1, 2)] int version)
    {
        Require("cpu");
        using var scope = NewDisposeScope();
        using var tmp = new TempDir();
        using var master = MasterKey.Generate(AeadAlgorithm.Aes256Gcm, "enc-1");
        using var signer = SigningKey.Generate("sign-1");
        var tensors = new Dictionary<string, Tensor>(StringComparer.Ordinal) { ["weight"] = randn(16, 16), ["bias"] = randn(16) };
        var path = tmp.File("m");
        TorchSaver.Save(tensors, path, new WriterOptions { MasterKey = master, SigningKey = signer, FormatVersion = version, ChunkSize = 256 });
        foreach (var t in TorchLoader.LoadToTorch(path, CPU, TestModels.Keys(master, signer)).Values) t.Dispose();

        var bytes = File.ReadAllBytes(path);
        bytes[^5] ^= 0x01;   // inside the last tensor's ciphertext (file order: dtype, then name)
        File.WriteAllBytes(path, bytes);
        Dictionary<string, Tensor>? result = null;
        var ex = Assert.Throws<DecryptionException>(() => result = TorchLoader.LoadToTorch(path, CPU, TestModels.Keys(master, signer)));
        Assert.That(result, Is.Null, "nothing is returned");
        Assert.That(ex!.Tensor, Is.EqualTo("weight"));
        using var net = nn.Linear(16, 16);
        Assert.Throws<DecryptionException>(() => TorchLoader.LoadStateDict(net, path, TestModels.Keys(master, signer)));
    }

    [Test]
    public void AnUnsupportedTensorIsRefusedBeforeAnythingIsWritten()
    {
        Require("cpu");
        using var scope = NewDisposeScope();
        using var tmp = new TempDir();
        using var master = MasterKey.Generate(AeadAlgorithm.Aes256Gcm);
        using var signer = SigningKey.Generate();
        var options = new WriterOptions { MasterKey = master, SigningKey = signer };
        var path = tmp.File("m.safetensors");

        // ComplexFloat64: TorchSharp holds it, safetensors has no complex128.
        var c128 = new Dictionary<string, Tensor>(StringComparer.Ordinal) { ["ok"] = randn(4), ["z"] = randn([3], ScalarType.ComplexFloat64) };
        var ex = Assert.Throws<NotSupportedException>(() => TorchSaver.Save(c128, path, options));
        Assert.That(ex!.Message, Does.Contain("'z'").And.Contain("ComplexFloat64"));
        Assert.That(Directory.GetFileSystemEntries(tmp.Path), Is.Empty, "no output file, no temporary file");

        // The same with a target already there: it is left as it was.
        File.WriteAllBytes(path, [1, 2, 3]);
        Assert.Throws<NotSupportedException>(() => TorchSaver.Save(c128, path, options));
        var gone = randn(3);
        gone.Dispose();
        var ex2 = Assert.Throws<ArgumentException>(() => TorchSaver.Save(new Dictionary<string, Tensor> { ["ok"] = randn(4), ["gone"] = gone }, path, options));
        Assert.That(ex2!.Message, Does.Contain("'gone'"));
        Assert.Catch<CryptoTensorsException>(() => TorchSaver.Save(new Dictionary<string, Tensor> { ["__metadata__"] = randn(4) }, path, options));
        Assert.Catch<CryptoTensorsException>(() => TorchSaver.Save(new Dictionary<string, Tensor> { ["ok"] = randn(4) }, path, new WriterOptions { MasterKey = master }),
            "a master key without a signing key");
        Assert.That(File.ReadAllBytes(path), Is.EqualTo(new byte[] { 1, 2, 3 }));
        Assert.That(Directory.GetFileSystemEntries(tmp.Path), Is.EqualTo(new[] { path }));
    }

    [Test]
    public void TheDataStaysAliveWhenTheCallerDisposesItsTensorsDuringTheSave()
    {
        Require("cpu");
        using var scope = NewDisposeScope();
        using var tmp = new TempDir();
        using var master = MasterKey.Generate(AeadAlgorithm.Aes256Gcm);
        using var signer = SigningKey.Generate();
        // 3 × 12 MiB: the writer's first 16 MiB window ends before the last tensor is read.
        var tensors = new Dictionary<string, Tensor>(StringComparer.Ordinal) { ["a"] = randn(3L << 20), ["b"] = randn(3L << 20), ["c"] = randn(1024, 3072).t() };
        var expected = tensors.ToDictionary(kv => kv.Key, kv => Sha(Values(kv.Value)), StringComparer.Ordinal);
        var firstReport = (TensorProgress?)null;
        var progress = new SyncProgress(p =>
        {
            if (firstReport is not null) return;
            firstReport = p;
            foreach (var t in tensors.Values) t.Dispose();
            GC.Collect();
            GC.WaitForPendingFinalizers();
            // Memory freed by the caller's disposal would be reused by new allocations of the same size.
            foreach (var t in Enumerable.Range(0, 3).Select(_ => full(3L << 20, float.NaN))) t.Dispose();
        });
        var path = tmp.File("m");
        TorchSaver.Save(tensors, path, new WriterOptions { MasterKey = master, SigningKey = signer, ChunkSize = 256 << 10 }, progress);
        Assert.That(firstReport!.Value.TensorsDone, Is.LessThan(3), "the caller disposed its tensors before the save was over");
        var loaded = TorchLoader.LoadToTorch(path, CPU, TestModels.Keys(master, signer));
        Assert.That(loaded.ToDictionary(kv => kv.Key, kv => Sha(Values(kv.Value))), Is.EquivalentTo(expected));
    }

    [Test]
    public void ACancelledSaveLeavesNoFile()
    {
        Require("cpu");
        using var scope = NewDisposeScope();
        using var tmp = new TempDir();
        using var cts = new CancellationTokenSource();
        var tensors = new Dictionary<string, Tensor>(StringComparer.Ordinal) { ["a"] = randn(3L << 20), ["b"] = randn(3L << 20), ["c"] = randn(3L << 20) };
        var path = tmp.File("m");
        Assert.Catch<OperationCanceledException>(() => TorchSaver.Save(tensors, path, new WriterOptions(), new SyncProgress(_ => cts.Cancel()), cts.Token));
        Assert.That(Directory.GetFileSystemEntries(tmp.Path), Is.Empty);
    }

    /// <summary>Every dtype TorchSharp can save, plus non-contiguous views (transposed, strided, lazily conjugated), a scalar and an empty tensor.</summary>
    private static Dictionary<string, Tensor> EveryDtype(Device device)
    {
        manual_seed(15);
        long[] s = [37, 11];
        var t = new Dictionary<string, Tensor>(StringComparer.Ordinal)
        {
            ["bool"] = rand(s).gt(0.5),
            ["u8"] = randint(0, 256, s, ScalarType.Byte),
            ["i8"] = randint(-128, 128, s, ScalarType.Int8),
            ["i16"] = randint(short.MinValue, short.MaxValue + 1L, s, ScalarType.Int16),
            ["i32"] = randint(int.MinValue, int.MaxValue + 1L, s, ScalarType.Int32),
            ["i64"] = randint(-(1L << 62), 1L << 62, s, ScalarType.Int64),
            ["f16"] = randn(s).to(ScalarType.Float16),
            ["bf16"] = randn(s).to(ScalarType.BFloat16),
            ["f32"] = randn(s),
            ["f64"] = randn(s, ScalarType.Float64),
            ["c64"] = randn(s, ScalarType.ComplexFloat32),
            ["scalar"] = tensor(3.25),
            ["empty"] = empty([0, 4]),
        };
        foreach (var k in t.Keys.ToList()) t[k] = t[k].to(device);
        t["transposed"] = randn([11, 37], device: device).t();
        t["strided"] = randint(-(1L << 40), 1L << 40, [40, 30], ScalarType.Int64, device).slice(0, 0, 40, 3).slice(1, 1, 30, 2);
        t["c64.conj"] = randn([5, 7], ScalarType.ComplexFloat32, device).conj();
        Assert.That(t["transposed"].is_contiguous() || t["strided"].is_contiguous(), Is.False, "the views are not contiguous");
        return t;
    }

    private static nn.Module<Tensor, Tensor> Net(int seed, Device device)
    {
        manual_seed(seed);
        var net = nn.Sequential(("fc1", nn.Linear(8, 16)), ("bn", nn.BatchNorm1d(16)), ("act", nn.ReLU()), ("fc2", nn.Linear(16, 4)));
        net.to(device);
        return net;
    }

    /// <summary>A tensor's logical values as contiguous little-endian bytes (what the file must hold).</summary>
    private static byte[] Values(Tensor t)
    {
        using var scope = NewDisposeScope();
        var c = t.detach().resolve_conj().resolve_neg().cpu().contiguous();
        return c.numel() == 0 ? [] : c.bytes.ToArray();
    }

    /// <summary>torch.equal: same shape and every element equal (TorchSharp's <c>equal</c> is elementwise).</summary>
    private static bool TorchEqual(Tensor a, Tensor b)
    {
        using var scope = NewDisposeScope();
        return a.shape.SequenceEqual(b.shape) && a.eq(b).all().item<bool>();
    }

    private static string Sha(byte[] b) => Convert.ToHexStringLower(SHA256.HashData(b));

    private static IDisposable Staged(bool on)
    {
        if (!on) return new Restore(() => { });
        TorchSaver.ForceStagedCopy = true;
        TorchSaver.StagedPieceBytes = 20;
        return new Restore(() =>
        {
            TorchSaver.ForceStagedCopy = false;
            TorchSaver.StagedPieceBytes = TorchSaver.DevicePieceBytes;
        });
    }

    private sealed class Restore(Action undo) : IDisposable
    {
        public void Dispose() => undo();
    }

    /// <summary>Reports on the writer's thread, at once (Progress&lt;T&gt; would post to the thread pool).</summary>
    private sealed class SyncProgress(Action<TensorProgress> report) : IProgress<TensorProgress>
    {
        public void Report(TensorProgress value) => report(value);
    }
}
