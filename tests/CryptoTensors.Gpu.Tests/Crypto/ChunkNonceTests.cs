using CryptoTensors.Gpu.Crypto;

namespace CryptoTensors.Gpu.Tests.Crypto;

/// <summary>v2 chunk nonces (FORMAT.md §3.4) and the reference's KATs (§9.1, encryption.rs L321-355).</summary>
public class ChunkNonceTests
{
    private const string KatBase = "000102030405060700000000";

    private static string? Derive(string baseHex, long index)
    {
        var nonce = new byte[12];
        return ChunkNonce.TryDerive(Convert.FromHexString(baseHex), index, nonce) ? Convert.ToHexStringLower(nonce) : null;
    }

    [TestCase(KatBase, 0L, ExpectedResult = "000102030405060700000000")]
    [TestCase(KatBase, 1L, ExpectedResult = "000102030405060700000001")]
    [TestCase(KatBase, 256L, ExpectedResult = "000102030405060700000100")]
    [TestCase(KatBase, 0xFFFFFFFFL, ExpectedResult = "0001020304050607ffffffff")]
    [TestCase("0001020304050607ffffffff", 0L, ExpectedResult = "0001020304050607ffffffff")]
    [TestCase("0001020304050607fffffffe", 1L, ExpectedResult = "0001020304050607ffffffff")]
    [TestCase("ffffffffffffffff000000ff", 1L, ExpectedResult = "ffffffffffffffff00000100")]
    [TestCase("0001020304050607ffffffff", 1L, ExpectedResult = null)]
    [TestCase("0001020304050607fffffffe", 2L, ExpectedResult = null)]
    [TestCase(KatBase, 0x1_0000_0000L, ExpectedResult = null)]
    [TestCase(KatBase, long.MaxValue, ExpectedResult = null)]
    [TestCase(KatBase, -1L, ExpectedResult = null)]
    [TestCase("0001020304050607000000", 0L, ExpectedResult = null)]
    [TestCase("0001020304050607000000", 1L, ExpectedResult = null)]
    [TestCase("", 0L, ExpectedResult = null)]
    public string? TryDerive(string baseHex, long index) => Derive(baseHex, index);

    [Test]
    public void OnlyTheFirstTwelveBytesOfALongerBaseAreUsed()
        => Assert.That(Derive("000102030405060700000010" + "eeee", 2), Is.EqualTo("000102030405060700000012"));

    [TestCase(KatBase, 0L, ExpectedResult = true)]
    [TestCase(KatBase, 1L, ExpectedResult = true)]
    [TestCase(KatBase, 2L, ExpectedResult = true)]
    [TestCase(KatBase, 0x1_0000_0000L, ExpectedResult = true)] // indices 0 .. 2^32-1
    [TestCase(KatBase, 0x1_0000_0001L, ExpectedResult = false)]
    [TestCase(KatBase, long.MaxValue, ExpectedResult = false)]
    [TestCase("0001020304050607ffffffff", 1L, ExpectedResult = true)] // a single chunk uses the base itself
    [TestCase("0001020304050607ffffffff", 2L, ExpectedResult = false)]
    [TestCase("0001020304050607fffffffe", 2L, ExpectedResult = true)]
    [TestCase("0001020304050607fffffffe", 3L, ExpectedResult = false)]
    [TestCase("000102030405060780000000", 0x8000_0000L, ExpectedResult = true)]
    [TestCase("000102030405060780000000", 0x8000_0001L, ExpectedResult = false)]
    public bool Fits(string baseHex, long chunkCount) => ChunkNonce.Fits(Convert.FromHexString(baseHex), chunkCount);

    [TestCase("000102030405060700000000")]
    [TestCase("0001020304050607fffffff0")]
    [TestCase("0001020304050607ffffffff")]
    [TestCase("00010203040506077fffffff")]
    public void FitsAgreesWithDerivingTheLastChunk(string baseHex)
    {
        var b = Convert.FromHexString(baseHex);
        foreach (var n in new long[] { 1, 2, 15, 16, 17, 0x7FFF_FFFF, 0x8000_0000, 0x8000_0001, 0xFFFF_FFFF, 0x1_0000_0000, 0x1_0000_0001 })
        {
            Assert.That(ChunkNonce.Fits(b, n), Is.EqualTo(ChunkNonce.TryDerive(b, n - 1, new byte[12])), $"n={n}");
        }
    }

    private const long C = 2 * 1024 * 1024;

    [TestCase(0L, C, ExpectedResult = 1L)]
    [TestCase(1L, C, ExpectedResult = 1L)]
    [TestCase(C - 1, C, ExpectedResult = 1L)]
    [TestCase(C, C, ExpectedResult = 1L)]
    [TestCase(C + 1, C, ExpectedResult = 2L)]
    [TestCase(2 * C, C, ExpectedResult = 2L)]
    [TestCase(2 * C + 1, C, ExpectedResult = 3L)]
    [TestCase(74 * C, C, ExpectedResult = 74L)]
    [TestCase(38_597_376L * 4, C, ExpectedResult = 74L)] // GPT-2 wte: 50257*768 F32
    [TestCase(1L << 40, C, ExpectedResult = 1L << 19)]
    [TestCase((1L << 40) + 1, C, ExpectedResult = (1L << 19) + 1)]
    [TestCase(0L, 1L, ExpectedResult = 1L)]
    [TestCase(1L, 1L, ExpectedResult = 1L)]
    [TestCase(1000L, 1L, ExpectedResult = 1000L)]
    [TestCase(1000L, 7L, ExpectedResult = 143L)]
    [TestCase(int.MaxValue * 3L, int.MaxValue, ExpectedResult = 3L)]
    public long Count(long length, long chunkSize) => ChunkNonce.Count(length, chunkSize);
}
