using System.Text.Json;
using CryptoTensors.Gpu.Crypto;

namespace CryptoTensors.Gpu.Tests.Crypto;

/// <summary>
/// Google Wycheproof vectors (tests/vectors/wycheproof) against the AEAD and Ed25519 primitives. Every case that
/// fits the format's parameters (12-byte nonce, 16-byte tag, a key length the algorithm accepts) is its own test.
/// </summary>
public class WycheproofTests
{
    public sealed record AeadCase(string File, int TcId, AeadAlgorithm Algorithm, byte[] Key, byte[] Iv, byte[] Aad,
        byte[] Msg, byte[] Ct, byte[] Tag, string Result, string Comment);

    public sealed record EdCase(int TcId, byte[] PublicKey, byte[] Msg, byte[] Sig, string Result, string Comment);

    private const string AesFile = "aes_gcm_test.json";
    private const string ChaChaFile = "chacha20_poly1305_test.json";
    private const string EdFile = "ed25519_test.json";

    private static string WycheproofDir => Path.Combine(TestPaths.VectorsDir, "wycheproof");

    private static JsonDocument Load(string file) => JsonDocument.Parse(File.ReadAllText(Path.Combine(WycheproofDir, file)));

    private static byte[] Hex(JsonElement e, string name) => Convert.FromHexString(e.GetProperty(name).GetString()!);

    /// <summary>All AEAD cases of a file, split into those the format's parameters admit and the rest.</summary>
    internal static (List<AeadCase> Used, int Skipped, int Declared) LoadAead(string file)
    {
        using var doc = Load(file);
        var used = new List<AeadCase>();
        var skipped = 0;
        foreach (var g in doc.RootElement.GetProperty("testGroups").EnumerateArray())
        {
            foreach (var t in g.GetProperty("tests").EnumerateArray())
            {
                var key = Hex(t, "key");
                var iv = Hex(t, "iv");
                var tag = Hex(t, "tag");
                AeadAlgorithm? alg = file == ChaChaFile
                    ? key.Length == 32 ? AeadAlgorithm.ChaCha20Poly1305 : null
                    : key.Length switch { 16 => AeadAlgorithm.Aes128Gcm, 32 => AeadAlgorithm.Aes256Gcm, _ => null };
                if (alg is null || iv.Length != AeadAlgorithms.NonceSize || tag.Length != AeadAlgorithms.TagSize)
                {
                    skipped++;
                    continue;
                }
                used.Add(new AeadCase(file, t.GetProperty("tcId").GetInt32(), alg.Value, key, iv, Hex(t, "aad"), Hex(t, "msg"),
                    Hex(t, "ct"), tag, t.GetProperty("result").GetString()!, t.GetProperty("comment").GetString() ?? ""));
            }
        }
        return (used, skipped, doc.RootElement.GetProperty("numberOfTests").GetInt32());
    }

    internal static (List<EdCase> Used, int Skipped, int Declared) LoadEd25519()
    {
        using var doc = Load(EdFile);
        var used = new List<EdCase>();
        foreach (var g in doc.RootElement.GetProperty("testGroups").EnumerateArray())
        {
            var pk = Hex(g.GetProperty("publicKey"), "pk");
            foreach (var t in g.GetProperty("tests").EnumerateArray())
            {
                used.Add(new EdCase(t.GetProperty("tcId").GetInt32(), pk, Hex(t, "msg"), Hex(t, "sig"),
                    t.GetProperty("result").GetString()!, t.GetProperty("comment").GetString() ?? ""));
            }
        }
        return (used, 0, doc.RootElement.GetProperty("numberOfTests").GetInt32());
    }

    public static IEnumerable<TestCaseData> AesGcmCases() => AeadCases(AesFile);

    public static IEnumerable<TestCaseData> ChaChaCases() => AeadCases(ChaChaFile);

    private static IEnumerable<TestCaseData> AeadCases(string file)
        => LoadAead(file).Used.Select(c => new TestCaseData(c)
            .SetArgDisplayNames($"{Path.GetFileNameWithoutExtension(file)} tc{c.TcId} {c.Algorithm} {c.Result}"));

    public static IEnumerable<TestCaseData> Ed25519Cases()
        => from verifier in new[] { nameof(Ed25519Verifier.Sodium), nameof(Ed25519Verifier.OpenSsl) }
           from c in LoadEd25519().Used
           select new TestCaseData(c, verifier).SetArgDisplayNames($"ed25519 {verifier} tc{c.TcId} {c.Result}");

    // The BCL explicitly; AcceleratedAesGcmTests runs the AES-GCM cases on the ipsec-mb backend.
    [TestCaseSource(nameof(AesGcmCases))]
    public void AesGcm(AeadCase c) => CheckAead(c, AeadBackend.Bcl);

    [TestCaseSource(nameof(ChaChaCases))]
    public void ChaCha20Poly1305(AeadCase c) => CheckAead(c, AeadBackend.Bcl);

    /// <summary>Checks one case on <paramref name="backend"/>: both directions, out of place and in place.</summary>
    internal static void CheckAead(AeadCase c, AeadBackend backend)
    {
        switch (c.Result)
        {
            case "valid":
            {
                using var cipher = new AeadCipher(c.Algorithm, c.Key, backend);
                Assert.That(cipher.Backend, Is.EqualTo(backend));
                var pt = new byte[c.Ct.Length];
                Assert.That(cipher.TryDecrypt(c.Iv, c.Ct, c.Tag, pt, c.Aad), Is.True, $"decrypt ({c.Comment})");
                Assert.That(pt, Is.EqualTo(c.Msg), "decrypted plaintext");

                var ct = new byte[c.Msg.Length];
                var tag = new byte[AeadAlgorithms.TagSize];
                cipher.Encrypt(c.Iv, c.Msg, ct, tag, c.Aad);
                Assert.That(ct, Is.EqualTo(c.Ct), "ciphertext");
                Assert.That(tag, Is.EqualTo(c.Tag), "tag");

                // In place, as the reader decrypts and the writer encrypts.
                var buf = (byte[])c.Ct.Clone();
                Assert.That(cipher.TryDecrypt(c.Iv, buf, c.Tag, buf, c.Aad), Is.True, "in-place decrypt");
                Assert.That(buf, Is.EqualTo(c.Msg), "in-place plaintext");
                cipher.Encrypt(c.Iv, buf, buf, tag, c.Aad);
                Assert.That(buf, Is.EqualTo(c.Ct), "in-place ciphertext");
                Assert.That(tag, Is.EqualTo(c.Tag), "in-place tag");
                break;
            }
            case "invalid":
            {
                // A wrong key length is refused at construction; every other invalid case must fail authentication.
                using var cipher = new AeadCipher(c.Algorithm, c.Key, backend);
                var pt = Enumerable.Repeat((byte)0xA5, c.Ct.Length).ToArray();
                Assert.That(cipher.TryDecrypt(c.Iv, c.Ct, c.Tag, pt, c.Aad), Is.False, $"decrypt must fail ({c.Comment})");
                Assert.That(pt, Is.All.EqualTo((byte)0), "plaintext buffer is zeroed on failure");

                var buf = (byte[])c.Ct.Clone();
                Assert.That(cipher.TryDecrypt(c.Iv, buf, c.Tag, buf, c.Aad), Is.False, "in-place decrypt must fail");
                Assert.That(buf, Is.All.EqualTo((byte)0), "in-place buffer is zeroed on failure");
                break;
            }
            case "acceptable":
                Assert.That(() =>
                {
                    using var cipher = new AeadCipher(c.Algorithm, c.Key, backend);
                    cipher.TryDecrypt(c.Iv, c.Ct, c.Tag, new byte[c.Ct.Length], c.Aad);
                }, Throws.Nothing);
                break;
            default:
                Assert.Fail($"unknown Wycheproof result '{c.Result}'");
                break;
        }
    }

    [TestCaseSource(nameof(Ed25519Cases))]
    public void Ed25519Verify(EdCase c, string verifierName)
    {
        var verifier = Enum.Parse<Ed25519Verifier>(verifierName);
        if (verifier == Ed25519Verifier.OpenSsl && !OpenSslEd25519.Available)
            Assert.Ignore("OpenSSL's libcrypto.so.3 is not loadable here (or failed its self-test): libsodium verifies");
        switch (c.Result)
        {
            case "valid":
                Assert.That(Ed25519.Verify(c.PublicKey, c.Msg, c.Sig, verifier), Is.True, c.Comment);
                break;
            case "invalid":
                Assert.That(Ed25519.Verify(c.PublicKey, c.Msg, c.Sig, verifier), Is.False, c.Comment);
                break;
            case "acceptable":
                Assert.That(() => Ed25519.Verify(c.PublicKey, c.Msg, c.Sig, verifier), Throws.Nothing);
                break;
            default:
                Assert.Fail($"unknown Wycheproof result '{c.Result}'");
                break;
        }
    }

    [Test]
    public void CaseCountsUsedAndSkipped()
    {
        var aes = LoadAead(AesFile);
        var chacha = LoadAead(ChaChaFile);
        var ed = LoadEd25519();
        TestContext.Out.WriteLine($"{AesFile}: {aes.Used.Count} used ({Count(aes.Used, "valid")} valid, {Count(aes.Used, "invalid")} invalid, "
            + $"{Count(aes.Used, "acceptable")} acceptable; {aes.Used.Count(c => c.Algorithm == AeadAlgorithm.Aes128Gcm)} AES-128, "
            + $"{aes.Used.Count(c => c.Algorithm == AeadAlgorithm.Aes256Gcm)} AES-256), {aes.Skipped} skipped (IV != 12, key 24 bytes)");
        TestContext.Out.WriteLine($"{ChaChaFile}: {chacha.Used.Count} used ({Count(chacha.Used, "valid")} valid, {Count(chacha.Used, "invalid")} invalid), "
            + $"{chacha.Skipped} skipped (nonce != 12)");
        TestContext.Out.WriteLine($"{EdFile}: {ed.Used.Count} used ({ed.Used.Count(c => c.Result == "valid")} valid, "
            + $"{ed.Used.Count(c => c.Result == "invalid")} invalid), {ed.Skipped} skipped");

        Assert.Multiple(() =>
        {
            Assert.That(aes.Used.Count(c => c.Algorithm == AeadAlgorithm.Aes128Gcm && c.Result == "valid"), Is.GreaterThan(0));
            Assert.That(aes.Used.Count(c => c.Algorithm == AeadAlgorithm.Aes256Gcm && c.Result == "valid"), Is.GreaterThan(0));
            Assert.That(Count(aes.Used, "invalid"), Is.GreaterThan(0));
            Assert.That(Count(chacha.Used, "valid"), Is.GreaterThan(0));
            Assert.That(Count(chacha.Used, "invalid"), Is.GreaterThan(0));
            Assert.That(ed.Used.Count(c => c.Result == "valid"), Is.GreaterThan(0));
            Assert.That(ed.Used.Count(c => c.Result == "invalid"), Is.GreaterThan(0));
            Assert.That(aes.Used.Count + aes.Skipped, Is.EqualTo(aes.Declared), "AES-GCM: every case used or skipped");
            Assert.That(chacha.Used.Count + chacha.Skipped, Is.EqualTo(chacha.Declared), "ChaCha20: every case used or skipped");
            Assert.That(ed.Used.Count + ed.Skipped, Is.EqualTo(ed.Declared), "Ed25519: every case used");
        });
    }

    private static int Count(List<AeadCase> cases, string result) => cases.Count(c => c.Result == result);

    [Test]
    public void WrongKeyLengthIsRefusedAtConstruction()
    {
        Assert.That(() => new AeadCipher(AeadAlgorithm.Aes256Gcm, new byte[16]),
            Throws.InstanceOf<CryptoTensorsException>().With.Property(nameof(CryptoTensorsException.Code)).EqualTo(ErrorCode.InvalidKey));
        Assert.That(() => new AeadCipher(AeadAlgorithm.Aes128Gcm, new byte[24]),
            Throws.InstanceOf<CryptoTensorsException>().With.Property(nameof(CryptoTensorsException.Code)).EqualTo(ErrorCode.InvalidKey));
        Assert.That(() => new AeadCipher(AeadAlgorithm.ChaCha20Poly1305, new byte[16]),
            Throws.InstanceOf<CryptoTensorsException>().With.Property(nameof(CryptoTensorsException.Code)).EqualTo(ErrorCode.InvalidKey));
    }

    [TestCase(11, 16)]
    [TestCase(13, 16)]
    [TestCase(12, 15)]
    [TestCase(12, 12)]
    public void WrongNonceOrTagLengthFailsAndZeroes(int nonceLength, int tagLength)
    {
        using var cipher = new AeadCipher(AeadAlgorithm.Aes256Gcm, new byte[32]);
        var pt = Enumerable.Repeat((byte)0x5A, 8).ToArray();
        Assert.That(cipher.TryDecrypt(new byte[nonceLength], new byte[8], new byte[tagLength], pt), Is.False);
        Assert.That(pt, Is.All.EqualTo((byte)0));
    }

    [Test]
    public void Ed25519VerifiersAgreeOnRandomSignaturesAndTampering()
    {
        if (!OperatingSystem.IsLinux()) Assert.Ignore("libcrypto.so.3 is looked for on Linux only");
        Assert.That(OpenSslEd25519.Available, Is.True, "OpenSSL (which .NET itself needs on Linux) verifies here");
        var rng = new Random(23);
        for (var i = 0; i < 200; i++)
        {
            var seed = new byte[32];
            rng.NextBytes(seed);
            var pk = new byte[Ed25519.PublicKeySize];
            Ed25519.DerivePublicKey(seed, pk);
            var msg = new byte[rng.Next(0, 3000)];
            rng.NextBytes(msg);
            var sig = new byte[Ed25519.SignatureSize];
            Ed25519.Sign(seed, msg, sig);
            if (i % 2 == 1)
            {
                // Tamper with one bit of the signature, the key or the message.
                var (target, at) = (i % 3) switch { 0 => (sig, rng.Next(64)), 1 => (pk, rng.Next(32)), _ => (msg, msg.Length == 0 ? -1 : rng.Next(msg.Length)) };
                if (at >= 0) target[at] ^= (byte)(1 << rng.Next(8));
                else msg = [1];
            }
            var sodium = Ed25519.Verify(pk, msg, sig, Ed25519Verifier.Sodium);
            Assert.That(Ed25519.Verify(pk, msg, sig, Ed25519Verifier.OpenSsl), Is.EqualTo(sodium), $"case {i}");
            Assert.That(sodium, Is.EqualTo(i % 2 == 0), $"case {i}");
        }
    }

    [Test]
    public void Ed25519RejectsMalformedLengths()
    {
        var c = LoadEd25519().Used.First(x => x.Result == "valid");
        Assert.Multiple(() =>
        {
            Assert.That(Ed25519.Verify(c.PublicKey.AsSpan(0, 31), c.Msg, c.Sig), Is.False);
            Assert.That(Ed25519.Verify([.. c.PublicKey, 0], c.Msg, c.Sig), Is.False);
            Assert.That(Ed25519.Verify(c.PublicKey, c.Msg, c.Sig.AsSpan(0, 63)), Is.False);
            Assert.That(Ed25519.Verify(c.PublicKey, c.Msg, [.. c.Sig, 0]), Is.False);
            Assert.That(Ed25519.Verify(c.PublicKey, [.. c.Msg, 0], c.Sig), Is.False);
        });
    }
    [Test]
    public void Ed25519FixedTestKeyOfTheReference()
    {
        // FORMAT.md §9.1: x is the public key of d.
        var d = Convert.FromBase64String("uTKTjQL6pX1Tqb7Hpor4A1s+TdgHReQEITZWWAf7DIc=");
        var x = Convert.FromBase64String("xkqFcGjXCBMk75q0259N1ggRJsqc+FTAiXMuKX72fd8=");
        var pk = new byte[Ed25519.PublicKeySize];
        Ed25519.DerivePublicKey(d, pk);
        Assert.That(pk, Is.EqualTo(x));
        var msg = "{\"__metadata__\":{}}"u8.ToArray();
        var sig = new byte[Ed25519.SignatureSize];
        Ed25519.Sign(d, msg, sig);
        Assert.That(Ed25519.Verify(x, msg, sig), Is.True);
        sig[0] ^= 1;
        Assert.That(Ed25519.Verify(x, msg, sig), Is.False);
    }
}
