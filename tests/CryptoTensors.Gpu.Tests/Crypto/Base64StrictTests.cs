using CryptoTensors.Gpu.Crypto;

namespace CryptoTensors.Gpu.Tests.Crypto;

/// <summary>Base64 as the reference's <c>general_purpose::STANDARD</c> engine reads and writes it (FORMAT.md §2.6).</summary>
public class Base64StrictTests
{
    [TestCase("", "")]
    [TestCase("AA==", "00")]
    [TestCase("AAA=", "0000")]
    [TestCase("AAAA", "000000")]
    [TestCase("/w==", "ff")]
    [TestCase("+/8=", "fbff")]
    [TestCase("++++", "fbefbe")]
    [TestCase("////", "ffffff")]
    [TestCase("Zm9vYmFy", "666f6f626172")]
    [TestCase("Zm9vYg==", "666f6f62")]
    [TestCase("AAECAwQFBgcICQoL", "000102030405060708090a0b")] // 12 bytes -> 16 chars
    public void CanonicalIsAccepted(string text, string hex)
    {
        Assert.That(Base64Strict.TryDecode(text, out var bytes), Is.True);
        Assert.That(Convert.ToHexStringLower(bytes), Is.EqualTo(hex));
        Assert.That(Base64Strict.Encode(bytes), Is.EqualTo(text), "encoding is the inverse");
        Assert.That(Base64Strict.TryDecodeUtf8(System.Text.Encoding.UTF8.GetBytes(text), out var fromUtf8), Is.True, "UTF-8 form");
        Assert.That(fromUtf8, Is.EqualTo(bytes), "UTF-8 form");
    }

    [TestCase(12, 16)]
    [TestCase(16, 24)]
    [TestCase(32, 44)]
    [TestCase(64, 88)]
    [TestCase(48, 64)]
    public void EncodedLengthsOfTheFormat(int bytes, int chars)
    {
        var data = Enumerable.Range(0, bytes).Select(i => (byte)(i * 37 + 11)).ToArray();
        var text = Base64Strict.Encode(data);
        Assert.That(text, Has.Length.EqualTo(chars));
        Assert.That(Base64Strict.TryDecode(text, out var back), Is.True);
        Assert.That(back, Is.EqualTo(data));
    }

    [TestCase("AA", TestName = "missing padding (2 chars)")]
    [TestCase("AAA", TestName = "missing padding (3 chars)")]
    [TestCase("AA=", TestName = "short padding")]
    [TestCase("Zm9vYg", TestName = "missing padding (unpadded 4 bytes)")]
    [TestCase("AA==\n", TestName = "trailing newline")]
    [TestCase("AA ==", TestName = "inner space")]
    [TestCase(" AA==", TestName = "leading space")]
    [TestCase("AA==    ", TestName = "trailing spaces")]
    [TestCase("AAAA\r\nAAAA", TestName = "CRLF inside")]
    [TestCase("AA\t==", TestName = "tab inside")]
    [TestCase("-_8=", TestName = "URL alphabet")]
    [TestCase("AAA-", TestName = "URL minus")]
    [TestCase("AAA_", TestName = "URL underscore")]
    [TestCase("AB==", TestName = "non-zero trailing bits (1 byte)")]
    [TestCase("AAB=", TestName = "non-zero trailing bits (2 bytes)")]
    [TestCase("//8=/w==", TestName = "padding in the middle")]
    [TestCase("A===", TestName = "bad length: 1 char + 3 pad")]
    [TestCase("====", TestName = "only padding")]
    [TestCase("A", TestName = "bad length 1")]
    [TestCase("AAAAA", TestName = "bad length 5")]
    [TestCase("AAAAAA==A", TestName = "bad length 9")]
    [TestCase("AA==AA==", TestName = "two padded groups")]
    [TestCase("=AAA", TestName = "leading padding")]
    [TestCase("AA=A", TestName = "padding before data")]
    [TestCase("AA.=", TestName = "foreign character")]
    [TestCase("AA\u00C0=", TestName = "non-ASCII character")]
    public void NonCanonicalIsRejected(string text)
    {
        Assert.That(Base64Strict.TryDecode(text, out var bytes), Is.False);
        Assert.That(bytes, Is.Empty);
        Assert.That(Base64Strict.TryDecodeUtf8(System.Text.Encoding.UTF8.GetBytes(text), out var fromUtf8), Is.False, "UTF-8 form");
        Assert.That(fromUtf8, Is.Empty, "UTF-8 form");
    }

    [Test]
    public void Utf8FormDecidesAsTheStringFormOnRandomText()
    {
        // Short strings over an alphabet rich in padding, whitespace and trailing-bit cases: both decoders must agree on every one.
        var rng = new Random(20261123);
        const string pieces = "AAw8+/=== \n-_gBQ";
        for (var i = 0; i < 200_000; i++)
        {
            var text = string.Create(rng.Next(0, 13), rng, (span, r) => { for (var j = 0; j < span.Length; j++) span[j] = pieces[r.Next(pieces.Length)]; });
            var ok = Base64Strict.TryDecode(text, out var bytes);
            var okUtf8 = Base64Strict.TryDecodeUtf8(System.Text.Encoding.UTF8.GetBytes(text), out var fromUtf8);
            Assert.That(okUtf8, Is.EqualTo(ok), text);
            Assert.That(fromUtf8, Is.EqualTo(bytes), text);
        }
    }

    [Test]
    public void Utf8FormDecidesAsTheStringFormOnLongValuesAndTheirMutants()
    {
        // Values as long as the header's (up to 88 characters, many whole quads), then each with one character replaced.
        var rng = new Random(20261124);
        const string pieces = "AZaz09+/=\" \n.-_";
        for (var i = 0; i < 20_000; i++)
        {
            var data = new byte[rng.Next(0, 67)];
            rng.NextBytes(data);
            var text = Convert.ToBase64String(data);
            Assert.That(Base64Strict.TryDecodeUtf8(System.Text.Encoding.UTF8.GetBytes(text), out var decoded), Is.True, text);
            Assert.That(decoded, Is.EqualTo(data), text);
            if (text.Length == 0) continue;
            var chars = text.ToCharArray();
            chars[rng.Next(chars.Length)] = pieces[rng.Next(pieces.Length)];
            var mutant = new string(chars);
            var ok = Base64Strict.TryDecode(mutant, out var bytes);
            Assert.That(Base64Strict.TryDecodeUtf8(System.Text.Encoding.UTF8.GetBytes(mutant), out var fromUtf8), Is.EqualTo(ok), mutant);
            Assert.That(fromUtf8, Is.EqualTo(bytes), mutant);
        }
    }

    [TestCase("AA==", "00")]
    [TestCase("AA", "00")]
    [TestCase("AAA", "0000")]
    [TestCase("AAA=", "0000")]
    [TestCase("-_8", "fbff")]
    [TestCase("-_8=", "fbff")]
    [TestCase("+/8", "fbff")]
    [TestCase("_w", "ff")]
    [TestCase("", "")]
    [TestCase("xkqFcGjXCBMk75q0259N1ggRJsqc-FTAiXMuKX72fd8", "c64a857068d7081324ef9ab4db9f4dd6081126ca9cf854c089732e297ef67ddf")]
    [TestCase("xkqFcGjXCBMk75q0259N1ggRJsqc+FTAiXMuKX72fd8=", "c64a857068d7081324ef9ab4db9f4dd6081126ca9cf854c089732e297ef67ddf")]
    public void DecodeLenientAcceptsUrlAndUnpadded(string text, string hex)
    {
        var dest = new byte[64];
        var n = Base64Strict.DecodeLenient(text, dest);
        Assert.That(n, Is.EqualTo(hex.Length / 2));
        Assert.That(Convert.ToHexStringLower(dest.AsSpan(0, n)), Is.EqualTo(hex));
    }

    [TestCase("AA AA")]
    [TestCase("AAAA\n")]
    [TestCase("\tAAAA")]
    [TestCase("A")]
    [TestCase("AAAAA")]
    [TestCase("AA*A")]
    [TestCase("A=AA")]
    public void DecodeLenientRejectsGarbage(string text)
        => Assert.That(Base64Strict.DecodeLenient(text, new byte[64]), Is.EqualTo(-1));

    [Test]
    public void DecodeLenientRejectsTooSmallDestination()
    {
        Assert.That(Base64Strict.DecodeLenient("AAAAAAAA", new byte[5]), Is.EqualTo(-1));
        Assert.That(Base64Strict.DecodeLenient("AAAAAAAA", new byte[6]), Is.EqualTo(6));
    }
}
