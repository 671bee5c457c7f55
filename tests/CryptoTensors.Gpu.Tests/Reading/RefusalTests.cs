using CryptoTensors.Gpu.Crypto;
using CryptoTensors.Gpu.Format;
using CryptoTensors.Gpu.Keys;
using CryptoTensors.Gpu.Reading;
using CryptoTensors.Gpu.Writing;

namespace CryptoTensors.Gpu.Tests.Reading;

/// <summary>Every bad input meets a specific, typed error, and nothing is returned.</summary>
public class RefusalTests
{
    private TempDir _tmp = null!;
    private MasterKey _master = null!;
    private SigningKey _signer = null!;
    private string _file = null!;

    [SetUp]
    public void SetUp()
    {
        _tmp = new TempDir();
        _master = MasterKey.Generate(kid: "enc-1");
        _signer = SigningKey.Generate(kid: "sign-1");
        _file = _tmp.File("m.ct");
        CryptoTensorsWriter.Write(_file, [
            TestModels.Tensor("big", Dtype.F32, [10, 10], 1),
            TestModels.Tensor("small", Dtype.U8, [7], 2),
        ], new WriterOptions { MasterKey = _master, SigningKey = _signer, ChunkSize = 64 });
    }

    [TearDown]
    public void TearDown()
    {
        _master.Dispose();
        _signer.Dispose();
        _tmp.Dispose();
    }

    private CryptoTensorsReader Open(ReaderOptions? o = null) => CryptoTensorsReader.Open(_file, o ?? TestModels.Keys(_master, _signer));

    private static T Refuses<T>(TestDelegate d, ErrorCode code) where T : CryptoTensorsException
    {
        var ex = Assert.Throws<T>(d);
        Assert.That(ex!.Code, Is.EqualTo(code), ex.Message);
        return ex;
    }

    [Test]
    public void TamperedCiphertextNamesTensorAndChunkAndZeroesTheDestination()
    {
        using var r = Open();
        var big = r.Header.Tensors.First(t => t.Name == "big");
        var bytes = File.ReadAllBytes(_file);
        bytes[r.Header.DataStart + (long)big.Begin + 64 * 3 + 5] ^= 1;
        r.Dispose();
        File.WriteAllBytes(_file, bytes);
        using var r2 = Open();
        var dest = new byte[400];
        var ex = Refuses<DecryptionException>(() => r2.ReadTensor("big", dest), ErrorCode.DecryptionFailed);
        Assert.That((ex.Tensor, ex.Chunk), Is.EqualTo(("big", (long?)3)));
        Assert.That(dest, Is.All.EqualTo(0));
        Assert.That(r2.ReadTensor("small"), Has.Length.EqualTo(7), "other tensors still read");
    }

    [Test]
    public void WrongMasterKeyFailsAtUnwrap()
    {
        using var wrong = MasterKey.Generate(kid: "enc-1");
        Refuses<KeyUnwrapException>(() => Open(TestModels.Keys(wrong, _signer)), ErrorCode.KeyUnwrapFailed);
    }

    [Test]
    public void WrongVerificationKeyFailsTheSignature()
    {
        using var other = SigningKey.Generate(kid: "sign-1");
        Refuses<SignatureException>(() => Open(TestModels.Keys(_master, other)), ErrorCode.SignatureMismatch);
    }

    [Test]
    public void MissingKeysAreKeyErrorsBeforeAnythingElse()
    {
        Refuses<KeyException>(() => Open(new ReaderOptions { Keys = new KeyRegistry() }), ErrorCode.MissingMasterKey);
        Refuses<KeyException>(() => Open(new ReaderOptions { MasterKey = _master, Keys = new KeyRegistry() }), ErrorCode.MissingVerificationKey);
    }

    [Test]
    public void AnyHeaderChangeWithoutResigningFailsTheSignature()
    {
        var bytes = File.ReadAllBytes(_file);
        var text = System.Text.Encoding.UTF8.GetString(bytes);
        var i = text.IndexOf("\"shape\":[10,10]", StringComparison.Ordinal);
        System.Text.Encoding.UTF8.GetBytes("\"shape\":[20,05]").CopyTo(bytes, i);
        File.WriteAllBytes(_file, bytes);
        // [20,05] is not valid JSON (leading zero) -> malformed; use a same-length valid change instead.
        Assert.Throws<MalformedFileException>(() => Open());
        System.Text.Encoding.UTF8.GetBytes("\"shape\":[25, 4]").CopyTo(bytes, i);
        File.WriteAllBytes(_file, bytes);
        Refuses<SignatureException>(() => Open(), ErrorCode.SignatureMismatch);
    }

    [Test]
    public void TamperedTagResignedIsCaughtByTheAead()
    {
        TestModels.MutateAndResign(_file, _signer, m => m[ReservedFields.Encryption] = FlipFirstTagByte(m[ReservedFields.Encryption]));
        using var r = Open();
        Refuses<DecryptionException>(() => r.ReadTensor("big"), ErrorCode.DecryptionFailed);
    }

    private static string FlipFirstTagByte(string json)
    {
        var entries = EncryptionEntry.Parse(json);
        entries["big"].Tags[0] ^= 1;
        return EncryptionEntry.Serialize(entries, chunked: true);
    }

    [Test]
    public void CounterOverflowInAResignedFileIsRefusedOnRead()
    {
        TestModels.MutateAndResign(_file, _signer, m =>
        {
            var entries = EncryptionEntry.Parse(m[ReservedFields.Encryption]);
            entries["big"].BaseIv.AsSpan(8).Fill(0xFF);
            m[ReservedFields.Encryption] = EncryptionEntry.Serialize(entries, chunked: true);
        });
        using var r = Open();
        Refuses<DecryptionException>(() => r.ReadTensor("big"), ErrorCode.IvCounterOverflow);
    }

    [Test]
    public void MissingTagsAndNoncesAreDecryptErrors()
    {
        TestModels.MutateAndResign(_file, _signer, m =>
        {
            var entries = EncryptionEntry.Parse(m[ReservedFields.Encryption]);
            var e = entries["big"];
            entries["big"] = new EncryptionEntry { WrappedKey = e.WrappedKey, KeyIv = e.KeyIv, KeyTag = e.KeyTag, BaseIv = e.BaseIv, Tags = e.Tags[..32] };
            var s = entries["small"];
            entries["small"] = new EncryptionEntry { WrappedKey = s.WrappedKey, KeyIv = s.KeyIv, KeyTag = s.KeyTag, BaseIv = s.BaseIv[..11], Tags = s.Tags };
            m[ReservedFields.Encryption] = EncryptionEntry.Serialize(entries, chunked: true);
        });
        using var r = Open();
        var ex = Refuses<DecryptionException>(() => r.ReadTensor("big"), ErrorCode.MissingNonceOrTag);
        Assert.That(ex.Chunk, Is.EqualTo(2));
        Refuses<DecryptionException>(() => r.ReadTensor("small"), ErrorCode.MissingNonceOrTag);
    }

    [Test]
    public void PolicyDenialHappensBeforeAnyKeyIsUnwrapped()
    {
        TestModels.MutateAndResign(_file, _signer, m =>
        {
            m[ReservedFields.Policy] = new AccessPolicy("package model\nallow = false", AccessPolicy.DefaultText).Serialize();
            // A wrapped key that cannot unwrap: if unwrapping ran first the error would be key_unwrap.
            var entries = EncryptionEntry.Parse(m[ReservedFields.Encryption]);
            entries["big"].WrappedKey[0] ^= 1;
            m[ReservedFields.Encryption] = EncryptionEntry.Serialize(entries, chunked: true);
        });
        Refuses<PolicyDeniedException>(() => Open(), ErrorCode.PolicyDenied);
    }

    [TestCase("package model\nallow if { http.send({\"url\": \"x\"}) }", ErrorCode.PolicyUnsupported)]
    [TestCase("package model\nallow { true }", ErrorCode.PolicyUnsupported)]
    [TestCase("package cryptotensors\nallow = true", ErrorCode.PolicyUnsupported)]
    [TestCase("package model", ErrorCode.PolicyUnsupported)]
    [TestCase("package model\ndefault allow := false", ErrorCode.PolicyDenied)]
    [TestCase("package model\nallow if input.no_such_field == 1", ErrorCode.PolicyUndefined)]
    [TestCase("package model\nallow := 1", ErrorCode.PolicyNotBoolean)]
    [TestCase("package model\nallow := true\nallow := false", ErrorCode.PolicyEvaluationFailed)]
    public void UnsupportedOrNegativePoliciesFailClosed(string policy, ErrorCode code)
    {
        TestModels.MutateAndResign(_file, _signer, m => m[ReservedFields.Policy] = new AccessPolicy(policy, AccessPolicy.DefaultText).Serialize());
        Refuses<PolicyDeniedException>(() => Open(), code);
    }

    [Test]
    public void StrippedOrMissingReservedFieldsAreRefused()
    {
        var copy = _tmp.File("copy");
        File.Copy(_file, copy);
        TestModels.MutateAndResign(_file, _signer, m => m.Remove(ReservedFields.Encryption));
        Refuses<CryptoHeaderException>(() => Open(), ErrorCode.StrippedEncryption);
        File.Copy(copy, _file, true);
        TestModels.MutateAndResign(_file, _signer, m => m.Remove(ReservedFields.Policy));
        Refuses<CryptoHeaderException>(() => Open(), ErrorCode.InvalidCryptoField);
        File.Copy(copy, _file, true);
        TestModels.MutateAndResign(_file, _signer, m => m.Remove(ReservedFields.CryptoKeys));
        Refuses<CryptoHeaderException>(() => Open(), ErrorCode.InvalidCryptoField);
    }

    [Test]
    public void HeaderKeyMaterialIsRefused()
    {
        TestModels.MutateAndResign(_file, _signer, m => m[ReservedFields.CryptoKeys] = m[ReservedFields.CryptoKeys].Replace("\"kty\":\"okp\"", "\"kty\":\"okp\",\"x\":\"AAAA\"", StringComparison.Ordinal));
        Refuses<KeyException>(() => Open(), ErrorCode.KeyInHeader);
    }

    [Test]
    public void TruncatedAndExtendedFilesAreMalformed()
    {
        var bytes = File.ReadAllBytes(_file);
        File.WriteAllBytes(_file, bytes[..^1]);
        Refuses<MalformedFileException>(() => Open(), ErrorCode.IncompleteBuffer);
        File.WriteAllBytes(_file, [.. bytes, 0]);
        Refuses<MalformedFileException>(() => Open(), ErrorCode.IncompleteBuffer);
        File.WriteAllBytes(_file, bytes[..7]);
        Refuses<MalformedFileException>(() => Open(), ErrorCode.HeaderTooSmall);
        File.WriteAllBytes(_file, bytes[..100]);
        Refuses<MalformedFileException>(() => Open(), ErrorCode.InvalidHeaderLength);
    }

    [Test]
    public void AFileThatShrinksAfterOpenIsAnErrorNotACrash()
    {
        using var r = Open();
        using (var f = new FileStream(_file, FileMode.Open, FileAccess.Write, FileShare.ReadWrite)) f.SetLength(r.Header.DataStart + 10);
        var dest = new byte[400];
        Refuses<MalformedFileException>(() => r.ReadTensor("big", dest), ErrorCode.IncompleteBuffer);
        Assert.That(dest, Is.All.EqualTo(0));
    }

    [Test]
    public void RequireEncryptedRefusesPlainFiles()
    {
        CryptoTensorsWriter.Write(_file, [TestModels.Tensor("a", Dtype.U8, [3])], new WriterOptions());
        Refuses<CryptoHeaderException>(() => Open(new ReaderOptions { RequireEncrypted = true, Keys = new() }), ErrorCode.NotEncrypted);
        using var r = Open(new ReaderOptions { Keys = new() });
        Assert.That(r.IsEncrypted, Is.False);
    }

    [Test]
    public void UnknownTensorAndWrongDestinationSize()
    {
        using var r = Open();
        Refuses<MalformedFileException>(() => r.ReadTensor("nope"), ErrorCode.TensorNotFound);
        Refuses<MalformedFileException>(() => r.ReadTensor("big", new byte[3]), ErrorCode.DestinationSize);
    }

    [Test]
    public async Task AsyncReadMatchesSyncRead()
    {
        using var r = Open();
        var a = new byte[400];
        await r.ReadTensorAsync("big", a);
        Assert.That(a, Is.EqualTo(r.ReadTensor("big")));
    }
}
