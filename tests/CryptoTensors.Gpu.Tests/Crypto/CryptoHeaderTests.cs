using System.Text.Json;
using CryptoTensors.Gpu.Crypto;
using CryptoTensors.Gpu.Format;

namespace CryptoTensors.Gpu.Tests.Crypto;

/// <summary>The reserved <c>__metadata__</c> fields (FORMAT.md §2.2-§2.4): exact serialization and every refusal.</summary>
public class CryptoHeaderTests
{
    private const string V2 =
        """{"chunk_size":2097152,"enc":{"alg":"aes256gcm","jku":"https://keys.example/jwks","kid":"test-enc-key","kty":"oct"},"sign":{"alg":"ed25519","kid":"test-sign-key","kty":"okp"},"version":"2"}""";

    private const string V1 =
        """{"enc":{"alg":"chacha20poly1305","kid":"k1","kty":"oct"},"sign":{"alg":"ed25519","kty":"okp"},"version":"1"}""";

    private const string Enc = """{"alg":"aes256gcm","kty":"oct"}""";
    private const string Sign = """{"alg":"ed25519","kty":"okp"}""";

    private static string Keys(string enc = Enc, string sign = Sign, string version = "\"2\"", string? chunk = null)
        => "{" + (chunk is null ? "" : $"\"chunk_size\":{chunk},") + $"\"enc\":{enc},\"sign\":{sign},\"version\":{version}" + "}";

    private static CryptoTensorsException Refused(TestDelegate action)
    {
        var ex = Assert.Throws(Is.InstanceOf<CryptoTensorsException>(), action);
        return (CryptoTensorsException)ex!;
    }

    private static void AssertCode(TestDelegate action, ErrorCode code, string? field = null)
    {
        var ex = Refused(action);
        Assert.That(ex.Code, Is.EqualTo(code), ex.Message);
        Assert.That(ex.Kind, Is.EqualTo(CryptoTensorsException.KindOf(code)));
        if (field is not null) Assert.That(ex.Field, Is.EqualTo(field));
    }

    // ---- __crypto_keys__ ------------------------------------------------------------------------------------------

    [Test]
    public void SerializeV2Exactly()
    {
        var f = new CryptoKeysField("2", 2097152, true,
            new KeyDescriptor("oct", "aes256gcm", "test-enc-key", "https://keys.example/jwks"),
            new KeyDescriptor("okp", "ed25519", "test-sign-key", null));
        Assert.That(f.Serialize(), Is.EqualTo(V2));
    }

    [Test]
    public void SerializeV1Exactly()
    {
        var f = new CryptoKeysField("1", null, false, new KeyDescriptor("oct", "chacha20poly1305", "k1", null),
            new KeyDescriptor("okp", "ed25519", null, null));
        Assert.That(f.Serialize(), Is.EqualTo(V1));
    }

    [Test]
    public void ParseV2()
    {
        var f = CryptoKeysField.Parse(V2);
        Assert.That(f.Version, Is.EqualTo("2"));
        Assert.That(f.ChunkSize, Is.EqualTo(2097152));
        Assert.That(f.WrittenChunkSize, Is.True);
        Assert.That(f.Enc, Is.EqualTo(new KeyDescriptor("oct", "aes256gcm", "test-enc-key", "https://keys.example/jwks")));
        Assert.That(f.Sign, Is.EqualTo(new KeyDescriptor("okp", "ed25519", "test-sign-key", null)));
        Assert.That(f.Serialize(), Is.EqualTo(V2));
    }

    [Test]
    public void ParseV1()
    {
        var f = CryptoKeysField.Parse(V1);
        Assert.That(f.Version, Is.EqualTo("1"));
        Assert.That(f.ChunkSize, Is.Null, "v1 without chunk_size is monolithic");
        Assert.That(f.WrittenChunkSize, Is.False);
        Assert.That(f.Enc, Is.EqualTo(new KeyDescriptor("oct", "chacha20poly1305", "k1", null)));
        Assert.That(f.Sign, Is.EqualTo(new KeyDescriptor("okp", "ed25519", null, null)));
        Assert.That(f.Serialize(), Is.EqualTo(V1));
    }

    [Test]
    public void ParseIgnoresKeyOrderWhitespaceAndUnknownFields()
    {
        const string json = """ { "version" : "2", "sign": {"kty":"okp","crv":"Ed25519","alg":"ED25519"}, "extra": [1,{}], "enc":{"kid":"e","kty":"oct","alg":"AES-128-GCM","use":"enc"}, "chunk_size": 1024 } """;
        var f = CryptoKeysField.Parse(json);
        Assert.That(f.ChunkSize, Is.EqualTo(1024));
        Assert.That(f.Serialize(), Is.EqualTo("""{"chunk_size":1024,"enc":{"alg":"AES-128-GCM","kid":"e","kty":"oct"},"sign":{"alg":"ED25519","kty":"okp"},"version":"2"}"""),
            "the alg spelling is kept as written");
    }

    [Test]
    public void MissingChunkSizeInV2DefaultsTo2MiB()
    {
        var f = CryptoKeysField.Parse(Keys(version: "\"2\""));
        Assert.That(f.ChunkSize, Is.EqualTo(2097152));
        Assert.That(f.WrittenChunkSize, Is.False);
    }

    [Test]
    public void V1WithChunkSizeIsChunked()
    {
        var f = CryptoKeysField.Parse(Keys(version: "\"1\"", chunk: "4096"));
        Assert.That(f.Version, Is.EqualTo("1"));
        Assert.That(f.ChunkSize, Is.EqualTo(4096));
        Assert.That(f.WrittenChunkSize, Is.True);
    }

    [TestCase("1")]
    [TestCase("2097152")]
    [TestCase("2147483647")]
    public void ValidChunkSizes(string chunk)
        => Assert.That(CryptoKeysField.Parse(Keys(chunk: chunk)).ChunkSize, Is.EqualTo(long.Parse(chunk, System.Globalization.CultureInfo.InvariantCulture)));

    [TestCase("2", TestName = "version as number")]
    [TestCase("null", TestName = "version null")]
    [TestCase("[\"2\"]", TestName = "version array")]
    public void VersionNotAStringIsMissingVersion(string version)
        => AssertCode(() => CryptoKeysField.Parse(Keys(version: version)), ErrorCode.MissingVersion, ReservedFields.CryptoKeys);

    [Test]
    public void AbsentVersionIsMissingVersion()
        => AssertCode(() => CryptoKeysField.Parse($$"""{"enc":{{Enc}},"sign":{{Sign}}}"""), ErrorCode.MissingVersion, ReservedFields.CryptoKeys);

    [TestCase("\"3\"")]
    [TestCase("\"0\"")]
    [TestCase("\"\"")]
    [TestCase("\"v2\"")]
    [TestCase("\"2.0\"")]
    [TestCase("\" 2\"")]
    public void OtherVersionStringIsUnsupported(string version)
        => AssertCode(() => CryptoKeysField.Parse(Keys(version: version)), ErrorCode.UnsupportedVersion, ReservedFields.CryptoKeys);

    [TestCase("0")]
    [TestCase("-1")]
    [TestCase("1.5")]
    [TestCase("8.0")]
    [TestCase("1e3")]
    [TestCase("\"8\"")]
    [TestCase("null")]
    [TestCase("true")]
    [TestCase("18446744073709551616")]
    public void InvalidChunkSize(string chunk)
        => AssertCode(() => CryptoKeysField.Parse(Keys(chunk: chunk)), ErrorCode.InvalidChunkSize, ReservedFields.CryptoKeys);

    [TestCase("k")]
    [TestCase("x")]
    [TestCase("d")]
    public void KeyMaterialInEncDescriptorIsRefused(string secret)
        => AssertCode(() => CryptoKeysField.Parse(Keys(enc: $$"""{"alg":"aes256gcm","kty":"oct","{{secret}}":"AAAA"}""")), ErrorCode.KeyInHeader);

    [TestCase("k")]
    [TestCase("x")]
    [TestCase("d")]
    public void KeyMaterialInSignDescriptorIsRefused(string secret)
        => AssertCode(() => CryptoKeysField.Parse(Keys(sign: $$"""{"alg":"ed25519","kty":"okp","{{secret}}":"xkqFcGjXCBMk75q0259N1ggRJsqc+FTAiXMuKX72fd8="}""")), ErrorCode.KeyInHeader);

    [TestCase("""{"alg":"aes256gcm","kty":"okp"}""", Sign)]
    [TestCase("""{"alg":"aes256gcm","kty":"OCT"}""", Sign)]
    [TestCase("""{"alg":"aes256gcm"}""", Sign)]
    [TestCase("""{"alg":"aes256gcm","kty":1}""", Sign)]
    [TestCase(Enc, """{"alg":"ed25519","kty":"OKP"}""")]
    [TestCase(Enc, """{"alg":"ed25519","kty":"oct"}""")]
    [TestCase(Enc, """{"alg":"ed25519"}""")]
    public void WrongKtyIsInvalidCryptoField(string enc, string sign)
        => AssertCode(() => CryptoKeysField.Parse(Keys(enc: enc, sign: sign)), ErrorCode.InvalidCryptoField, ReservedFields.CryptoKeys);

    [TestCase("""{"alg":"A256GCM","kty":"oct"}""", Sign)]
    [TestCase("""{"alg":"aes192gcm","kty":"oct"}""", Sign)]
    [TestCase("""{"alg":"dir","kty":"oct"}""", Sign)]
    [TestCase("""{"alg":"aes_256_gcm","kty":"oct"}""", Sign)]
    [TestCase(Enc, """{"alg":"EdDSA","kty":"okp"}""")]
    [TestCase(Enc, """{"alg":"ed448","kty":"okp"}""")]
    [TestCase(Enc, """{"alg":"aes256gcm","kty":"okp"}""")]
    public void UnknownAlgIsUnsupported(string enc, string sign)
        => AssertCode(() => CryptoKeysField.Parse(Keys(enc: enc, sign: sign)), ErrorCode.UnsupportedAlgorithm, ReservedFields.CryptoKeys);

    [TestCase("aes256gcm")]
    [TestCase("AES-256-GCM")]
    [TestCase("aes128gcm")]
    [TestCase("Aes-128-Gcm")]
    [TestCase("chacha20poly1305")]
    [TestCase("ChaCha20-Poly1305")]
    public void AlgSpellingsOfTheReferenceAreAccepted(string alg)
        => Assert.That(CryptoKeysField.Parse(Keys(enc: $$"""{"alg":"{{alg}}","kty":"oct"}""")).Enc.Alg, Is.EqualTo(alg));

    [TestCase("""{"alg":"","kty":"oct"}""", Sign)]
    [TestCase("""{"kty":"oct"}""", Sign)]
    [TestCase("""{"alg":null,"kty":"oct"}""", Sign)]
    [TestCase("""{"alg":"aes256gcm","kty":"oct","kid":5}""", Sign)]
    [TestCase("""{"alg":"aes256gcm","kty":"oct","jku":{}}""", Sign)]
    [TestCase("\"aes256gcm\"", Sign)]
    [TestCase(Enc, "null")]
    public void MalformedDescriptorIsInvalidCryptoField(string enc, string sign)
        => AssertCode(() => CryptoKeysField.Parse(Keys(enc: enc, sign: sign)), ErrorCode.InvalidCryptoField, ReservedFields.CryptoKeys);

    [TestCase("""{"chunk_size":8,"chunk_size":8,"enc":{"alg":"aes256gcm","kty":"oct"},"sign":{"alg":"ed25519","kty":"okp"},"version":"2"}""", TestName = "duplicate chunk_size")]
    [TestCase("""{"enc":{"alg":"aes256gcm","kty":"oct"},"sign":{"alg":"ed25519","kty":"okp"},"version":"2","version":"2"}""", TestName = "duplicate version")]
    [TestCase("""{"enc":{"alg":"aes256gcm","kty":"oct"},"enc":{"alg":"aes256gcm","kty":"oct"},"sign":{"alg":"ed25519","kty":"okp"},"version":"2"}""", TestName = "duplicate enc")]
    [TestCase("""{"enc":{"alg":"aes256gcm","kty":"oct","kid":"a","kid":"b"},"sign":{"alg":"ed25519","kty":"okp"},"version":"2"}""", TestName = "duplicate kid inside enc")]
    [TestCase("""{"enc":{"alg":"aes256gcm","kty":"oct"},"sign":{"alg":"ed25519","alg":"ed25519","kty":"okp"},"version":"2"}""", TestName = "duplicate alg inside sign")]
    [TestCase("""{"enc":{"alg":"aes256gcm","kty":"oct"},"sign":{"alg":"ed25519","kty":"okp"},"version":"2","\u0076ersion":"2"}""", TestName = "duplicate version via escape")]
    public void DuplicateKeysAreInvalidCryptoField(string json)
        => AssertCode(() => CryptoKeysField.Parse(json), ErrorCode.InvalidCryptoField, ReservedFields.CryptoKeys);

    [TestCase("", TestName = "empty")]
    [TestCase("not json", TestName = "not JSON")]
    [TestCase("[]", TestName = "array")]
    [TestCase("\"{}\"", TestName = "string")]
    [TestCase("{\"version\":\"2\"", TestName = "truncated")]
    public void NotAnObjectIsRefused(string json)
    {
        var ex = Refused(() => CryptoKeysField.Parse(json));
        Assert.That(ex.Kind, Is.EqualTo(ErrorKind.CryptoHeader), ex.Code.ToString());
    }

    [Test]
    public void MissingEncOrSignIsInvalidCryptoField()
    {
        AssertCode(() => CryptoKeysField.Parse($$"""{"sign":{{Sign}},"version":"2"}"""), ErrorCode.InvalidCryptoField);
        AssertCode(() => CryptoKeysField.Parse($$"""{"enc":{{Enc}},"version":"2"}"""), ErrorCode.InvalidCryptoField);
    }

    // ---- __encryption__ -------------------------------------------------------------------------------------------

    private const string Wk = "3xi8fJjjMjidCSiFhUnEhF25frUhpa6jf0LjpaGtGlE=";
    private const string KeyIv = "oKGio6Slpqeoqaqr";
    private const string KeyTag = "6/1F10SpbBzdjLvg0ezGBw==";

    private static string Entry(string wrapped = $"\"{Wk}\"", string keyIv = $"\"{KeyIv}\"", string keyTag = $"\"{KeyTag}\"", string rest = "")
    {
        var parts = new List<string>();
        if (wrapped.Length > 0) parts.Add("\"wrapped_key\":" + wrapped);
        if (keyIv.Length > 0) parts.Add("\"key_iv\":" + keyIv);
        if (keyTag.Length > 0) parts.Add("\"key_tag\":" + keyTag);
        if (rest.Length > 0) parts.Add(rest);
        return "{\"w\":{" + string.Join(",", parts) + "}}";
    }

    [Test]
    public void EncryptionV1ParseAndSerializeExactly()
    {
        const string json = $$$"""{"a":{"wrapped_key":"{{{Wk}}}","key_iv":"{{{KeyIv}}}","key_tag":"{{{KeyTag}}}","iv":"wMHCw8TFxsfIycrL","tag":"8h3GdepjHOnyO8DKfQ3Jzg=="}}""";
        var entries = EncryptionEntry.Parse(json);
        Assert.That(entries.Keys, Is.EqualTo(new[] { "a" }));
        var e = entries["a"];
        Assert.That(e.WrappedKey, Has.Length.EqualTo(32));
        Assert.That(e.KeyIv, Is.EqualTo(Convert.FromHexString("a0a1a2a3a4a5a6a7a8a9aaab")));
        Assert.That(e.KeyTag, Has.Length.EqualTo(16));
        Assert.That(e.Iv, Is.EqualTo(Convert.FromHexString("c0c1c2c3c4c5c6c7c8c9cacb")));
        Assert.That(e.Tag, Has.Length.EqualTo(16));
        Assert.That(e.BaseIv, Is.Empty);
        Assert.That(e.Tags, Is.Empty);
        Assert.That(EncryptionEntry.Serialize(entries, chunked: false), Is.EqualTo(json));
    }

    [Test]
    public void EncryptionV2ParseAndSerializeExactly()
    {
        const string json = $$$"""{"a":{"wrapped_key":"{{{Wk}}}","key_iv":"{{{KeyIv}}}","key_tag":"{{{KeyTag}}}","base_iv":"sLGys7S1trf////+","tags":"a2Z8wi8pGr5KkP5Ov7C41wKXSuyb9nwoHcezEcboNBo="}}""";
        var entries = EncryptionEntry.Parse(json);
        var e = entries["a"];
        Assert.That(e.BaseIv, Is.EqualTo(Convert.FromHexString("b0b1b2b3b4b5b6b7fffffffe")));
        Assert.That(e.Tags, Has.Length.EqualTo(32));
        Assert.That(e.Iv, Is.Empty);
        Assert.That(e.Tag, Is.Empty);
        Assert.That(EncryptionEntry.Serialize(entries, chunked: true), Is.EqualTo(json));
    }

    [Test]
    public void EncryptionSerializeSortsNamesByUtf8Bytes()
    {
        EncryptionEntry E() => new() { WrappedKey = [1], KeyIv = [2], KeyTag = [3], Iv = [], Tag = [] };
        var entries = new Dictionary<string, EncryptionEntry> { ["\uFF5E"] = E(), ["\U0001F600"] = E(), ["b"] = E(), ["B"] = E(), ["a\n"] = E() };
        var json = EncryptionEntry.Serialize(entries, chunked: false);
        const string one = """{"wrapped_key":"AQ==","key_iv":"Ag==","key_tag":"Aw==","iv":"","tag":""}""";
        Assert.That(json, Is.EqualTo("{\"B\":" + one + ",\"a\\n\":" + one + ",\"b\":" + one + ",\"\uFF5E\":" + one + ",\"\U0001F600\":" + one + "}"));
        Assert.That(EncryptionEntry.Parse(json).Keys, Is.EquivalentTo(entries.Keys));
    }

    [Test]
    public void EmptyTensorV1EntryHasEmptyIvAndTag()
    {
        var e = EncryptionEntry.Parse(Entry(rest: "\"iv\":\"\",\"tag\":\"\""))["w"];
        Assert.That(e.Iv, Is.Empty);
        Assert.That(e.Tag, Is.Empty);
    }

    [TestCase("wrapped_key")]
    [TestCase("key_iv")]
    [TestCase("key_tag")]
    public void MissingRequiredFieldIsInvalidCryptoField(string field)
    {
        var json = field switch
        {
            "wrapped_key" => Entry(wrapped: ""),
            "key_iv" => Entry(keyIv: ""),
            _ => Entry(keyTag: ""),
        };
        var ex = Refused(() => EncryptionEntry.Parse(json));
        Assert.That(ex.Code, Is.EqualTo(ErrorCode.InvalidCryptoField));
        Assert.That(ex.Tensor, Is.EqualTo("w"));
        Assert.That(ex.Field, Is.EqualTo(field));
    }

    [TestCase("null", TestName = "wrapped_key null")]
    [TestCase("\"\"", TestName = "wrapped_key empty")]
    [TestCase("\"AA\"", TestName = "wrapped_key unpadded")]
    [TestCase("\"AB==\"", TestName = "wrapped_key non-canonical")]
    [TestCase("\"3xi8fJjjMjidCSiFhUnEhF25frUhpa6jf0LjpaGtGlE\"", TestName = "wrapped_key missing padding")]
    [TestCase("\"3xi8fJjjMjidCSiFhUnEhF25frUhpa6jf0LjpaGtGlE= \"", TestName = "wrapped_key trailing space")]
    [TestCase("\"3xi8fJjjMjidCSiFhUnEhF25frUhpa6jf0LjpaGtGlE=\\n\"", TestName = "wrapped_key trailing newline")]
    [TestCase("\"-_8=\"", TestName = "wrapped_key URL alphabet")]
    [TestCase("\"!!!!\"", TestName = "wrapped_key garbage")]
    [TestCase("32", TestName = "wrapped_key number")]
    public void BadWrappedKeyIsInvalidWrappedKey(string value)
    {
        var ex = Refused(() => EncryptionEntry.Parse(Entry(wrapped: value)));
        Assert.That(ex.Code, Is.EqualTo(ErrorCode.InvalidWrappedKey));
        Assert.That(ex.Kind, Is.EqualTo(ErrorKind.KeyUnwrap));
        Assert.That(ex.Tensor, Is.EqualTo("w"));
        Assert.That(ex.Field, Is.EqualTo("wrapped_key"));
    }

    [TestCase("null")]
    [TestCase("\"\"")]
    [TestCase("\"AA\"")]
    public void BadKeyIvOrKeyTagIsInvalidWrappedKey(string value)
    {
        Assert.That(Refused(() => EncryptionEntry.Parse(Entry(keyIv: value))).Code, Is.EqualTo(ErrorCode.InvalidWrappedKey));
        Assert.That(Refused(() => EncryptionEntry.Parse(Entry(keyTag: value))).Code, Is.EqualTo(ErrorCode.InvalidWrappedKey));
    }

    [Test]
    public void UnknownFieldsAreIgnored()
    {
        var e = EncryptionEntry.Parse(Entry(rest: "\"enc_algo\":\"aes256gcm\",\"x\":{\"y\":[1,2]},\"iv\":null"))["w"];
        Assert.That(e.WrappedKey, Is.EqualTo(Convert.FromBase64String(Wk)));
        Assert.That(e.Iv, Is.Empty);
    }

    [TestCase("[]")]
    [TestCase("{\"w\":\"x\"}")]
    [TestCase("{\"w\":null}")]
    [TestCase("not json")]
    public void MalformedEncryptionFieldIsInvalidCryptoField(string json)
        => AssertCode(() => EncryptionEntry.Parse(json), ErrorCode.InvalidCryptoField);

    [Test]
    public void DuplicateTensorInEncryptionIsRefused()
    {
        var one = $$"""{"wrapped_key":"{{Wk}}","key_iv":"{{KeyIv}}","key_tag":"{{KeyTag}}"}""";
        AssertCode(() => EncryptionEntry.Parse("{\"w\":" + one + ",\"w\":" + one + "}"), ErrorCode.InvalidCryptoField);
    }

    // ---- __policy__ -----------------------------------------------------------------------------------------------

    [Test]
    public void DefaultPolicySerializesWithEscapedNewline()
    {
        const string expected = """{"local":"package model\nallow = true","remote":"package model\nallow = true"}""";
        Assert.That(AccessPolicy.Default.Serialize(), Is.EqualTo(expected));
        Assert.That(AccessPolicy.Default.Local, Is.EqualTo("package model\nallow = true"));
        Assert.That(AccessPolicy.Parse(expected), Is.EqualTo(AccessPolicy.Default));
    }

    [Test]
    public void CustomPolicyRoundTrips()
    {
        var p = new AccessPolicy("package model\n\ndefault allow = false\nallow { input.x == \"a\\b\" }\t", "r\u00e9mote \U0001F600");
        var json = p.Serialize();
        Assert.That(json, Is.EqualTo("{\"local\":\"package model\\n\\ndefault allow = false\\nallow { input.x == \\\"a\\\\b\\\" }\\t\",\"remote\":\"r\u00e9mote \U0001F600\"}"));
        Assert.That(AccessPolicy.Parse(json), Is.EqualTo(p));
    }

    [TestCase("""{"local":"x"}""")]
    [TestCase("""{"remote":"x"}""")]
    [TestCase("""{"local":1,"remote":"x"}""")]
    [TestCase("""{"local":"x","remote":null}""")]
    [TestCase("""{"local":"x","remote":"y","local":"z"}""")]
    [TestCase("[]")]
    [TestCase("")]
    public void MalformedPolicyIsInvalidCryptoField(string json)
        => AssertCode(() => AccessPolicy.Parse(json), ErrorCode.InvalidCryptoField, ReservedFields.Policy);

    // ---- against the writer KAT (vectors/kat) ---------------------------------------------------------------------

    [TestCase("v1")]
    [TestCase("v2")]
    public void KatReservedFieldsRoundTripAndSignatureVerifies(string which)
    {
        var dir = Path.Combine(TestPaths.VectorsDir, "kat");
        using var kat = JsonDocument.Parse(File.ReadAllText(Path.Combine(dir, "kat.json")));
        var expected = kat.RootElement.GetProperty(which);
        var file = File.ReadAllBytes(Path.Combine(dir, expected.GetProperty("file").GetString()!));
        var n = SafetensorsHeader.ReadHeaderLength(file, file.Length);
        var header = SafetensorsHeader.Parse(file.AsSpan(8, (int)n), file.Length);
        var meta = header.Metadata!;

        var keys = CryptoKeysField.Parse(meta[ReservedFields.CryptoKeys]);
        Assert.That(keys.Serialize(), Is.EqualTo(meta[ReservedFields.CryptoKeys]));
        Assert.That(keys.Version, Is.EqualTo(which == "v1" ? "1" : "2"));
        Assert.That(keys.ChunkSize, Is.EqualTo(which == "v1" ? null : 8));

        var enc = EncryptionEntry.Parse(meta[ReservedFields.Encryption]);
        Assert.That(EncryptionEntry.Serialize(enc, chunked: keys.ChunkSize is not null), Is.EqualTo(meta[ReservedFields.Encryption]));
        var entryA = expected.GetProperty("encryption_entry_a");
        Assert.That(Base64Strict.Encode(enc["a"].WrappedKey), Is.EqualTo(entryA.GetProperty("wrapped_key").GetString()));

        var policy = AccessPolicy.Parse(meta[ReservedFields.Policy]);
        Assert.That(policy.Serialize(), Is.EqualTo(meta[ReservedFields.Policy]));

        // §4.1: the signed message is the canonical re-serialization without __signature__.
        var unsigned = meta.Where(kv => kv.Key != ReservedFields.Signature).ToDictionary(kv => kv.Key, kv => kv.Value);
        var message = HeaderSerializer.Serialize(unsigned, header.Tensors.Select(t => new HeaderTensor(t.Name, t.Dtype, t.Shape, t.Begin, t.End)));
        Assert.That(System.Text.Encoding.UTF8.GetString(message), Is.EqualTo(expected.GetProperty("signed_message").GetString()));
        Assert.That(meta[ReservedFields.Signature], Is.EqualTo(expected.GetProperty("signature_b64").GetString()));
        Assert.That(Base64Strict.TryDecode(meta[ReservedFields.Signature], out var sig), Is.True);
        var x = Convert.FromBase64String("xkqFcGjXCBMk75q0259N1ggRJsqc+FTAiXMuKX72fd8=");
        Assert.That(Ed25519.Verify(x, message, sig), Is.True);
        message[^2] ^= 1;
        Assert.That(Ed25519.Verify(x, message, sig), Is.False);
    }
}
