using CryptoTensors.Gpu.Crypto;
using CryptoTensors.Gpu.Format;
using CryptoTensors.Gpu.Keys;
using CryptoTensors.Gpu.Reading;
using CryptoTensors.Gpu.Writing;

namespace CryptoTensors.Gpu.Tests.Keys;

[NonParallelizable]
public class KeyTests
{
    [Test]
    public void JwksAreWrittenInTheReferenceForm()
    {
        using var m = MasterKey.FromBytes(Convert.FromBase64String("L+xl38kCEteXk+6Tm1mzu5JvFriVibzAsgpYX2WmAgA="), AeadAlgorithm.Aes256Gcm, "test-enc-key");
        Assert.That(Jwk.Write(m), Is.EqualTo("{\"kty\":\"oct\",\"alg\":\"aes256gcm\",\"kid\":\"test-enc-key\",\"k\":\"L+xl38kCEteXk+6Tm1mzu5JvFriVibzAsgpYX2WmAgA=\"}"));
        using var s = SigningKey.FromSeed(Convert.FromBase64String("uTKTjQL6pX1Tqb7Hpor4A1s+TdgHReQEITZWWAf7DIc="), "test-sign-key");
        Assert.That(Jwk.Write(s.Public), Is.EqualTo("{\"kty\":\"okp\",\"alg\":\"ed25519\",\"kid\":\"test-sign-key\",\"x\":\"xkqFcGjXCBMk75q0259N1ggRJsqc+FTAiXMuKX72fd8=\"}"));
        Assert.That(Jwk.Write(s), Does.EndWith(",\"d\":\"uTKTjQL6pX1Tqb7Hpor4A1s+TdgHReQEITZWWAf7DIc=\"}"));
    }

    [Test]
    public void StandardJwksAreAccepted()
    {
        // RFC 8037 style: OKP + crv Ed25519, base64url without padding; RFC 7517 oct with a JOSE alg; a JWK Set.
        using var s = SigningKey.FromSeed(Convert.FromBase64String("uTKTjQL6pX1Tqb7Hpor4A1s+TdgHReQEITZWWAf7DIc="));
        var x = Convert.ToBase64String(s.Public.PublicKey).TrimEnd('=').Replace('+', '-').Replace('/', '_');
        var v = Jwk.ReadVerificationKey($"{{\"kty\":\"OKP\",\"crv\":\"Ed25519\",\"x\":\"{x}\"}}");
        Assert.That(v.PublicKey.ToArray(), Is.EqualTo(s.Public.PublicKey.ToArray()));
        Assert.That(v.Alg, Is.EqualTo("ed25519"));
        var k = Convert.ToBase64String(new byte[16] { 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 0xfb }).TrimEnd('=').Replace('+', '-').Replace('/', '_');
        using var m = Jwk.ReadMasterKey($"{{\"keys\":[{{\"kty\":\"oct\",\"alg\":\"A128GCM\",\"kid\":\"a\",\"k\":\"{k}\"}}]}}", "a");
        Assert.That((m.Algorithm, m.Alg), Is.EqualTo((AeadAlgorithm.Aes128Gcm, "aes128gcm")), "JOSE names are written in the reference's spelling");
    }

    [TestCase("{\"kty\":\"RSA\",\"alg\":\"aes256gcm\",\"k\":\"AAAA\"}")]
    [TestCase("{\"kty\":\"oct\",\"k\":\"L+xl38kCEteXk+6Tm1mzu5JvFriVibzAsgpYX2WmAgA=\"}")]
    [TestCase("{\"kty\":\"oct\",\"alg\":\"A256KW\",\"k\":\"L+xl38kCEteXk+6Tm1mzu5JvFriVibzAsgpYX2WmAgA=\"}")]
    [TestCase("{\"kty\":\"oct\",\"alg\":\"aes128gcm\",\"k\":\"L+xl38kCEteXk+6Tm1mzu5JvFriVibzAsgpYX2WmAgA=\"}")]
    [TestCase("{\"kty\":\"oct\",\"alg\":\"aes256gcm\",\"k\":\"not base64!\"}")]
    [TestCase("{\"kty\":\"oct\",\"alg\":\"aes256gcm\"}")]
    [TestCase("not json")]
    public void BadMasterKeysAreKeyErrorsThatNeverEchoTheKey(string jwk)
    {
        var ex = Assert.Throws<KeyException>(() => Jwk.ReadMasterKey(jwk).Dispose());
        Assert.That(ex!.Message, Does.Not.Contain("L+xl38kCEteXk"));
    }

    [Test]
    public void MismatchedEd25519PairIsRefused()
    {
        using var a = SigningKey.Generate();
        using var b = SigningKey.Generate();
        var x = Convert.ToBase64String(a.Public.PublicKey);
        var d = Jwk.Write(b).Split("\"d\":\"")[1].TrimEnd('}', '"');
        Assert.Throws<KeyException>(() => Jwk.ReadSigningKey($"{{\"kty\":\"okp\",\"alg\":\"ed25519\",\"x\":\"{x}\",\"d\":\"{d}\"}}"));
    }

    [Test]
    public void ToStringNeverShowsKeyBytes()
    {
        using var m = MasterKey.Generate(kid: "kid-1");
        using var s = SigningKey.Generate("kid-2");
        var jwk = Jwk.Write(m);
        var k = jwk.Split("\"k\":\"")[1].TrimEnd('}', '"');
        Assert.That(m.ToString(), Is.EqualTo("MasterKey(aes256gcm, kid=kid-1)"));
        Assert.That(m.ToString() + s + s.Public, Does.Not.Contain(k));
    }

    [Test]
    public void RegistryTriesProvidersByPriorityAndReplacesByName()
    {
        var reg = new KeyRegistry().Register(new EnvKeyProvider()).Register(new FileKeyProvider()).Register(new DirectKeyProvider());
        Assert.That(reg.Providers.Select(p => p.Priority), Is.EqualTo(new[] { 100, 10, 0 }));
        reg.Register(new FileKeyProvider("/nonexistent"));
        Assert.That(reg.Providers.Select(p => p.Name), Is.EqualTo(new[] { "DirectKeyProvider", "file", "env" }));
        Assert.That(reg.Remove("file"), Is.True);
        Assert.Throws<KeyException>(() => reg.GetMasterKey(null, "none"));
    }

    [Test]
    public void DirectProviderSelectsByKidAndDefault()
    {
        using var p = new DirectKeyProvider();
        p.Add(MasterKey.Generate(kid: "a")).Add(MasterKey.Generate(AeadAlgorithm.Aes128Gcm, kid: "b"));
        var reg = new KeyRegistry().Register(p);
        using (var b = reg.GetMasterKey(null, "b")) Assert.That(b.Algorithm, Is.EqualTo(AeadAlgorithm.Aes128Gcm));
        using (var d = reg.GetMasterKey(null, null)) Assert.That(d.Kid, Is.EqualTo("a"));
        Assert.That(p.Matches(null, "c"), Is.False);
    }

    [Test]
    public void EnvironmentProviderSuppliesKeysByKid()
    {
        using var tmp = new TempDir();
        using var m = MasterKey.Generate(kid: "env-enc");
        using var s = SigningKey.Generate("env-sign");
        using var other = MasterKey.Generate(kid: "other");
        var path = tmp.File("m.ct");
        CryptoTensorsWriter.Write(path, TestModels.EveryDtype(), new WriterOptions { MasterKey = m, SigningKey = s });
        var old = Environment.GetEnvironmentVariable(EnvKeyProvider.VariableName);
        try
        {
            Environment.SetEnvironmentVariable(EnvKeyProvider.VariableName, $"{{\"keys\":[{Jwk.Write(other)},{Jwk.Write(m)},{Jwk.Write(s.Public)}]}}");
            using var r = CryptoTensorsReader.Open(path);
            Assert.That(r.ReadTensor("t.f32"), Has.Length.EqualTo(60));
        }
        finally
        {
            Environment.SetEnvironmentVariable(EnvKeyProvider.VariableName, old);
        }
    }

    [Test]
    public void AHeaderKeyLocationIsNotFollowedUnlessTheCallerOptsIn()
    {
        using var tmp = new TempDir();
        // An attacker ships a key file and points the header at it.
        using var m = MasterKey.Generate(kid: "attacker", jku: "file://" + tmp.File("keys.jwk"));
        using var s = SigningKey.Generate("attacker-s", "file://" + tmp.File("keys.jwk"));
        File.WriteAllText(tmp.File("keys.jwk"), $"{{\"keys\":[{Jwk.Write(m)},{Jwk.Write(s.Public)}]}}");
        var path = tmp.File("m.ct");
        CryptoTensorsWriter.Write(path, TestModels.EveryDtype(), new WriterOptions { MasterKey = m, SigningKey = s });
        var old = Environment.GetEnvironmentVariable(EnvKeyProvider.VariableName);
        Environment.SetEnvironmentVariable(EnvKeyProvider.VariableName, null);
        try
        {
            var ex = Assert.Throws<KeyException>(() => CryptoTensorsReader.Open(path).Dispose());
            Assert.That(ex!.Code, Is.EqualTo(ErrorCode.MissingMasterKey));
            using var r = CryptoTensorsReader.Open(path, new ReaderOptions { FollowHeaderKeyLocations = true });
            Assert.That(r.IsEncrypted, Is.True);
        }
        finally
        {
            Environment.SetEnvironmentVariable(EnvKeyProvider.VariableName, old);
        }
    }

    [Test]
    public void FileProviderResolvesAbsoluteHomeAndSearchPathLocations()
    {
        var p = new FileKeyProvider("/srv/keys");
        Assert.That(p.Resolve("file:///abs/k.jwk"), Is.EqualTo(new[] { "/abs/k.jwk" }));
        Assert.That(p.Resolve("file://~/k.jwk").Single(), Does.EndWith("/k.jwk").And.Not.Contain("~"));
        Assert.That(p.Resolve("file://rel/k.jwk"), Is.EqualTo(new[] { "/srv/keys/rel/k.jwk" }));
        Assert.That(new FileKeyProvider().Resolve("file://rel/k.jwk"), Is.Empty, "relative locations need a search path");
        Assert.That(p.Resolve(null), Is.EqualTo(new[] { "/srv/keys/keys.jwk" }));
        Assert.That(p.Matches("https://x/k.jwk", null), Is.False);
        Assert.That(p.Matches("FILE:///x", null), Is.True);
    }

    [Test]
    public void SecretBuffersAreZeroedOnDispose()
    {
        var m = MasterKey.Generate();
        var span = System.Runtime.InteropServices.MemoryMarshal.CreateReadOnlySpan(ref System.Runtime.InteropServices.MemoryMarshal.GetReference(m.Bytes), 32);
        Assert.That(span.ToArray(), Is.Not.All.EqualTo(0));
        m.Dispose();
        Assert.That(span.ToArray(), Is.All.EqualTo(0));
        Assert.Throws<ObjectDisposedException>(() => _ = m.Bytes.Length);
    }
}
