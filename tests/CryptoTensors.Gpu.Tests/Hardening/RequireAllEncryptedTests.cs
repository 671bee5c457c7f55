using CryptoTensors.Gpu.Format;
using CryptoTensors.Gpu.Keys;
using CryptoTensors.Gpu.Reading;
using CryptoTensors.Gpu.Writing;

namespace CryptoTensors.Gpu.Tests.Hardening;

/// <summary>
/// <see cref="ReaderOptions.RequireAllTensorsEncrypted"/>: the signature covers the header, not the tensor bytes, so the
/// plain tensors of a partially encrypted file can be swapped by whoever hosts it without any check failing; this
/// option refuses such files (and plain ones), before any data key is unwrapped.
/// </summary>
public class RequireAllEncryptedTests
{
    private static List<TensorSource> Tensors() => Enumerable.Range(0, 4).Select(i => TestModels.Tensor($"w{i}", Dtype.U8, [1000], i)).ToList();

    [Test]
    public void APlainTensorOfAPartiallyEncryptedFileCanBeSwappedUnnoticedWithoutTheOption()
    {
        using var tmp = new TempDir();
        using var master = MasterKey.Generate();
        using var signer = SigningKey.Generate();
        var file = tmp.File("m");
        CryptoTensorsWriter.Write(file, Tensors(), new WriterOptions { MasterKey = master, SigningKey = signer, EncryptOnly = ["w0", "w1"] });
        long w3Start;
        using (var r = CryptoTensorsReader.Open(file, TestModels.Keys(master, signer)))
        {
            Assert.That(r.GetTensor("w3").IsEncrypted, Is.False);
            w3Start = r.Header.DataStart + (long)r.Header.Tensors.Single(t => t.Name == "w3").Begin;
        }
        using (var f = new FileStream(file, FileMode.Open, FileAccess.Write)) { f.Position = w3Start; f.Write(new byte[1000]); }
        using (var r = CryptoTensorsReader.Open(file, TestModels.Keys(master, signer)))
            Assert.That(r.ReadTensor("w3"), Is.All.Zero, "the swapped plain bytes read as good: nothing authenticates them");

        var keys = TestModels.Keys(master, signer);
        var strict = new ReaderOptions { MasterKey = master, VerificationKey = signer.Public, Keys = new(), RequireAllTensorsEncrypted = true };
        using var recorder = new SecretRecorder();
        var ex = Assert.Throws<CryptoHeaderException>(() => CryptoTensorsReader.Open(file, strict));
        Assert.That(ex!.Code, Is.EqualTo(ErrorCode.NotEncrypted));
        Assert.That(ex.Tensor, Is.EqualTo("w2"), "names the first plain tensor");
        Assert.That(ex.Message, Does.Contain("2 of 4 tensors"));
        Assert.That(recorder.CreatedBuffers, Is.Empty, "refused before any data key was unwrapped");
        Assert.That(keys.RequireAllTensorsEncrypted, Is.False, "off by default (the reference accepts partial files)");
    }

    [Test]
    public void FullyEncryptedFilesPassAndPlainFilesAreRefused()
    {
        using var tmp = new TempDir();
        using var master = MasterKey.Generate();
        using var signer = SigningKey.Generate();
        var strict = new ReaderOptions { MasterKey = master, VerificationKey = signer.Public, Keys = new(), RequireAllTensorsEncrypted = true };
        CryptoTensorsWriter.Write(tmp.File("all"), Tensors(), new WriterOptions { MasterKey = master, SigningKey = signer });
        using (var r = CryptoTensorsReader.Open(tmp.File("all"), strict)) Assert.That(r.ReadTensor("w3"), Is.EqualTo(TestModels.Bytes(1000, 3)));
        CryptoTensorsWriter.Write(tmp.File("plain"), Tensors(), new WriterOptions());
        Assert.That(Assert.Throws<CryptoHeaderException>(() => CryptoTensorsReader.Open(tmp.File("plain"), strict))!.Code, Is.EqualTo(ErrorCode.NotEncrypted));
        using var stream = File.OpenRead(tmp.File("plain"));
        Assert.ThrowsAsync<CryptoHeaderException>(async () => await CryptoTensorsStreamReader.OpenAsync(stream, "plain", strict));
    }

    [Test]
    public void VerifyRequireAllEncryptedRefusesAPartialFile()
    {
        using var tmp = new TempDir();
        Assert.That(CliTestsHelpers.Run("keygen", "--out-dir", tmp.File("k")).Code, Is.Zero);
        CryptoTensorsWriter.Write(tmp.File("plain"), Tensors(), new WriterOptions());
        string[] keys = ["--key", tmp.File("k/enc.jwk"), "--verify-key", tmp.File("k/sign.pub.jwk")];
        Assert.That(CliTestsHelpers.Run(["encrypt", tmp.File("plain"), "-o", tmp.File("p.ct"), "--key", tmp.File("k/enc.jwk"), "--sign-key", tmp.File("k/sign.jwk"), "--tensors", "w0"]).Code, Is.Zero);
        Assert.That(CliTestsHelpers.Run(["verify", tmp.File("p.ct"), .. keys]).Code, Is.Zero, "accepted without the option");
        var (code, stdout, _) = CliTestsHelpers.Run(["verify", tmp.File("p.ct"), .. keys, "--require-all-encrypted", "--json"]);
        Assert.That(code, Is.EqualTo(3));
        Assert.That(stdout, Does.Contain("\"kind\":\"crypto_header\"").And.Contain("stored in plain"));
    }
}
