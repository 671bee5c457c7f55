using System.Text;
using CryptoTensors.Gpu.Crypto;
using CryptoTensors.Gpu.Format;
using CryptoTensors.Gpu.Keys;
using CryptoTensors.Gpu.Reading;
using CryptoTensors.Gpu.Writing;

namespace CryptoTensors.Gpu.Tests.Reading;

/// <summary>
/// The parse of <c>__encryption__</c> started before the header is parsed, from the first place its value appears to
/// start: used only where the header parser finds the stored value at exactly that place, holding exactly what was parsed.
/// </summary>
public class SpeculativeEncryptionTests : ManyTensorFileTests
{
    /// <summary>The guess's answer for <paramref name="header"/>, given the stored value its parser finds (the same array).</summary>
    private static Dictionary<string, EncryptionEntry>? Guess(byte[] header)
    {
        var early = SpeculativeEncryption.Start(header);
        Assert.That(early, Is.Not.Null);
        var parsed = SafetensorsHeader.ParseOwned(header, null);
        Assert.That(parsed.TryGetStoredValue(ReservedFields.Encryption, out var stored), Is.True);
        return early!.TryGetResult(stored);
    }

    private static Dictionary<string, EncryptionEntry> Stored(byte[] header)
    {
        var parsed = SafetensorsHeader.ParseOwned(header, null);
        parsed.TryGetStoredValue(ReservedFields.Encryption, out var stored);
        return EncryptionEntry.ParseStored(stored.Span, () => parsed.Metadata![ReservedFields.Encryption]);
    }

    private static void AssertSame(Dictionary<string, EncryptionEntry> a, Dictionary<string, EncryptionEntry> b)
    {
        Assert.That(a.Keys, Is.EquivalentTo(b.Keys));
        foreach (var (k, x) in a)
        {
            var y = b[k];
            Assert.That(new[] { x.WrappedKey, x.KeyIv, x.KeyTag, x.BaseIv, x.Tags }, Is.EqualTo(new[] { y.WrappedKey, y.KeyIv, y.KeyTag, y.BaseIv, y.Tags }), k);
        }
    }

    [Test]
    public void OnAWriterHeaderTheGuessIsUsedAndReadsWhatTheStoredValueHolds()
    {
        var header = Encoding.UTF8.GetBytes(HeaderText());
        var guess = Guess(header);
        Assert.That(guess, Is.Not.Null);
        Assert.That(guess, Has.Count.EqualTo(200));
        AssertSame(guess!, Stored(header));
    }

    [Test]
    public void SpacesAfterTheObjectInsideTheValueStillReadTheSame()
    {
        var text = HeaderText();
        var end = text.IndexOf("}\",\"__policy__\"", StringComparison.Ordinal);
        var header = Encoding.UTF8.GetBytes(text[..(end + 1)] + "   " + text[(end + 1)..]);
        var guess = Guess(header);
        Assert.That(guess, Is.Not.Null);
        AssertSame(guess!, Stored(header));
    }

    /// <summary>
    /// The header with an unknown tensor field named <c>__encryption__</c> (which readers skip and the signature does not
    /// cover) placed before the metadata: a copy of the real value, of the same length, with one wrapped key changed.
    /// </summary>
    private string WithLookalike()
    {
        var text = HeaderText();
        var metaStart = text.IndexOf("{\"__metadata__\":", StringComparison.Ordinal);
        var metaEnd = text.IndexOf("},\"lora.", StringComparison.Ordinal) + 1;
        var metadata = text[(metaStart + 1)..metaEnd];
        var valueStart = metadata.IndexOf("\"__encryption__\":\"", StringComparison.Ordinal) + 18;
        var value = metadata[valueStart..metadata.IndexOf("}\",\"__policy__\"", StringComparison.Ordinal)] + "}";
        var key = value.IndexOf("wrapped_key", StringComparison.Ordinal) + 18;
        var altered = value[..key] + (value[key] == 'A' ? 'B' : 'A') + value[(key + 1)..];
        var tensors = text[(metaEnd + 1)..^1];
        var firstEnd = tensors.IndexOf("]}", StringComparison.Ordinal) + 1;
        return "{" + tensors[..firstEnd] + ",\"__encryption__\":\"" + altered + "\"" + tensors[firstEnd..] + "," + metadata + "}";
    }

    [Test]
    public void AnEarlierLookalikeMemberIsNotTakenForTheValue()
    {
        // The guess parses the lookalike (200 entries, one key changed); the header parser finds the real value
        // elsewhere, so the guess is discarded.
        var noisy = WithLookalike();
        var header = Encoding.UTF8.GetBytes(noisy);
        var lookalike = EncryptionEntry.TryParsePlainPrefix(header.AsSpan(noisy.IndexOf("\"__encryption__\":\"", StringComparison.Ordinal) + 18), true, out _);
        Assert.That(lookalike, Has.Count.EqualTo(200), "the lookalike parses");
        Assert.That(Guess(header), Is.Null);
        Assert.That(Stored(header), Has.Count.EqualTo(200));
        Assert.That(Stored(header)["lora.0.A"].WrappedKey, Is.Not.EqualTo(lookalike!["lora.0.A"].WrappedKey));
    }

    [Test]
    public void AValueWithMoreThanTheObjectIsNotTakenFromTheGuess()
    {
        var text = HeaderText();
        var end = text.IndexOf("}\",\"__policy__\"", StringComparison.Ordinal);
        var header = Encoding.UTF8.GetBytes(text[..(end + 1)] + "x" + text[(end + 1)..]);
        Assert.That(Guess(header), Is.Null);
        Assert.That(() => Stored(header), Throws.InstanceOf<CryptoHeaderException>());
    }

    [Test]
    public void AStoredValueOfAnotherArrayIsNotTakenFromTheGuess()
    {
        var header = Encoding.UTF8.GetBytes(HeaderText());
        var early = SpeculativeEncryption.Start(header)!;
        var copy = SafetensorsHeader.ParseOwned((byte[])header.Clone(), null);
        copy.TryGetStoredValue(ReservedFields.Encryption, out var stored);
        Assert.That(early.TryGetResult(stored), Is.Null);
    }

    [Test]
    public void NoParseIsStartedForASmallHeader()
    {
        var small = Tmp.File("small.ct");
        CryptoTensorsWriter.Write(small, [TestModels.Tensor("w", Dtype.F32, [4])], new WriterOptions { MasterKey = Master, SigningKey = Signer });
        var file = File.ReadAllBytes(small);
        Assert.That(SpeculativeEncryption.Start(file.AsSpan(8, (int)BitConverter.ToUInt64(file, 0)).ToArray()), Is.Null);
    }

    [Test]
    public void OpenOfAHeaderWithALookalikeUsesTheSignedValue()
    {
        // End to end: the signature covers the canonical form (the real value, not the unknown field), so the file opens
        // and decrypts with the real wrapped keys; taking the lookalike's would fail to unwrap.
        var noisy = WithLookalike();
        ReplaceHeader(Encoding.UTF8.GetBytes(noisy));
        using var r = Open();
        Assert.That(r.Tensors, Has.Count.EqualTo(200));
        Assert.That(r.ReadTensor("lora.5.A"), Is.EqualTo(TestModels.Plain([TestModels.Tensor("lora.5.A", Dtype.F32, [4, 4], 5)])["lora.5.A"]));
    }
}
