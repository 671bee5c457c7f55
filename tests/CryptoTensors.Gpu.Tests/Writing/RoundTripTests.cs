using CryptoTensors.Gpu.Crypto;
using CryptoTensors.Gpu.Format;
using CryptoTensors.Gpu.Keys;
using CryptoTensors.Gpu.Reading;
using CryptoTensors.Gpu.Writing;

namespace CryptoTensors.Gpu.Tests.Writing;

public class RoundTripTests
{
    private static IEnumerable<TestCaseData> AlgorithmsAndVersions()
    {
        foreach (var alg in Enum.GetValues<AeadAlgorithm>())
        {
            foreach (var v in new[] { 1, 2 }) yield return new TestCaseData(alg, v).SetName($"EveryDtype_{alg}_v{v}");
        }
    }

    [TestCaseSource(nameof(AlgorithmsAndVersions))]
    public void EveryDtypeRoundTrips(AeadAlgorithm alg, int version)
    {
        using var tmp = new TempDir();
        using var master = MasterKey.Generate(alg, "k1");
        using var signer = SigningKey.Generate("s1");
        var tensors = TestModels.EveryDtype();
        var path = tmp.File("m.ct");
        CryptoTensorsWriter.Write(path, tensors, new WriterOptions { MasterKey = master, SigningKey = signer, FormatVersion = version, ChunkSize = 16 });
        using var r = CryptoTensorsReader.Open(path, TestModels.Keys(master, signer));
        Assert.That(r.IsEncrypted, Is.True);
        Assert.That(r.CryptoKeys!.Version, Is.EqualTo(version.ToString(System.Globalization.CultureInfo.InvariantCulture)));
        Assert.That(r.CryptoKeys.ChunkSize, Is.EqualTo(version == 2 ? 16 : null));
        Assert.That(r.CryptoKeys.Enc.Alg, Is.EqualTo(alg.CanonicalName()));
        Assert.That(TestModels.ReadAll(r), Is.EquivalentTo(TestModels.Plain(tensors)));
        Assert.That(r.Tensors.All(t => t.IsEncrypted), Is.True);
        foreach (var t in tensors)
        {
            var d = r.GetTensor(t.Name);
            Assert.That((d.Dtype, d.Shape), Is.EqualTo((t.Dtype, t.Shape)));
        }
    }

    [Test]
    public void WriterOrderIsDtypeDescendingThenName()
    {
        using var tmp = new TempDir();
        var tensors = TestModels.EveryDtype();
        CryptoTensorsWriter.Write(tmp.File("p.st"), tensors, new WriterOptions());
        using var r = CryptoTensorsReader.Open(tmp.File("p.st"), new ReaderOptions { Keys = new() });
        var order = r.Tensors.Where(t => t.ByteLength > 0).Select(t => t.Dtype).ToList();
        Assert.That(order, Is.Ordered.Descending);
        Assert.That(r.IsEncrypted, Is.False);
        Assert.That(r.Header.Metadata, Is.Null, "no metadata given: no __metadata__ written");
    }

    [TestCase(0)]
    [TestCase(1)]
    [TestCase(63)]
    [TestCase(64)]
    [TestCase(65)]
    [TestCase(64 * 7 + 3)]
    [TestCase(64 * 40)]
    public void ChunkBoundariesRoundTripAndTagsHaveOnePerChunk(int length)
    {
        using var tmp = new TempDir();
        using var master = MasterKey.Generate();
        using var signer = SigningKey.Generate();
        var t = TensorSource.FromMemory("x", Dtype.U8, [(ulong)length], TestModels.Bytes(length, length));
        CryptoTensorsWriter.Write(tmp.File("m"), [t], new WriterOptions { MasterKey = master, SigningKey = signer, ChunkSize = 64 });
        using var r = CryptoTensorsReader.Open(tmp.File("m"), TestModels.Keys(master, signer));
        Assert.That(r.ReadTensor("x"), Is.EqualTo(TestModels.Plain([t])["x"]));
        var chunks = Math.Max(1, (length + 63) / 64);
        Assert.That(r.Entry("x")!.Tags, Has.Length.EqualTo(16 * chunks));
        Assert.That(r.Entry("x")!.BaseIv, Has.Length.EqualTo(12));
    }

    [Test]
    public void EmptyTensorsAreWrittenAsTheReferenceDoes()
    {
        using var tmp = new TempDir();
        using var master = MasterKey.Generate();
        using var signer = SigningKey.Generate();
        var t = TensorSource.FromMemory("e", Dtype.F32, [0], ReadOnlyMemory<byte>.Empty);
        CryptoTensorsWriter.Write(tmp.File("v1"), [t], new WriterOptions { MasterKey = master, SigningKey = signer, FormatVersion = 1 });
        CryptoTensorsWriter.Write(tmp.File("v2"), [t], new WriterOptions { MasterKey = master, SigningKey = signer });
        using var r1 = CryptoTensorsReader.Open(tmp.File("v1"), TestModels.Keys(master, signer));
        Assert.That(r1.ReservedMetadata[ReservedFields.Encryption], Does.Contain("\"iv\":\"\",\"tag\":\"\""));
        Assert.That(r1.ReadTensor("e"), Is.Empty);
        using var r2 = CryptoTensorsReader.Open(tmp.File("v2"), TestModels.Keys(master, signer));
        Assert.That(r2.Entry("e")!.Tags, Has.Length.EqualTo(16), "one tag over the empty plaintext");
        Assert.That(r2.ReadTensor("e"), Is.Empty);
    }

    [Test]
    public void PartialEncryptionLeavesOtherTensorsPlainAndUnlisted()
    {
        using var tmp = new TempDir();
        using var master = MasterKey.Generate();
        using var signer = SigningKey.Generate();
        var tensors = TestModels.EveryDtype();
        CryptoTensorsWriter.Write(tmp.File("m"), tensors, new WriterOptions
        {
            MasterKey = master, SigningKey = signer, ChunkSize = 8, EncryptOnly = ["t.f32", "empty", "no-such-tensor"],
        });
        using var r = CryptoTensorsReader.Open(tmp.File("m"), TestModels.Keys(master, signer));
        Assert.That(r.Tensors.Where(t => t.IsEncrypted).Select(t => t.Name), Is.EquivalentTo(new[] { "t.f32", "empty" }));
        Assert.That(r.ReservedMetadata[ReservedFields.Encryption], Does.Not.Contain("no-such-tensor"));
        Assert.That(TestModels.ReadAll(r), Is.EquivalentTo(TestModels.Plain(tensors)));
        // Plain tensors are stored as is.
        var raw = File.ReadAllBytes(tmp.File("m"));
        var info = r.Header.Tensors.First(t => t.Name == "t.u64");
        Assert.That(raw.AsSpan((int)(r.Header.DataStart + (long)info.Begin), (int)info.ByteLength).ToArray(), Is.EqualTo(TestModels.Plain(tensors)["t.u64"]));
    }

    [Test]
    public void AFilterMatchingNothingWritesAPlainUnsignedFile()
    {
        using var tmp = new TempDir();
        using var master = MasterKey.Generate();
        using var signer = SigningKey.Generate();
        CryptoTensorsWriter.Write(tmp.File("m"), TestModels.EveryDtype(), new WriterOptions { MasterKey = master, SigningKey = signer, EncryptOnly = ["nothing"] });
        using var r = CryptoTensorsReader.Open(tmp.File("m"), new ReaderOptions { Keys = new() });
        Assert.That(r.IsEncrypted, Is.False);
        Assert.That(r.ReservedMetadata, Is.Empty);
    }

    [Test]
    public void UnicodeNamesAndMetadataRoundTripAndSignatureVerifies()
    {
        using var tmp = new TempDir();
        using var master = MasterKey.Generate();
        using var signer = SigningKey.Generate();
        var names = new[] { "模型.权重", "😀.emoji", "～tilde", "quote\"back\\slash", "ctl\u0001\n", "Zeta", "é" };
        var tensors = names.Select((n, i) => TestModels.Tensor(n, Dtype.BF16, [2, 3], i)).ToList();
        var meta = new Dictionary<string, string> { ["描述 ✓"] = "模型 \"引号\" \\ \n\t 😀 </script>&", ["😀"] = "astral", ["～"] = "fullwidth", ["__user__"] = "kept" };
        CryptoTensorsWriter.Write(tmp.File("m"), tensors, new WriterOptions { MasterKey = master, SigningKey = signer, Metadata = meta });
        using var r = CryptoTensorsReader.Open(tmp.File("m"), TestModels.Keys(master, signer));
        Assert.That(TestModels.ReadAll(r), Is.EquivalentTo(TestModels.Plain(tensors)));
        Assert.That(r.Metadata, Is.EquivalentTo(meta.Where(kv => !kv.Key.StartsWith("__", StringComparison.Ordinal))));
        Assert.That(r.ReservedMetadata["__user__"], Is.EqualTo("kept"));
    }

    [Test]
    public void UserSuppliedReservedFieldsAreReplaced()
    {
        using var tmp = new TempDir();
        using var master = MasterKey.Generate();
        using var signer = SigningKey.Generate();
        var meta = new Dictionary<string, string> { [ReservedFields.Signature] = "forged", [ReservedFields.Policy] = "{}", ["a"] = "b" };
        CryptoTensorsWriter.Write(tmp.File("m"), TestModels.EveryDtype(), new WriterOptions { MasterKey = master, SigningKey = signer, Metadata = meta });
        using var r = CryptoTensorsReader.Open(tmp.File("m"), TestModels.Keys(master, signer));
        Assert.That(r.Policy, Is.EqualTo(AccessPolicy.Default));
        Assert.That(r.ReservedMetadata[ReservedFields.Signature], Has.Length.EqualTo(88));
    }

    [Test]
    public void CounterOverflowIsAvoidedByRedrawingTheBaseNonce()
    {
        using var tmp = new TempDir();
        using var master = MasterKey.Generate();
        using var signer = SigningKey.Generate();
        var random = new OverflowFirst();
        var t = TensorSource.FromMemory("x", Dtype.U8, [100], TestModels.Bytes(100, 3));
        CryptoTensorsWriter.Write(tmp.File("m"), [t], new WriterOptions { MasterKey = master, SigningKey = signer, ChunkSize = 10, Random = random });
        Assert.That(random.BaseDraws, Is.EqualTo(2), "the first base nonce (counter FFFFFFFF, 10 chunks) must be re-drawn");
        using var r = CryptoTensorsReader.Open(tmp.File("m"), TestModels.Keys(master, signer));
        Assert.That(r.ReadTensor("x"), Is.EqualTo(TestModels.Plain([t])["x"]));
        Assert.That(r.Entry("x")!.BaseIv[8..], Is.Not.EqualTo(new byte[] { 0xFF, 0xFF, 0xFF, 0xFF }));
    }

    [Test]
    public void ARandomSourceThatAlwaysOverflowsIsRefusedNotWrapped()
    {
        using var tmp = new TempDir();
        using var master = MasterKey.Generate();
        using var signer = SigningKey.Generate();
        var t = TensorSource.FromMemory("x", Dtype.U8, [100], TestModels.Bytes(100, 3));
        var ex = Assert.Throws<DecryptionException>(() => CryptoTensorsWriter.Write(tmp.File("m"), [t],
            new WriterOptions { MasterKey = master, SigningKey = signer, ChunkSize = 10, Random = new OverflowAlways() }));
        Assert.That(ex!.Code, Is.EqualTo(ErrorCode.IvCounterOverflow));
        Assert.That(Directory.GetFiles(tmp.Path), Is.Empty);
    }

    private sealed class OverflowFirst : IRandomSource
    {
        public int BaseDraws { get; private set; }

        public void Fill(Span<byte> destination, RandomPurpose purpose, string tensor)
        {
            System.Security.Cryptography.RandomNumberGenerator.Fill(destination);
            if (purpose == RandomPurpose.BaseNonce && BaseDraws++ == 0) destination[8..].Fill(0xFF);
        }
    }

    private sealed class OverflowAlways : IRandomSource
    {
        public void Fill(Span<byte> destination, RandomPurpose purpose, string tensor)
        {
            System.Security.Cryptography.RandomNumberGenerator.Fill(destination);
            if (purpose == RandomPurpose.BaseNonce) destination[8..].Fill(0xFF);
        }
    }
}
