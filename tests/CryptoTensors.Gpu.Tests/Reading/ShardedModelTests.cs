using System.Text.Json;
using CryptoTensors.Gpu.Format;
using CryptoTensors.Gpu.Keys;
using CryptoTensors.Gpu.Reading;
using CryptoTensors.Gpu.Tests.Cli;
using CryptoTensors.Gpu.Writing;

namespace CryptoTensors.Gpu.Tests.Reading;

public class ShardedModelTests
{
    private static Dictionary<string, byte[]> MakeSharded(string dir)
    {
        Directory.CreateDirectory(dir);
        var all = TestModels.EveryDtype();
        var map = new Dictionary<string, string>();
        var shards = all.Select((t, i) => (t, file: $"model-{i % 3 + 1:00000}-of-00003.safetensors")).GroupBy(x => x.file);
        foreach (var g in shards)
        {
            CryptoTensorsWriter.Write(Path.Combine(dir, g.Key), g.Select(x => x.t), new WriterOptions { Metadata = new Dictionary<string, string> { ["format"] = "pt" } });
            foreach (var (t, file) in g) map[t.Name] = file;
        }
        var index = JsonSerializer.Serialize(new { metadata = new { total_size = all.Sum(t => t.ByteLength) }, weight_map = map });
        File.WriteAllText(Path.Combine(dir, ShardedModel.IndexFileName), index);
        return TestModels.Plain(all);
    }

    [Test]
    public void CliEncryptsVerifiesAndDecryptsAShardedDirectory()
    {
        using var tmp = new TempDir();
        var want = MakeSharded(tmp.File("plain"));
        Assert.That(CliTests.Ctensors("keygen", "--out-dir", tmp.File("k")).Code, Is.Zero);
        var r = CliTests.Ctensors("encrypt", tmp.File("plain"), "-o", tmp.File("enc"), "--key", tmp.File("k/enc.jwk"), "--sign-key", tmp.File("k/sign.jwk"), "--chunk-size", "32");
        Assert.That(r.Code, Is.Zero, r.Err);
        Assert.That(File.ReadAllText(tmp.File("enc/" + ShardedModel.IndexFileName)), Is.EqualTo(File.ReadAllText(tmp.File("plain/" + ShardedModel.IndexFileName))));
        Assert.That(Directory.GetFiles(tmp.File("enc")), Has.Length.EqualTo(4));

        using (var m = ShardedModel.Open(tmp.File("enc"), new ReaderOptions { MasterKey = Jwk.LoadMasterKey(tmp.File("k/enc.jwk")), VerificationKey = Jwk.LoadVerificationKey(tmp.File("k/sign.pub.jwk")), Keys = new() }))
        {
            Assert.That(m.Shards.Values.All(s => s.IsEncrypted), Is.True);
            Assert.That(m.Tensors.ToDictionary(t => t.Name, t => m.ReadTensor(t.Name)), Is.EquivalentTo(want));
        }
        r = CliTests.Ctensors("verify", tmp.File("enc"), "--key", tmp.File("k/enc.jwk"), "--verify-key", tmp.File("k/sign.pub.jwk"), "--json");
        Assert.That(r.Code, Is.Zero, r.Err);
        using (var doc = JsonDocument.Parse(r.Out)) Assert.That(doc.RootElement.GetProperty("tensors").GetArrayLength(), Is.EqualTo(want.Count));
        r = CliTests.Ctensors("decrypt", tmp.File("enc"), "-o", tmp.File("dec"), "--key", tmp.File("k/enc.jwk"), "--verify-key", tmp.File("k/sign.pub.jwk"));
        Assert.That(r.Code, Is.Zero, r.Err);
        foreach (var f in Directory.GetFiles(tmp.File("plain")))
            Assert.That(File.ReadAllBytes(tmp.File("dec/" + Path.GetFileName(f))), Is.EqualTo(File.ReadAllBytes(f)), f);
    }

    [Test]
    public void ATamperedShardFailsTheWholeDecryptAndLeavesNothing()
    {
        using var tmp = new TempDir();
        MakeSharded(tmp.File("plain"));
        Assert.That(CliTests.Ctensors("keygen", "--out-dir", tmp.File("k")).Code, Is.Zero);
        Assert.That(CliTests.Ctensors("encrypt", tmp.File("plain"), "-o", tmp.File("enc"), "--key", tmp.File("k/enc.jwk"), "--sign-key", tmp.File("k/sign.jwk")).Code, Is.Zero);
        var last = tmp.File("enc/model-00003-of-00003.safetensors");
        var bytes = File.ReadAllBytes(last);
        bytes[^1] ^= 1;
        File.WriteAllBytes(last, bytes);
        var r = CliTests.Ctensors("decrypt", tmp.File("enc"), "-o", tmp.File("dec"), "--key", tmp.File("k/enc.jwk"), "--verify-key", tmp.File("k/sign.pub.jwk"));
        Assert.That(r.Code, Is.EqualTo(9), r.Err);
        Assert.That(Directory.Exists(tmp.File("dec")), Is.False, "no output directory remains");
    }

    [Test]
    public void IndexAndShardsMustAgree()
    {
        using var tmp = new TempDir();
        MakeSharded(tmp.File("m"));
        var indexPath = tmp.File("m/" + ShardedModel.IndexFileName);
        var index = File.ReadAllText(indexPath);
        File.WriteAllText(indexPath, index.Replace("\"t.f32\":", "\"ghost\":\"model-00001-of-00003.safetensors\",\"t.f32\":", StringComparison.Ordinal));
        var ex = Assert.Throws<MalformedFileException>(() => ShardedModel.Open(tmp.File("m"), new ReaderOptions { Keys = new() }));
        Assert.That(ex!.Code, Is.EqualTo(ErrorCode.TensorNotFound));
        File.WriteAllText(indexPath, "{\"weight_map\":{\"t.f32\":\"../escape.safetensors\"}}");
        Assert.Throws<MalformedFileException>(() => ShardedModel.Open(tmp.File("m"), new ReaderOptions { Keys = new() }));
        File.WriteAllText(indexPath, "{\"weight_map\":{\"t.f32\":\"model-00001-of-00003.safetensors\"}}");
        ex = Assert.Throws<MalformedFileException>(() => ShardedModel.Open(tmp.File("m"), new ReaderOptions { Keys = new() }));
        Assert.That(ex!.Message, Does.Contain("does not map"));
        File.WriteAllText(indexPath, "[]");
        Assert.Throws<MalformedFileException>(() => ShardedModel.Open(tmp.File("m"), new ReaderOptions { Keys = new() }));
    }
}
