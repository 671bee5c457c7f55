using System.Diagnostics;
using System.Text.Json;
using CryptoTensors.Gpu.Crypto;
using CryptoTensors.Gpu.Format;
using CryptoTensors.Gpu.Keys;
using CryptoTensors.Gpu.Reading;
using CryptoTensors.Gpu.Writing;

namespace CryptoTensors.Gpu.Tests.Writing;

/// <summary>
/// Files we write are checked by tests/oracle/ctoracle.py, an independent implementation verified against the
/// reference: it decrypts them and compares the layout byte for byte with the reference writer's rules. It runs under
/// Debian's /usr/bin/python3 and needs only python3-cryptography; where either is missing these tests are skipped
/// with that reason (the oracle itself is part of the repository: its absence is a failure).
/// </summary>
public class OracleCompatibilityTests
{
    private const string Python = Oracle.Python;

    [OneTimeSetUp]
    public void RequireOracle() => Oracle.Require();

    private static (int Code, string Out, string Err) Run(string exe, params string[] args) => Oracle.Run(exe, args);

    private static IEnumerable<TestCaseData> Cases()
    {
        foreach (var alg in Enum.GetValues<AeadAlgorithm>())
        {
            yield return new TestCaseData(alg, 2, 64L, null, false).SetName($"Oracle_{alg}_v2_chunk64");
            yield return new TestCaseData(alg, 1, 0L, null, false).SetName($"Oracle_{alg}_v1");
        }
        yield return new TestCaseData(AeadAlgorithm.Aes256Gcm, 2, CryptoKeysField.DefaultChunkSize, null, false).SetName("Oracle_default_chunk");
        yield return new TestCaseData(AeadAlgorithm.Aes256Gcm, 2, 16L, new[] { "t.f32", "scalar", "模型.权重" }, true).SetName("Oracle_partial_unicode_policy");
        yield return new TestCaseData(AeadAlgorithm.Aes128Gcm, 1, 0L, new[] { "t.u8" }, true).SetName("Oracle_v1_partial_unicode_policy");
    }

    [TestCaseSource(nameof(Cases))]
    public void OracleReadsOurFilesAndFindsTheReferenceLayout(AeadAlgorithm alg, int version, long chunk, string[]? filter, bool unicode)
    {
        using var tmp = new TempDir();
        using var master = MasterKey.Generate(alg, "enc-" + alg);
        using var signer = SigningKey.Generate("sign-1");
        File.WriteAllText(tmp.File("enc.jwk"), Jwk.Write(master));
        File.WriteAllText(tmp.File("sign.pub.jwk"), Jwk.Write(signer.Public));
        var tensors = TestModels.EveryDtype();
        var meta = new Dictionary<string, string> { ["format"] = "pt" };
        if (unicode)
        {
            tensors.Add(TestModels.Tensor("模型.权重", Dtype.F16, [4, 4], 7));
            tensors.Add(TestModels.Tensor("😀 \"q\"\n", Dtype.I32, [3], 8));
            meta["描述 ✓"] = "模型 \"引号\" back\\slash \n\t 😀 é ～ </script>&";
            meta["～"] = "U+FF5E";
            meta["😀"] = "astral";
        }
        var path = tmp.File("model.safetensors");
        CryptoTensorsWriter.Write(path, tensors, new WriterOptions
        {
            MasterKey = master, SigningKey = signer, FormatVersion = version, ChunkSize = chunk == 0 ? CryptoKeysField.DefaultChunkSize : chunk,
            EncryptOnly = filter, Metadata = meta,
            Policy = unicode ? new AccessPolicy("package model\n# ✓ comment\nallow = true", "package model\nallow = true") : null,
        });
        var (code, stdout, stderr) = Run(Python, TestPaths.Oracle, "verify", path, "--enc-key", tmp.File("enc.jwk"), "--sign-key", tmp.File("sign.pub.jwk"));
        Assert.That(code, Is.Zero, stdout + stderr);

        // The oracle's hashes equal ours.
        using var doc = JsonDocument.Parse(stdout[stdout.IndexOf('{', StringComparison.Ordinal)..]);
        using var r = CryptoTensorsReader.Open(path, TestModels.Keys(master, signer));
        var ours = r.Tensors.ToDictionary(t => t.Name, t => Convert.ToHexStringLower(System.Security.Cryptography.SHA256.HashData(r.ReadTensor(t.Name))));
        var theirs = FindTensors(doc.RootElement).ToDictionary(t => t.GetProperty("name").GetString()!, t => t.GetProperty("sha256").GetString()!);
        Assert.That(theirs, Is.EquivalentTo(ours));
    }

    [Test]
    public void OracleReadsOurPlainFiles()
    {
        using var tmp = new TempDir();
        var path = tmp.File("plain.safetensors");
        CryptoTensorsWriter.Write(path, TestModels.EveryDtype(), new WriterOptions { Metadata = new Dictionary<string, string> { ["format"] = "pt" } });
        var (code, stdout, stderr) = Run(Python, TestPaths.Oracle, "verify", path);
        Assert.That(code, Is.Zero, stdout + stderr);
    }

    [Test]
    public void WeReadWhatTheOracleWrites()
    {
        using var tmp = new TempDir();
        using var master = MasterKey.Generate(AeadAlgorithm.ChaCha20Poly1305, "o-enc");
        using var signer = SigningKey.Generate("o-sign");
        File.WriteAllText(tmp.File("enc.jwk"), Jwk.Write(master));
        File.WriteAllText(tmp.File("sign.jwk"), Jwk.Write(signer));
        var path = tmp.File("oracle.safetensors");
        var (code, stdout, stderr) = Run(Python, TestPaths.Oracle, "write", "--demo", "--enc-key", tmp.File("enc.jwk"), "--sign-key", tmp.File("sign.jwk"), "--chunk-size", "100", path);
        Assert.That(code, Is.Zero, stdout + stderr);
        var (rc, summary, rerr) = Run(Python, TestPaths.Oracle, "read", path, "--enc-key", tmp.File("enc.jwk"), "--sign-key", tmp.File("sign.jwk"));
        Assert.That(rc, Is.Zero, rerr);
        using var doc = JsonDocument.Parse(summary[summary.IndexOf('{', StringComparison.Ordinal)..]);
        using var r = CryptoTensorsReader.Open(path, TestModels.Keys(master, signer));
        foreach (var t in FindTensors(doc.RootElement))
        {
            var name = t.GetProperty("name").GetString()!;
            Assert.That(Convert.ToHexStringLower(System.Security.Cryptography.SHA256.HashData(r.ReadTensor(name))), Is.EqualTo(t.GetProperty("sha256").GetString()), name);
        }
        Assert.That(r.Tensors, Is.Not.Empty);
    }

    private static IEnumerable<JsonElement> FindTensors(JsonElement root)
        => root.ValueKind == JsonValueKind.Object && root.TryGetProperty("tensors", out var t) ? t.EnumerateArray() : [];
}
