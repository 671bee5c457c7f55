using CryptoTensors.Gpu.Crypto;
using CryptoTensors.Gpu.Format;
using CryptoTensors.Gpu.Keys;
using CryptoTensors.Gpu.Reading;
using CryptoTensors.Gpu.Writing;

namespace CryptoTensors.Gpu.Tests.Writing;

public class AtomicityAndRewrapTests
{
    private sealed class FailingSource(long failAt) : TensorSource("f", Dtype.U8, [1000])
    {
        public override void Read(long offset, Span<byte> destination)
        {
            if (offset + destination.Length > failAt) throw new IOException("source failed");
            destination.Fill(7);
        }
    }

    [Test]
    public void AFailingWriteLeavesNoOutputAndKeepsTheExistingTarget()
    {
        using var tmp = new TempDir();
        var target = tmp.File("out.ct");
        File.WriteAllText(target, "previous");
        using var master = MasterKey.Generate();
        using var signer = SigningKey.Generate();
        Assert.Throws<IOException>(() => CryptoTensorsWriter.Write(target, [TestModels.Tensor("a", Dtype.U8, [5]), new FailingSource(500)],
            new WriterOptions { MasterKey = master, SigningKey = signer, ChunkSize = 100 }));
        Assert.That(File.ReadAllText(target), Is.EqualTo("previous"));
        Assert.That(Directory.GetFiles(tmp.Path), Is.EquivalentTo(new[] { target }), "no temporary file left");
    }

    [Test]
    public void CancellationLeavesNoOutput()
    {
        using var tmp = new TempDir();
        using var cts = new CancellationTokenSource();
        cts.Cancel();
        Assert.Throws<OperationCanceledException>(() => CryptoTensorsWriter.Write(tmp.File("o"), TestModels.EveryDtype(), new WriterOptions(), null, cts.Token));
        Assert.That(Directory.GetFiles(tmp.Path), Is.Empty);
    }

    [Test]
    public void ProgressIsReportedUpToTheLastTensor()
    {
        using var tmp = new TempDir();
        var reports = new List<TensorProgress>();
        var tensors = TestModels.EveryDtype();
        CryptoTensorsWriter.Write(tmp.File("o"), tensors, new WriterOptions(), new SyncProgress(reports));
        Assert.That(reports, Is.Not.Empty);
        Assert.That(reports.Select(r => r.BytesDone), Is.Ordered);
        Assert.That(reports[^1], Is.EqualTo(new TensorProgress(tensors.Sum(t => t.ByteLength), tensors.Sum(t => t.ByteLength), tensors.Count, tensors.Count)));
    }

    private sealed class SyncProgress(List<TensorProgress> list) : IProgress<TensorProgress>
    {
        public void Report(TensorProgress value) => list.Add(value);
    }

    [Test]
    public void InvalidWriterInputsAreRefusedBeforeAnythingIsWritten()
    {
        using var tmp = new TempDir();
        using var master = MasterKey.Generate();
        using var signer = SigningKey.Generate();
        var a = TestModels.Tensor("a", Dtype.U8, [5]);
        Assert.Throws<MalformedFileException>(() => CryptoTensorsWriter.Write(tmp.File("o"), [a, TestModels.Tensor("a", Dtype.U8, [2])], new WriterOptions()));
        Assert.Throws<KeyException>(() => CryptoTensorsWriter.Write(tmp.File("o"), [a], new WriterOptions { MasterKey = master }));
        Assert.Throws<KeyException>(() => CryptoTensorsWriter.Write(tmp.File("o"), [a], new WriterOptions { SigningKey = signer }));
        Assert.Throws<CryptoHeaderException>(() => CryptoTensorsWriter.Write(tmp.File("o"), [a], new WriterOptions { MasterKey = master, SigningKey = signer, ChunkSize = 0 }));
        Assert.Throws<CryptoHeaderException>(() => CryptoTensorsWriter.Write(tmp.File("o"), [a], new WriterOptions { MasterKey = master, SigningKey = signer, FormatVersion = 3 }));
        Assert.Throws<MalformedFileException>(() => TensorSource.FromMemory("x", Dtype.F32, [3], new byte[11]));
        Assert.Throws<MalformedFileException>(() => TensorSource.FromMemory("x", Dtype.F4, [3], new byte[2]));
        Assert.That(Directory.GetFiles(tmp.Path), Is.Empty);
    }

    [TestCase(1)]
    [TestCase(2)]
    public void RewrapRotatesKeysKeepsDataAndRefusesTheOldKeys(int version)
    {
        using var tmp = new TempDir();
        using var oldMaster = MasterKey.Generate(kid: "old");
        using var oldSigner = SigningKey.Generate("old-s");
        using var newMaster = MasterKey.Generate(kid: "new");
        using var newSigner = SigningKey.Generate("new-s");
        var tensors = TestModels.EveryDtype();
        var input = tmp.File("in.ct");
        CryptoTensorsWriter.Write(input, tensors, new WriterOptions
        {
            MasterKey = oldMaster, SigningKey = oldSigner, FormatVersion = version, ChunkSize = 32, EncryptOnly = ["t.f32", "t.u8", "empty"],
            Metadata = new Dictionary<string, string> { ["user"] = "kept" },
        });
        var output = tmp.File("out.ct");
        Rewrapper.Rewrap(input, output, TestModels.Keys(oldMaster, oldSigner), newMaster, newSigner);

        using (var r = CryptoTensorsReader.Open(output, TestModels.Keys(newMaster, newSigner)))
        {
            Assert.That(TestModels.ReadAll(r), Is.EquivalentTo(TestModels.Plain(tensors)));
            Assert.That(r.Metadata["user"], Is.EqualTo("kept"));
            Assert.That(r.CryptoKeys!.Enc.Kid, Is.EqualTo("new"));
            Assert.That(r.CryptoKeys.Sign.Kid, Is.EqualTo("new-s"));
            Assert.That(r.CryptoKeys.Version, Is.EqualTo(version == 1 ? "1" : "2"));
            Assert.That(r.CryptoKeys.ChunkSize, Is.EqualTo(version == 1 ? null : 32));
            using var old = CryptoTensorsReader.Open(input, TestModels.Keys(oldMaster, oldSigner));
            Assert.That(r.Header.DataLength, Is.EqualTo(old.Header.DataLength));
            var a = File.ReadAllBytes(input).AsSpan((int)old.Header.DataStart).ToArray();
            var b = File.ReadAllBytes(output).AsSpan((int)r.Header.DataStart).ToArray();
            Assert.That(b, Is.EqualTo(a), "the data section is copied unchanged");
        }
        Assert.Throws<SignatureException>(() => CryptoTensorsReader.Open(output, TestModels.Keys(newMaster, oldSigner)).Dispose());
        Assert.Throws<KeyUnwrapException>(() => CryptoTensorsReader.Open(output, TestModels.Keys(oldMaster, newSigner)).Dispose());
    }

    [Test]
    public void RewrapInPlaceAndPolicyReplacement()
    {
        using var tmp = new TempDir();
        using var k1 = MasterKey.Generate();
        using var s1 = SigningKey.Generate();
        using var k2 = MasterKey.Generate();
        using var s2 = SigningKey.Generate();
        var path = tmp.File("m.ct");
        CryptoTensorsWriter.Write(path, TestModels.EveryDtype(), new WriterOptions { MasterKey = k1, SigningKey = s1 });
        var policy = new AccessPolicy("package model\ndefault allow := true", AccessPolicy.DefaultText);
        Rewrapper.Rewrap(path, path, TestModels.Keys(k1, s1), k2, s2, policy);
        using var r = CryptoTensorsReader.Open(path, TestModels.Keys(k2, s2));
        Assert.That(r.Policy, Is.EqualTo(policy));
        Assert.That(Directory.GetFiles(tmp.Path), Has.Length.EqualTo(1));
    }

    [Test]
    public void RewrapRefusesAnAlgorithmChangeAPlainInputAndBadOldKeys()
    {
        using var tmp = new TempDir();
        using var aes = MasterKey.Generate(AeadAlgorithm.Aes256Gcm);
        using var spelled = MasterKey.FromBytes(new byte[32], AeadAlgorithm.Aes256Gcm, alg: "AES-256-GCM");
        using var chacha = MasterKey.Generate(AeadAlgorithm.ChaCha20Poly1305);
        using var s = SigningKey.Generate();
        var path = tmp.File("m.ct");
        CryptoTensorsWriter.Write(path, TestModels.EveryDtype(), new WriterOptions { MasterKey = aes, SigningKey = s });
        var before = File.ReadAllBytes(path);
        var ex = Assert.Throws<KeyException>(() => Rewrapper.Rewrap(path, tmp.File("o"), TestModels.Keys(aes, s), chacha, s));
        Assert.That(ex!.Code, Is.EqualTo(ErrorCode.AlgorithmMismatch));
        ex = Assert.Throws<KeyException>(() => Rewrapper.Rewrap(path, tmp.File("o"), TestModels.Keys(aes, s), spelled, s));
        Assert.That(ex!.Code, Is.EqualTo(ErrorCode.AlgorithmMismatch), "the reference compares alg strings exactly");
        using var wrong = MasterKey.Generate();
        Assert.Throws<KeyUnwrapException>(() => Rewrapper.Rewrap(path, tmp.File("o"), TestModels.Keys(wrong, s), aes, s));
        var plain = tmp.File("p.st");
        CryptoTensorsWriter.Write(plain, TestModels.EveryDtype(), new WriterOptions());
        Assert.Throws<CryptoHeaderException>(() => Rewrapper.Rewrap(plain, tmp.File("o"), new ReaderOptions { Keys = new() }, aes, s));
        Assert.That(File.Exists(tmp.File("o")), Is.False);
        Assert.That(File.ReadAllBytes(path), Is.EqualTo(before), "the input is never touched");
    }
}
