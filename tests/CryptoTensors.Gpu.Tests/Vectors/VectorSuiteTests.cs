using System.Security.Cryptography;
using System.Text.Json;
using CryptoTensors.Gpu.Keys;
using CryptoTensors.Gpu.Reading;

namespace CryptoTensors.Gpu.Tests.Vectors;

/// <summary>Every vector of tests/vectors (or CRYPTOTENSORS_VECTORS) asserts exactly what its expected.json says.</summary>
public class VectorSuiteTests
{
    public static IEnumerable<TestCaseData> Vectors()
    {
        var dir = TestPaths.VectorsDir;
        using var index = JsonDocument.Parse(File.ReadAllText(Path.Combine(dir, "index.json")));
        foreach (var v in index.RootElement.GetProperty("vectors").EnumerateArray())
        {
            var name = v.GetProperty("name").GetString()!;
            yield return new TestCaseData(name).SetName("Vector_" + name);
        }
    }

    internal sealed record Expected(JsonElement Root, string Dir)
    {
        public string Expect => Root.GetProperty("expect").GetString()!;
        public string File => Path.Combine(Dir, Root.GetProperty("file").GetString()!);
        public string? KeyPath(string which)
            => Root.TryGetProperty("keys", out var k) && k.ValueKind == JsonValueKind.Object && k.TryGetProperty(which, out var p)
                ? Path.GetFullPath(Path.Combine(Dir, p.GetString()!)) : null;
        public ErrorKind Kind => ErrorKinds.FromVectorName(Root.GetProperty("error_kind").GetString()!);
        public string Stage => Root.GetProperty("refuse_stage").GetString()!;
        public IEnumerable<JsonElement> Tensors
            => Root.TryGetProperty("tensors", out var t) && t.ValueKind == JsonValueKind.Array ? t.EnumerateArray() : [];
        public string[] Failing
            => Root.TryGetProperty("failing_tensors", out var f) && f.ValueKind == JsonValueKind.Array
                ? f.EnumerateArray().Select(x => x.GetString()!).ToArray() : [];
    }

    internal static Expected Load(string name)
    {
        var dir = Path.Combine(TestPaths.VectorsDir, name);
        return new Expected(JsonDocument.Parse(File.ReadAllText(Path.Combine(dir, "expected.json"))).RootElement.Clone(), dir);
    }

    internal static CryptoTensorsReader OpenWithVectorKeys(Expected e, out MasterKey? master)
    {
        master = e.KeyPath("enc") is { } ep ? Jwk.LoadMasterKey(ep) : null;
        var verify = e.KeyPath("sign") is { } sp ? Jwk.LoadVerificationKey(sp) : null;
        // An empty registry: only the vector's keys may be used.
        return CryptoTensorsReader.Open(e.File, new ReaderOptions { MasterKey = master, VerificationKey = verify, Keys = new KeyRegistry() });
    }

    [TestCaseSource(nameof(Vectors))]
    public void ReaderAgreesWithExpectedJson(string name)
    {
        var e = Load(name);
        MasterKey? master = null;
        try
        {
            if (e.Expect == "ok")
            {
                using var r = OpenWithVectorKeys(e, out master);
                AssertTensors(r, e.Tensors);
                if (e.Root.TryGetProperty("metadata", out var md) && md.ValueKind == JsonValueKind.Object)
                {
                    var want = md.EnumerateObject().ToDictionary(p => p.Name, p => p.Value.GetString()!);
                    // expected.json's "metadata" is everything but the four crypto fields; the reader's Metadata hides every
                    // "__" key as the reference's metadata() does, and ReservedMetadata holds those.
                    var all = r.Metadata.Concat(r.ReservedMetadata).Where(kv => !CryptoTensors.Gpu.Crypto.ReservedFields.All.Contains(kv.Key));
                    Assert.That(all, Is.EquivalentTo(want));
                    Assert.That(r.Metadata.Keys, Has.None.StartsWith("__"));
                }
                if (e.Root.TryGetProperty("reserved_metadata_keys", out var rk))
                    Assert.That(r.ReservedMetadata.Keys, Is.EquivalentTo(rk.EnumerateArray().Select(x => x.GetString())));
                if (e.Root.TryGetProperty("format", out var fmt) && fmt.TryGetProperty("kind", out var kind))
                {
                    Assert.That(r.IsEncrypted, Is.EqualTo(kind.GetString() == "cryptotensors"));
                    if (r.IsEncrypted)
                    {
                        Assert.That(r.CryptoKeys!.Version, Is.EqualTo(fmt.GetProperty("version").GetString()));
                        if (fmt.TryGetProperty("chunk_size", out var cs) && cs.ValueKind == JsonValueKind.Number)
                            Assert.That(r.CryptoKeys.ChunkSize, Is.EqualTo(cs.GetInt64()));
                        Assert.That(r.CryptoKeys.Enc.Alg, Is.EqualTo(fmt.GetProperty("enc_alg").GetString()));
                    }
                }
                return;
            }

            if (e.Stage == "open")
            {
                var ex = Assert.Throws(Is.InstanceOf<CryptoTensorsException>(), () => OpenWithVectorKeys(e, out master).Dispose()) as CryptoTensorsException;
                Assert.That(ex!.Kind, Is.EqualTo(e.Kind), ex.Message);
                return;
            }

            // Refused when a failing tensor is read; every other tensor still decrypts to its listed hash.
            using (var r = OpenWithVectorKeys(e, out master))
            {
                foreach (var failing in e.Failing)
                {
                    var buffer = new byte[r.GetTensor(failing).ByteLength];
                    buffer.AsSpan().Fill(0xAA);
                    var ex = Assert.Throws(Is.InstanceOf<CryptoTensorsException>(), () => r.ReadTensor(failing, buffer)) as CryptoTensorsException;
                    Assert.That(ex!.Kind, Is.EqualTo(e.Kind), ex.Message);
                    Assert.That(ex.Tensor, Is.EqualTo(failing));
                    Assert.That(buffer.All(b => b == 0), Is.True, "nothing of a refused tensor may be returned");
                }
                AssertTensors(r, e.Tensors.Where(t => !e.Failing.Contains(t.GetProperty("name").GetString())));
            }
        }
        finally
        {
            master?.Dispose();
        }
    }

    internal static void AssertTensors(CryptoTensorsReader r, IEnumerable<JsonElement> tensors)
    {
        var listed = 0;
        foreach (var t in tensors)
        {
            listed++;
            var name = t.GetProperty("name").GetString()!;
            var d = r.GetTensor(name);
            Assert.That(d.Dtype.ToString(), Is.EqualTo(t.GetProperty("dtype").GetString()), name);
            Assert.That(d.Shape, Is.EqualTo(t.GetProperty("shape").EnumerateArray().Select(x => x.GetUInt64()).ToArray()), name);
            Assert.That(d.ByteLength, Is.EqualTo(t.GetProperty("nbytes").GetInt64()), name);
            if (t.TryGetProperty("encrypted", out var enc)) Assert.That(d.IsEncrypted, Is.EqualTo(enc.GetBoolean()), name);
            var hash = Convert.ToHexStringLower(SHA256.HashData(r.ReadTensor(name)));
            Assert.That(hash, Is.EqualTo(t.GetProperty("sha256").GetString()), name);
        }
        if (listed > 0) Assert.That(r.Tensors, Has.Count.GreaterThanOrEqualTo(listed));
    }
}
