using System.Text;
using System.Text.Json;
using CryptoTensors.Cli;
using CryptoTensors.Gpu.Format;
using CryptoTensors.Gpu.Keys;
using CryptoTensors.Gpu.Reading;
using CryptoTensors.Gpu.Writing;

namespace CryptoTensors.Gpu.Tests.Hardening;

/// <summary>
/// Key hygiene (issue 18 item 6): every CLI command, in process, succeeding and failing, and the library's refusals print
/// no key (master keys, data keys, signing seeds — raw, hex, base64, base64url) in any output line, exception message,
/// <c>ToString()</c> of an exception or a key object; every secret buffer created is zeroed once its owner is disposed;
/// private JWK files are 0600. (The key server's own output and audit log: KeyServerCliTests.)
/// </summary>
[NonParallelizable]
public class KeyHygieneTests
{
    private const UnixFileMode Private = UnixFileMode.UserRead | UnixFileMode.UserWrite;

    private readonly List<string> _haystack = [];

    private (int Code, string Out, string Err) Ctensors(params string[] args)
    {
        var o = new StringWriter();
        var e = new StringWriter();
        var code = CliApp.Run(args, o, e);
        _haystack.Add(o.ToString());
        _haystack.Add(e.ToString());
        return (code, o.ToString(), e.ToString());
    }

    private void Refusal(Action action)
    {
        try
        {
            action();
            Assert.Fail("expected a refusal");
        }
        catch (CryptoTensorsException e)
        {
            _haystack.Add(e.Message);
            _haystack.Add(e.ToString());
        }
    }

    /// <summary>The private values of a JWK file ("k" of a master key, "d" of a signing key).</summary>
    private static IEnumerable<byte[]> JwkSecrets(string path)
    {
        using var doc = JsonDocument.Parse(File.ReadAllText(path));
        foreach (var name in new[] { "k", "d" })
            if (doc.RootElement.TryGetProperty(name, out var v)) yield return Base64Url(v.GetString()!);
    }

    private static byte[] Base64Url(string s)
    {
        s = s.Replace('-', '+').Replace('_', '/');
        return Convert.FromBase64String(s.PadRight(s.Length + (4 - s.Length % 4) % 4, '='));
    }

    /// <summary>Every textual form a key could take in output.</summary>
    private static IEnumerable<string> Forms(byte[] key)
    {
        var b64 = Convert.ToBase64String(key);
        yield return Convert.ToHexString(key);
        yield return Convert.ToHexStringLower(key);
        yield return b64;
        yield return b64.TrimEnd('=');
        yield return b64.TrimEnd('=').Replace('+', '-').Replace('/', '_');
        yield return Encoding.Latin1.GetString(key);
    }

    [Test]
    [System.Runtime.Versioning.UnsupportedOSPlatform("windows")]
    public void NoCommandOrRefusalShowsAKeyAndEverySecretIsZeroedAfterUse()
    {
        using var tmp = new TempDir();
        string P(string n) => tmp.File(n);
        using var recorder = new SecretRecorder();
        var plainTensors = Enumerable.Range(0, 5).Select(i => TestModels.Tensor($"w{i}", Dtype.F32, [64, 33], i)).ToList();
        CryptoTensorsWriter.Write(P("plain.safetensors"), plainTensors, new WriterOptions());
        File.WriteAllText(P("prod.rego"), "package model\nimport rego.v1\ndefault allow := false\nallow if input.context.tier == \"prod\"\n");
        File.WriteAllText(P("prod.json"), "{\"tier\":\"prod\"}");
        File.WriteAllText(P("dev.json"), "{\"tier\":\"dev\"}");
        File.WriteAllText(P("input.json"), "{\"context\":{\"tier\":\"prod\"}}");

        // Every command, succeeding.
        Assert.That(Ctensors("keygen", "--out-dir", P("keys")).Code, Is.Zero);
        Assert.That(Ctensors("keygen", "--out-dir", P("keys2"), "--alg", "chacha20poly1305", "--kid-prefix", "b-").Code, Is.Zero);
        string[] keys = ["--key", P("keys/enc.jwk"), "--verify-key", P("keys/sign.pub.jwk")];
        Assert.That(Ctensors(["encrypt", P("plain.safetensors"), "-o", P("m.ct"), "--key", P("keys/enc.jwk"), "--sign-key", P("keys/sign.jwk"), "--policy", P("prod.rego"), "--chunk-size", "4096"]).Code, Is.Zero);
        Assert.That(Ctensors(["encrypt", P("plain.safetensors"), "-o", P("partial.ct"), "--key", P("keys/enc.jwk"), "--sign-key", P("keys/sign.jwk"), "--tensors", "w1,w2"]).Code, Is.Zero);
        Assert.That(Ctensors(["verify", P("m.ct"), .. keys, "--context", P("prod.json")]).Code, Is.Zero);
        Assert.That(Ctensors(["verify", P("m.ct"), .. keys, "--context", P("prod.json"), "--json", "--require-all-encrypted"]).Code, Is.Zero);
        Assert.That(Ctensors(["decrypt", P("m.ct"), "-o", P("dec.safetensors"), .. keys, "--context", P("prod.json")]).Code, Is.Zero);
        Assert.That(Ctensors(["rewrap", P("m.ct"), "-o", P("rot.ct"), .. keys, "--context", P("prod.json"),
            "--new-key", P("keys/enc.jwk"), "--new-sign-key", P("keys/sign.jwk")]).Code, Is.Zero);
        Assert.That(Ctensors("inspect", P("m.ct")).Code, Is.Zero);
        Assert.That(Ctensors("inspect", P("m.ct"), "--json").Code, Is.Zero);
        Assert.That(Ctensors("policy", "eval", "--policy", P("prod.rego"), "--input", P("input.json")).Code, Is.Zero);
        Assert.That(Ctensors("policy", "show", P("m.ct")).Code, Is.Zero);
        Assert.That(Ctensors("demo", "--workload", "tiny", "--dir", P("demo"), "--repeat", "1").Code, Is.Zero);
        Assert.That(Ctensors("bench", "--workload", "tiny", "--dir", P("bench"), "--repeat", "1", "--json").Code, Is.Zero);

        // And failing: wrong key, tampered file, policy denial, a partial file where all must be encrypted.
        var tampered = P("tampered.ct");
        File.Copy(P("m.ct"), tampered);
        using (var f = new FileStream(tampered, FileMode.Open, FileAccess.ReadWrite))
        {
            f.Position = f.Length - 10;
            var b = f.ReadByte();
            f.Position = f.Length - 10;
            f.WriteByte((byte)(b ^ 1));
        }
        Assert.That(Ctensors(["verify", P("m.ct"), "--key", P("keys2/enc.jwk"), "--verify-key", P("keys/sign.pub.jwk"), "--context", P("prod.json")]).Code, Is.EqualTo(7).Or.EqualTo(8));
        Assert.That(Ctensors(["verify", P("m.ct"), "--key", P("keys/enc.jwk"), "--verify-key", P("keys2/sign.pub.jwk"), "--context", P("prod.json"), "--json"]).Code, Is.EqualTo(5));
        Assert.That(Ctensors(["verify", tampered, .. keys, "--context", P("prod.json")]).Code, Is.EqualTo(9));
        Assert.That(Ctensors(["decrypt", tampered, "-o", P("bad.safetensors"), .. keys, "--context", P("prod.json")]).Code, Is.EqualTo(9));
        Assert.That(Ctensors(["verify", P("m.ct"), .. keys, "--context", P("dev.json"), "--explain"]).Code, Is.EqualTo(6));
        Assert.That(Ctensors(["verify", P("partial.ct"), .. keys, "--require-all-encrypted", "--json"]).Code, Is.EqualTo(3));
        Assert.That(Ctensors(["rewrap", P("m.ct"), "-o", P("rot2.ct"), "--key", P("keys2/enc.jwk"), "--verify-key", P("keys/sign.pub.jwk"),
            "--context", P("prod.json"), "--new-key", P("keys/enc.jwk"), "--new-sign-key", P("keys/sign.jwk")]).Code, Is.Not.Zero);

        // The library's refusals and key objects.
        using (var master = Jwk.LoadMasterKey(P("keys/enc.jwk")))
        using (var wrong = Jwk.LoadMasterKey(P("keys2/enc.jwk")))
        using (var signer = Jwk.LoadSigningKey(P("keys/sign.jwk")))
        {
            _haystack.AddRange([master.ToString(), wrong.ToString(), signer.ToString(), signer.Public.ToString()]);
            var ctx = JsonDocument.Parse("{\"tier\":\"prod\"}").RootElement;
            var ok = new ReaderOptions { MasterKey = master, VerificationKey = signer.Public, Keys = new(), PolicyContext = ctx };
            Refusal(() => CryptoTensorsReader.Open(P("m.ct"), new ReaderOptions { MasterKey = wrong, VerificationKey = signer.Public, Keys = new(), PolicyContext = ctx }).Dispose());
            Refusal(() => CryptoTensorsReader.Open(P("m.ct"), new ReaderOptions { MasterKey = master, VerificationKey = signer.Public, Keys = new() }).Dispose());
            Refusal(() =>
            {
                using var r = CryptoTensorsReader.Open(tampered, ok);
                foreach (var t in r.Tensors) r.ReadTensor(t.Name);
            });
            using (var r = CryptoTensorsReader.Open(P("m.ct"), ok)) _haystack.Add(r.ToString()!);
        }

        // Private JWKs are 0600 (keygen, demo --dir, bench --dir); public ones hold no private value.
        string[] keyDirs = ["keys", "keys2", "demo/keys"];
        foreach (var dir in keyDirs)
        foreach (var name in new[] { "enc.jwk", "sign.jwk" })
        {
            var path = Path.Combine(P(dir), name);
            Assert.That(File.Exists(path), Is.True, path);
            Assert.That(File.GetUnixFileMode(path), Is.EqualTo(Private), path);
        }

        var secrets = recorder.Keys().ToList();
        foreach (var dir in keyDirs) secrets.AddRange(JwkSecrets(Path.Combine(P(dir), "enc.jwk")).Concat(JwkSecrets(Path.Combine(P(dir), "sign.jwk"))));
        Assert.That(secrets.Count, Is.GreaterThan(10), "the data keys, master keys and seeds were obtained");
        Assert.That(recorder.Leaks(), Is.Empty, "every secret buffer is disposed and zero once its owner is done");

        var text = string.Join("\n", _haystack);
        Assert.That(text, Does.Contain("authentication").And.Contain("policy"), "the failures were captured");
        var found = secrets.SelectMany(Forms).Where(form => text.Contains(form, StringComparison.Ordinal)).ToList();
        Assert.That(found, Is.Empty, "a key appears in output (shown as its form)");
    }
}
