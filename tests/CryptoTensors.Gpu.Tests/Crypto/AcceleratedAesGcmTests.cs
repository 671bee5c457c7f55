using System.Security.Cryptography;
using CryptoTensors.Gpu.Crypto;

namespace CryptoTensors.Gpu.Tests.Crypto;

/// <summary>
/// The accelerated AES-GCM backend (ipsec-mb VAES, <c>libctaesgcm.so</c>) behind <see cref="AeadCipher"/>: every
/// Wycheproof AES-GCM case, cross-checks with the BCL over many lengths, failure semantics, backend selection and
/// the start-up self-test. Where the backend is unavailable the tests are ignored with the backend's own reason.
/// </summary>
public class AcceleratedAesGcmTests
{
    private static void RequireIpsecMb()
    {
        if (AeadBackends.IpsecMbUnavailableReason is { } reason)
            Assert.Ignore("ipsec-mb AES-GCM backend unavailable: " + reason);
    }

    [TestCaseSource(typeof(WycheproofTests), nameof(WycheproofTests.AesGcmCases))]
    public void Wycheproof(WycheproofTests.AeadCase c)
    {
        RequireIpsecMb();
        WycheproofTests.CheckAead(c, AeadBackend.IpsecMb);
    }

    /// <summary>
    /// A re-keyed instance (as the loader's per-worker cache re-keys one cipher per data key) is the cipher of its new key:
    /// every Wycheproof AES-GCM case of a key size through one instance, re-keyed case by case, in file order and reversed.
    /// </summary>
    [TestCase(AeadAlgorithm.Aes128Gcm)]
    [TestCase(AeadAlgorithm.Aes256Gcm)]
    public void ARekeyedCipherPassesWycheproof(AeadAlgorithm algorithm)
    {
        RequireIpsecMb();
        var cases = WycheproofTests.AesGcmCases().Select(d => (WycheproofTests.AeadCase)d.Arguments[0]!)
            .Where(c => c.Result is "valid" or "invalid" && c.Algorithm == algorithm && c.Key.Length == algorithm.KeySize() && c.Iv.Length == AeadAlgorithms.NonceSize && c.Tag.Length == AeadAlgorithms.TagSize)
            .ToList();
        Assert.That(cases, Has.Count.GreaterThan(20));
        using var cipher = new AeadCipher(algorithm, new byte[algorithm.KeySize()], AeadBackend.IpsecMb);
        foreach (var c in cases.Concat(Enumerable.Reverse(cases)))
        {
            Assert.That(cipher.TryRekey(c.Key), Is.True, "ipsec-mb re-keys in place");
            var pt = Enumerable.Repeat((byte)0xA5, c.Ct.Length).ToArray();
            var ok = cipher.TryDecrypt(c.Iv, c.Ct, c.Tag, pt, c.Aad);
            Assert.That(ok, Is.EqualTo(c.Result == "valid"), $"tc {c.TcId} ({c.Comment})");
            Assert.That(pt, ok ? Is.EqualTo(c.Msg) : Is.All.EqualTo((byte)0), $"tc {c.TcId} output");
            if (!ok) continue;
            var ct = new byte[c.Msg.Length];
            var tag = new byte[AeadAlgorithms.TagSize];
            cipher.Encrypt(c.Iv, c.Msg, ct, tag, c.Aad);
            Assert.That((ct, tag), Is.EqualTo((c.Ct, c.Tag)), $"tc {c.TcId} seal");
        }
    }

    [Test]
    public void RekeyRefusesAWrongKeyLengthAndKeepsTheKey()
    {
        RequireIpsecMb();
        var key = Enumerable.Range(0, 32).Select(i => (byte)i).ToArray();
        using var cipher = new AeadCipher(AeadAlgorithm.Aes256Gcm, key, AeadBackend.IpsecMb);
        var nonce = new byte[12];
        var ct = new byte[40];
        var tag = new byte[16];
        cipher.Encrypt(nonce, new byte[40], ct, tag);
        var ex = Assert.Throws<KeyException>(() => cipher.TryRekey(new byte[16]))!;
        Assert.That(ex.Code, Is.EqualTo(ErrorCode.InvalidKey));
        Assert.That(cipher.TryDecrypt(nonce, ct, tag, new byte[40]), Is.True, "the old key is still in place");
        using var bcl = new AeadCipher(AeadAlgorithm.Aes256Gcm, key, AeadBackend.Bcl);
        Assert.That(bcl.TryRekey(key), Is.False, "the BCL ciphers cannot re-key in place; the caller makes a new one");
    }

    private static IEnumerable<int> Lengths()
    {
        int[] fixedLengths = [0, 1, 15, 16, 17, 31, 32, 33, 63, 64, 65, 127, 128, 129, 255, 256, 257, 767, 768, 769, 1023, 1024,
            4095, 4096, 4099, 65536 + 13, (2 << 20) - 1, 2 << 20, (2 << 20) + 1, (5 << 20) - 3];
        var random = new Random(20240611);
        return fixedLengths.Concat(Enumerable.Range(0, 12).Select(_ => random.Next(0, 5 << 20)));
    }

    private static IEnumerable<TestCaseData> CrossCheckCases()
    {
        var i = 0;
        foreach (var length in Lengths())
        {
            var algorithm = i % 2 == 0 ? AeadAlgorithm.Aes256Gcm : AeadAlgorithm.Aes128Gcm;
            var aadLength = i % 3 == 0 ? 0 : i % 3 == 1 ? 13 : 300;
            yield return new TestCaseData(algorithm, length, aadLength, i++).SetArgDisplayNames($"{algorithm} len {length} aad {aadLength}");
        }
    }

    [TestCaseSource(nameof(CrossCheckCases))]
    public void AgreesWithBclBothWays(AeadAlgorithm algorithm, int length, int aadLength, int seed)
    {
        RequireIpsecMb();
        var random = new Random(seed);
        var key = new byte[algorithm.KeySize()];
        var nonce = new byte[AeadAlgorithms.NonceSize];
        var aad = new byte[aadLength];
        var message = new byte[length];
        random.NextBytes(key);
        random.NextBytes(nonce);
        random.NextBytes(aad);
        random.NextBytes(message);
        using var fast = new AeadCipher(algorithm, key, AeadBackend.IpsecMb);
        using var bcl = new AeadCipher(algorithm, key, AeadBackend.Bcl);
        Assert.That((fast.Backend, bcl.Backend), Is.EqualTo((AeadBackend.IpsecMb, AeadBackend.Bcl)));

        // Sealed by the BCL (out of place), opened by ipsec-mb out of place and in place.
        var ct = new byte[length];
        var tag = new byte[AeadAlgorithms.TagSize];
        bcl.Encrypt(nonce, message, ct, tag, aad);
        var pt = new byte[length];
        Assert.That(fast.TryDecrypt(nonce, ct, tag, pt, aad), Is.True, "ipsec-mb opens the BCL's ciphertext");
        Assert.That(pt.AsSpan().SequenceEqual(message), Is.True, "ipsec-mb plaintext");
        var buffer = (byte[])ct.Clone();
        Assert.That(fast.TryDecrypt(nonce, buffer, tag, buffer, aad), Is.True, "ipsec-mb opens in place");
        Assert.That(buffer.AsSpan().SequenceEqual(message), Is.True, "ipsec-mb in-place plaintext");

        // Sealed by ipsec-mb in place and out of place: the same bytes, opened by the BCL.
        var tag2 = new byte[AeadAlgorithms.TagSize];
        fast.Encrypt(nonce, buffer, buffer, tag2, aad);
        Assert.That(buffer.AsSpan().SequenceEqual(ct) && tag2.AsSpan().SequenceEqual(tag), Is.True, "ipsec-mb in-place seal = BCL seal");
        var ct2 = new byte[length];
        fast.Encrypt(nonce, message, ct2, tag2, aad);
        Assert.That(ct2.AsSpan().SequenceEqual(ct) && tag2.AsSpan().SequenceEqual(tag), Is.True, "ipsec-mb seal = BCL seal");
        Assert.That(bcl.TryDecrypt(nonce, ct2, tag2, ct2, aad), Is.True, "the BCL opens ipsec-mb's ciphertext");
        Assert.That(ct2.AsSpan().SequenceEqual(message), Is.True, "BCL plaintext");
    }

    [TestCase(0)]
    [TestCase(1)]
    [TestCase(2)]
    [TestCase(3)]
    public void TagMismatchFailsAndZeroes(int corrupt)
    {
        RequireIpsecMb();
        var key = RandomNumberGenerator.GetBytes(32);
        var nonce = RandomNumberGenerator.GetBytes(12);
        var aad = RandomNumberGenerator.GetBytes(20);
        var message = RandomNumberGenerator.GetBytes((1 << 20) + 7);
        using var cipher = new AeadCipher(AeadAlgorithm.Aes256Gcm, key, AeadBackend.IpsecMb);
        var ct = new byte[message.Length];
        var tag = new byte[16];
        cipher.Encrypt(nonce, message, ct, tag, aad);
        switch (corrupt)
        {
            case 0: tag[7] ^= 0x10; break;
            case 1: ct[^1] ^= 0x01; break;
            case 2: aad[0] ^= 0x80; break;
            default: nonce[11] ^= 0x02; break;
        }
        var pt = Enumerable.Repeat((byte)0xA5, ct.Length).ToArray();
        Assert.That(cipher.TryDecrypt(nonce, ct, tag, pt, aad), Is.False);
        Assert.That(pt.AsSpan().ContainsAnyExcept((byte)0), Is.False, "output zeroed");
        Assert.That(cipher.TryDecrypt(nonce, ct, tag, ct, aad), Is.False, "in place");
        Assert.That(ct.AsSpan().ContainsAnyExcept((byte)0), Is.False, "in-place buffer zeroed");
    }

    [TestCase(11, 16)]
    [TestCase(13, 16)]
    [TestCase(12, 15)]
    [TestCase(12, 12)]
    public void WrongNonceOrTagLength(int nonceLength, int tagLength)
    {
        RequireIpsecMb();
        using var cipher = new AeadCipher(AeadAlgorithm.Aes128Gcm, new byte[16], AeadBackend.IpsecMb);
        var pt = Enumerable.Repeat((byte)0x5A, 8).ToArray();
        Assert.That(cipher.TryDecrypt(new byte[nonceLength], new byte[8], new byte[tagLength], pt), Is.False);
        Assert.That(pt, Is.All.EqualTo((byte)0));
        Assert.That(() => cipher.Encrypt(new byte[nonceLength], new byte[8], new byte[8], new byte[tagLength]), Throws.ArgumentException);
    }

    [Test]
    public void MisuseIsRefused()
    {
        RequireIpsecMb();
        var cipher = new AeadCipher(AeadAlgorithm.Aes256Gcm, new byte[32], AeadBackend.IpsecMb);
        var buffer = new byte[64];
        var tag = new byte[16];
        Assert.That(() => cipher.Encrypt(new byte[12], buffer.AsSpan(0, 32), buffer.AsSpan(8, 32), tag), Throws.ArgumentException, "partial overlap");
        Assert.That(() => cipher.Encrypt(new byte[12], buffer.AsSpan(0, 32), buffer.AsSpan(0, 31), tag), Throws.ArgumentException, "length mismatch");
        Assert.That(() => cipher.TryDecrypt(new byte[12], buffer.AsSpan(0, 32), tag, buffer.AsSpan(0, 31)), Throws.ArgumentException, "length mismatch");
        cipher.Encrypt(new byte[12], buffer.AsSpan(0, 32), buffer.AsSpan(32, 32), tag); // adjacent is fine
        cipher.Dispose();
        Assert.That(() => cipher.Encrypt(new byte[12], buffer, buffer, tag), Throws.InstanceOf<ObjectDisposedException>());
        Assert.That(() => cipher.TryDecrypt(new byte[12], buffer, tag, buffer), Throws.InstanceOf<ObjectDisposedException>());
    }

    [Test]
    public void BackendSelection()
    {
        var saved = AeadBackends.Default;
        try
        {
            AeadBackends.Default = AeadBackend.Bcl;
            using (var c = new AeadCipher(AeadAlgorithm.Aes256Gcm, new byte[32])) Assert.That(c.Backend, Is.EqualTo(AeadBackend.Bcl));
            Assert.That(AeadBackends.ActiveName(), Is.EqualTo("bcl"));

            AeadBackends.Default = AeadBackend.Auto;
            var expected = AeadBackends.IpsecMbAvailable ? AeadBackend.IpsecMb : AeadBackend.Bcl;
            using (var c = new AeadCipher(AeadAlgorithm.Aes128Gcm, new byte[16])) Assert.That(c.Backend, Is.EqualTo(expected));
            Assert.That(AeadBackends.ActiveName(AeadAlgorithm.Aes128Gcm), Is.EqualTo(expected.Name()));
            using (var c = new AeadCipher(AeadAlgorithm.ChaCha20Poly1305, new byte[32], AeadBackend.IpsecMb))
                Assert.That(c.Backend, Is.EqualTo(AeadBackend.Bcl), "ChaCha20-Poly1305 always uses the BCL");

            if (AeadBackends.IpsecMbAvailable)
            {
                AeadBackends.Default = AeadBackend.IpsecMb;
                using var c = new AeadCipher(AeadAlgorithm.Aes256Gcm, new byte[32]);
                Assert.That(c.Backend, Is.EqualTo(AeadBackend.IpsecMb));
                Assert.That(AeadBackends.IpsecMbDescription, Does.Contain("vaes"));
                TestContext.Out.WriteLine($"ipsec-mb backend: {AeadBackends.IpsecMbDescription}");
            }
            else
            {
                Assert.That(() => new AeadCipher(AeadAlgorithm.Aes256Gcm, new byte[32], AeadBackend.IpsecMb),
                    Throws.InstanceOf<CryptoTensorsException>().With.Message.Contains(AeadBackends.IpsecMbUnavailableReason!));
                Assert.Ignore("ipsec-mb AES-GCM backend unavailable: " + AeadBackends.IpsecMbUnavailableReason);
            }
        }
        finally
        {
            AeadBackends.Default = saved;
        }
    }

    [Test]
    public void BackendNamesParse()
    {
        Assert.Multiple(() =>
        {
            foreach (var (text, backend) in new[] { ("auto", AeadBackend.Auto), ("BCL", AeadBackend.Bcl), ("ipsec-mb", AeadBackend.IpsecMb),
                         ("ipsecmb", AeadBackend.IpsecMb), (" ipsec-mb-vaes ", AeadBackend.IpsecMb) })
            {
                Assert.That(AeadBackends.TryParse(text, out var parsed), Is.True, text);
                Assert.That(parsed, Is.EqualTo(backend), text);
            }
            Assert.That(AeadBackends.TryParse("openssl", out _), Is.False);
            Assert.That(AeadBackends.TryParse(null, out _), Is.False);
            Assert.That(AeadBackend.IpsecMb.Name(), Is.EqualTo("ipsec-mb-vaes"));
            Assert.That(AeadBackend.Bcl.Name(), Is.EqualTo("bcl"));
        });
    }

    [Test]
    public void SelfTestPassesWithTheRealVectors()
    {
        RequireIpsecMb();
        Assert.That(IpsecMbAesGcm.SelfTest(IpsecMbAesGcm.SelfTestVectors), Is.Null);
    }

    [TestCase(1, "tag", "wrong tag")]
    [TestCase(3, "ciphertext", "wrong ciphertext")]
    [TestCase(5, "tag", "wrong tag")] // a long message: the bulk code path
    public void FailedSelfTestMakesTheBackendUnavailable(int index, string field, string expected)
    {
        RequireIpsecMb();
        static string Flip(string hex) => (hex[0] == '0' ? "1" : "0") + hex[1..];
        var vectors = IpsecMbAesGcm.SelfTestVectors.ToArray();
        var v = vectors[index];
        var corrupted = field == "tag" ? v with { Tag = Flip(v.Tag) } : v with { Ciphertext = Flip(v.Ciphertext!) };
        vectors[index] = corrupted;
        var saved = AeadBackends.Default;
        try
        {
            IpsecMbAesGcm.ResetForTests(vectors);
            AeadBackends.Default = AeadBackend.Auto;
            var reason = AeadBackends.IpsecMbUnavailableReason;
            Assert.That(AeadBackends.IpsecMbAvailable, Is.False);
            Assert.That(reason, Does.Contain("self-test").And.Contain($"{corrupted.Name}: {expected}"));
            using (var c = new AeadCipher(AeadAlgorithm.Aes256Gcm, new byte[32])) Assert.That(c.Backend, Is.EqualTo(AeadBackend.Bcl), "Auto falls back");
            Assert.That(() => new AeadCipher(AeadAlgorithm.Aes256Gcm, new byte[32], AeadBackend.IpsecMb),
                Throws.InstanceOf<CryptoTensorsException>().With.Message.Contains(reason!));
        }
        finally
        {
            AeadBackends.Default = saved;
            IpsecMbAesGcm.ResetForTests();
        }
        Assert.That(AeadBackends.IpsecMbAvailable, Is.True, "the real self-test passes again");
    }
}
