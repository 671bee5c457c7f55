using System.Text;
using CryptoTensors.Gpu.Crypto;
using CryptoTensors.Gpu.Format;
using CryptoTensors.Gpu.Keys;
using CryptoTensors.Gpu.Reading;
using CryptoTensors.Gpu.Writing;

namespace CryptoTensors.Gpu.Tests.Reading;

/// <summary>
/// The signature check started before the header is parsed, on the raw header without its signature member: its result
/// counts only where that guess is exactly the canonical message (FORMAT.md §4.1), for the same signature and key.
/// </summary>
public class SpeculativeSignatureTests : ManyTensorFileTests
{
    private static byte[] HeaderOf(byte[] file) => file.AsSpan(8, (int)BitConverter.ToUInt64(file, 0)).ToArray();

    /// <summary>What the reader's signature check sees: the canonical message and the signature of the parsed header.</summary>
    private static (byte[] Message, byte[] Signature) Canonical(byte[] header)
    {
        var parsed = SafetensorsHeader.Parse(header, null);
        return (CryptoTensorsReader.SignedMessage(parsed), Convert.FromBase64String(parsed.Metadata![ReservedFields.Signature]));
    }

    private static readonly byte[] SignatureMember = ",\"__signature__\":\""u8.ToArray();

    /// <summary>The raw header without its signature member and padding: the guess.</summary>
    private static byte[] WithoutSignature(byte[] header)
    {
        var at = header.AsSpan().IndexOf(SignatureMember);
        var end = at + SignatureMember.Length + 89;
        return [.. header[..at], .. Encoding.UTF8.GetBytes(Encoding.UTF8.GetString(header[end..]).TrimEnd(' '))];
    }

    /// <summary>The headers of the tests below: a writer's, a tampered one, a non-canonical one, and one whose raw guess was signed.</summary>
    private byte[][] Scenarios()
    {
        var writer = Header();
        var tampered = (byte[])writer.Clone();
        tampered[Encoding.UTF8.GetString(tampered).IndexOf("\"lora.7.A\"", StringComparison.Ordinal) + 8] = (byte)'B';
        var canonical = Encoding.UTF8.GetString(writer).TrimEnd(' ');
        var noisy = canonical.Replace("]},\"", "]}, \"", StringComparison.Ordinal);
        var at = noisy.IndexOf(",\"__signature__\":\"", StringComparison.Ordinal);
        var end = at + SignatureMember.Length + 89;
        var forged = new byte[Ed25519.SignatureSize];
        Signer.Sign(Encoding.UTF8.GetBytes(noisy[..at] + noisy[end..]), forged);
        var forgedHeader = Encoding.UTF8.GetBytes(noisy[..at] + ",\"__signature__\":\"" + Convert.ToBase64String(forged) + "\"" + noisy[end..]);
        return [writer, tampered, Encoding.UTF8.GetBytes(noisy), forgedHeader];
    }

    [Test]
    public void ComparingTheCanonicalSerializationInPlaceGivesTheVerdictOfTheBuiltMessage()
    {
        var expected = new bool?[] { true, false, null, null };
        var scenarios = Scenarios();
        for (var i = 0; i < scenarios.Length; i++)
        {
            var header = scenarios[i];
            var parsed = SafetensorsHeader.Parse(header, null);
            var (message, signature) = Canonical(header);
            var early = SpeculativeSignature.Start(header, Signer.Public)!;
            Assert.That(early.TryGetResult(message, signature, Signer.Public), Is.EqualTo(expected[i]), $"scenario {i}, built message");
            Assert.That(early.TryGetResult(parsed, signature, Signer.Public), Is.EqualTo(expected[i]), $"scenario {i}, compared in place");
        }
    }

    [Test]
    public void AComparingWriterMatchesOnlyExactlyTheExpectedBytes()
    {
        var source = Encoding.UTF8.GetBytes("abcdef-XYZ-ghij");
        bool Matches(params string[] writes)
        {
            using var w = PooledBufferWriter.Comparing(source, 0, 6, 11, 4); // "abcdef" ++ "ghij"
            foreach (var part in writes)
            {
                if (part.StartsWith('#')) w.WriteNumber(ulong.Parse(part[1..], System.Globalization.CultureInfo.InvariantCulture));
                else if (part.StartsWith('~'))
                {
                    var bytes = Encoding.UTF8.GetBytes(part[1..]);
                    bytes.CopyTo(w.GetSpan(bytes.Length));
                    w.Advance(bytes.Length);
                }
                else w.Write(Encoding.UTF8.GetBytes(part));
            }
            return w.MatchesExpected;
        }
        Assert.That(Matches("abcdefghij"), Is.True);
        Assert.That(Matches("abc", "~def", "gh", "ij"), Is.True);
        Assert.That(Matches("abcdefghi"), Is.False, "shorter");
        Assert.That(Matches("abcdefghijk"), Is.False, "longer");
        Assert.That(Matches("abcdefghiJ"), Is.False, "one byte differs");
        Assert.That(Matches("abcdef-XYZ-"), Is.False, "the cut part");
        using var numbers = PooledBufferWriter.Comparing(Encoding.UTF8.GetBytes("[12,345]"), 0, 4, 4, 4);
        numbers.Write("["u8);
        numbers.WriteNumber(12);
        numbers.Write(","u8);
        numbers.WriteNumber(345);
        numbers.Write("]"u8);
        Assert.That(numbers.MatchesExpected, Is.True);
        var big = Encoding.UTF8.GetBytes(new string('q', 100_000) + "|" + new string('r', 100_000));
        using var large = PooledBufferWriter.Comparing(big, 0, 100_000, 100_001, 100_000);
        large.Write(big.AsSpan(0, 100_000));
        large.Write(big.AsSpan(100_001, 99_999));
        Assert.That(large.MatchesExpected, Is.False, "one byte short");
        large.Write("r"u8);
        Assert.That(large.MatchesExpected, Is.True);
        Assert.Throws<InvalidOperationException>(() => _ = large.WrittenSpan.Length);
    }

    [Test]
    public void OnAWriterHeaderTheGuessIsTheCanonicalMessageAndItsResultCounts()
    {
        var header = Header();
        var (message, signature) = Canonical(header);
        Assert.That(WithoutSignature(header), Is.EqualTo(message));
        var early = SpeculativeSignature.Start(header, Signer.Public);
        Assert.That(early, Is.Not.Null);
        Assert.That(early!.TryGetResult(message, signature, Signer.Public), Is.True);
        using var r = Open();
        Assert.That(r.Tensors, Has.Count.EqualTo(200));
    }

    [Test]
    public void ATamperedCanonicalHeaderIsRefusedByTheGuessAndByOpen()
    {
        var header = Header();
        var text = Encoding.UTF8.GetString(header);
        var at = text.IndexOf("\"lora.7.A\"", StringComparison.Ordinal);
        header[at + 8] = (byte)'B'; // another tensor name, still canonical: the message no longer matches the signature
        var (message, signature) = Canonical(header);
        Assert.That(WithoutSignature(header), Is.EqualTo(message));
        Assert.That(SpeculativeSignature.Start(header, Signer.Public)!.TryGetResult(message, signature, Signer.Public), Is.False);
        ReplaceHeader(header);
        var ex = Assert.Throws<SignatureException>(() => Open());
        Assert.That(ex!.Code, Is.EqualTo(ErrorCode.SignatureMismatch));
    }

    [Test]
    public void ANonCanonicalHeaderDiscardsTheGuessAndStillVerifiesTheCanonicalMessage()
    {
        // Whitespace between tensors: the reference signs (and verifies) the canonical form, so the file is valid.
        var header = Encoding.UTF8.GetBytes(Encoding.UTF8.GetString(Header()).TrimEnd(' ').Replace("]},\"", "]}, \"", StringComparison.Ordinal));
        var (message, signature) = Canonical(header);
        Assert.That(WithoutSignature(header), Is.Not.EqualTo(message));
        Assert.That(SpeculativeSignature.Start(header, Signer.Public)!.TryGetResult(message, signature, Signer.Public), Is.Null);
        ReplaceHeader(header);
        using var r = Open();
        Assert.That(r.Tensors, Has.Count.EqualTo(200));
    }

    [Test]
    public void AGuessThatVerifiesButIsNotTheCanonicalMessageIsNotTrusted()
    {
        // The attack the comparison stops: a non-canonical header whose raw bytes (less the signature member) were signed.
        // The guess verifies; the canonical message, which is what counts, does not.
        var canonical = Encoding.UTF8.GetString(Header()).TrimEnd(' ');
        var noisy = canonical.Replace("]},\"", "]}, \"", StringComparison.Ordinal);
        var at = noisy.IndexOf(",\"__signature__\":\"", StringComparison.Ordinal);
        var end = at + SignatureMember.Length + 89;
        var guessed = Encoding.UTF8.GetBytes(noisy[..at] + noisy[end..]);
        var forged = new byte[Ed25519.SignatureSize];
        Signer.Sign(guessed, forged);
        var header = Encoding.UTF8.GetBytes(noisy[..at] + ",\"__signature__\":\"" + Convert.ToBase64String(forged) + "\"" + noisy[end..]);
        var (message, signature) = Canonical(header);
        Assert.That(Ed25519.Verify(Signer.Public.PublicKey, WithoutSignature(header), signature), Is.True, "the guess verifies");
        Assert.That(SpeculativeSignature.Start(header, Signer.Public)!.TryGetResult(message, signature, Signer.Public), Is.Null);
        ReplaceHeader(header);
        var ex = Assert.Throws<SignatureException>(() => Open());
        Assert.That(ex!.Code, Is.EqualTo(ErrorCode.SignatureMismatch));
    }

    [Test]
    public void TheGuessCountsOnlyForItsOwnKeyAndSignature()
    {
        var header = Header();
        var (message, signature) = Canonical(header);
        using var other = SigningKey.Generate();
        Assert.That(SpeculativeSignature.Start(header, Signer.Public)!.TryGetResult(message, signature, other.Public), Is.Null);
        var flipped = (byte[])signature.Clone();
        flipped[0] ^= 1;
        Assert.That(SpeculativeSignature.Start(header, Signer.Public)!.TryGetResult(message, flipped, Signer.Public), Is.Null);
    }

    [Test]
    public void NoGuessIsStartedWithoutAKeyOrForASmallHeader()
    {
        Assert.That(SpeculativeSignature.Start(Header(), null), Is.Null);
        var small = Tmp.File("small.ct");
        CryptoTensorsWriter.Write(small, [TestModels.Tensor("w", Dtype.F32, [4])], new WriterOptions { MasterKey = Master, SigningKey = Signer });
        var header = HeaderOf(File.ReadAllBytes(small));
        Assert.That(header, Has.Length.LessThan(SpeculativeSignature.MinHeaderBytes));
        Assert.That(SpeculativeSignature.Start(header, Signer.Public), Is.Null);
    }

    [TestCase("AAAA")]
    [TestCase("not base64 at all, but eighty-eight characters long: what the guess looks for, exactly!!")]
    public void AMalformedSignatureLeavesNoGuessAndOpenReportsItsFormat(string value)
    {
        var text = Encoding.UTF8.GetString(Header()).TrimEnd(' ');
        var at = text.IndexOf(",\"__signature__\":\"", StringComparison.Ordinal) + SignatureMember.Length;
        var header = Encoding.UTF8.GetBytes(text[..at] + value + text[(at + 88)..]);
        var early = SpeculativeSignature.Start(header, Signer.Public)!;
        var message = CryptoTensorsReader.SignedMessage(SafetensorsHeader.Parse(header, null));
        Assert.That(early.TryGetResult(message, new byte[64], Signer.Public), Is.Null);
        ReplaceHeader(header);
        var ex = Assert.Throws<SignatureException>(() => Open());
        Assert.That(ex!.Code, Is.EqualTo(ErrorCode.InvalidSignatureFormat));
    }
}
