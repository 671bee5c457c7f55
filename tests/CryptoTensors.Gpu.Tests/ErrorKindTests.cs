using CryptoTensors.Gpu;

namespace CryptoTensors.Gpu.Tests;

public class ErrorKindTests
{
    [Test]
    public void EveryCodeHasAKindAndEveryKindItsVectorName()
    {
        foreach (var code in Enum.GetValues<ErrorCode>())
        {
            var kind = CryptoTensorsException.KindOf(code);
            var ex = Errors.Create(code, "m");
            Assert.That(ex.Kind, Is.EqualTo(kind), code.ToString());
            Assert.That(ErrorKinds.FromVectorName(kind.ToVectorName()), Is.EqualTo(kind));
        }
    }

    [TestCase("malformed", 2)]
    [TestCase("crypto_header", 3)]
    [TestCase("missing_signature", 4)]
    [TestCase("signature", 5)]
    [TestCase("policy", 6)]
    [TestCase("key", 7)]
    [TestCase("key_unwrap", 8)]
    [TestCase("decrypt", 9)]
    public void ExitCodesMatchTheVectorsIndex(string name, int code)
        => Assert.That((int)ErrorKinds.FromVectorName(name), Is.EqualTo(code));

    [Test]
    public void MessageNamesTensorChunkAndField()
    {
        var ex = Errors.Create(ErrorCode.DecryptionFailed, "authentication failed", tensor: "w", chunk: 3, field: "tags");
        Assert.That(ex, Is.TypeOf<DecryptionException>());
        Assert.That(ex.Message, Is.EqualTo("tensor 'w' chunk 3: authentication failed (field tags)"));
    }
}
