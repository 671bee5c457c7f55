using System.Text;
using CryptoTensors.Gpu.Crypto;

namespace CryptoTensors.Gpu.Tests.Crypto;

/// <summary>
/// The fast path of the <c>__encryption__</c> parser: whatever it accepts, the general parser accepts with the same
/// entries; it declines (leaving refusals to the general parser) on anything else.
/// </summary>
public class EncryptionFastPathTests
{
    private static string Canonical(int n, bool chunked, int seed)
    {
        var rng = new Random(seed);
        byte[] Bytes(int k) { var b = new byte[k]; rng.NextBytes(b); return b; }
        var entries = new Dictionary<string, EncryptionEntry>(StringComparer.Ordinal);
        for (var i = 0; i < n; i++)
        {
            entries[$"layer.{i}.w" + (i % 3 == 0 ? "\u00e9\U0001F600" : "")] = new EncryptionEntry
            {
                WrappedKey = Bytes(32), KeyIv = Bytes(12), KeyTag = Bytes(16),
                Iv = chunked ? [] : Bytes(12), Tag = chunked ? [] : Bytes(16),
                BaseIv = chunked ? Bytes(12) : [], Tags = chunked ? Bytes(16 * (1 + i % 3)) : [],
            };
        }
        return EncryptionEntry.Serialize(entries, chunked);
    }

    private static void AssertSame(Dictionary<string, EncryptionEntry> a, Dictionary<string, EncryptionEntry> b, string input)
    {
        Assert.That(a.Keys, Is.EqualTo(b.Keys), input);
        foreach (var (k, x) in a)
        {
            var y = b[k];
            Assert.That(new[] { x.WrappedKey, x.KeyIv, x.KeyTag, x.Iv, x.Tag, x.BaseIv, x.Tags },
                Is.EqualTo(new[] { y.WrappedKey, y.KeyIv, y.KeyTag, y.Iv, y.Tag, y.BaseIv, y.Tags }), input);
        }
    }

    /// <summary>Where the fast path gives an answer, the general parser gives the same one.</summary>
    private static bool Check(string json)
    {
        var utf8 = Encoding.UTF8.GetBytes(json);
        var fast = EncryptionEntry.TryParsePlain(utf8);
        if (fast is null) return false;
        Dictionary<string, EncryptionEntry> general;
        try { general = EncryptionEntry.ParseGeneral(utf8); }
        catch (CryptoTensorsException e)
        {
            Assert.Fail($"the fast path accepted what the general parser refuses ({e.Message}): {json}");
            return true;
        }
        AssertSame(fast, general, json);
        return true;
    }

    [Test]
    public void WriterOutputTakesTheFastPath()
    {
        foreach (var chunked in new[] { false, true })
        foreach (var n in new[] { 0, 1, 5, 300 })
            Assert.That(Check(Canonical(n, chunked, n)), Is.True, $"{n} entries, chunked {chunked}");
    }

    [TestCase("""{"a":{"wrapped_key":"AAAA","key_iv":"AAAA","key_tag":"AAAA","iv":null,"tag":""}}""", true)]
    [TestCase(" {\n\"a\" : { \"wrapped_key\" :\t\"AAAA\" , \"key_iv\":\"AAAA\",\"key_tag\":\"AAAA\" } }\r\n", true)]
    [TestCase("""{"a":{"wrapped_key":"AAAA","key_iv":"AAAA","key_tag":"AAAA","enc_algo":"x"}}""", false)]
    [TestCase("""{"a":{"wrapped_key":"AAAA","key_iv":"AAAA","key_tag":null}}""", false)]
    [TestCase("""{"a":{"wrapped_key":"AAAA","key_iv":"AAAA","key_tag":""}}""", false)]
    [TestCase("""{"a":{"wrapped_key":"AAAA","key_iv":"AAAA"}}""", false)]
    [TestCase("""{"a":{"wrapped_key":"AAAA","key_iv":"AAAA","key_tag":"AAAA","key_tag":"AAAA"}}""", false)]
    [TestCase("""{"a":{"wrapped_key":"AAAA","key_iv":"AAAA","key_tag":"AAAA"},"a":{"wrapped_key":"AAAA","key_iv":"AAAA","key_tag":"AAAA"}}""", false)]
    [TestCase("""{"\u0061":{"wrapped_key":"AAAA","key_iv":"AAAA","key_tag":"AAAA"}}""", false)]
    [TestCase("""{"a":{"wrapped_key":"AAA=","key_iv":"AAAA","key_tag":"AB=="}}""", false)]
    [TestCase("""{"a":{"wrapped_key":"AAAA","key_iv":"AAAA","key_tag":"AAAA"}} x""", false)]
    [TestCase("""{"a":{"wrapped_key":"AAAA","key_iv":"AAAA","key_tag":"AAAA"},}""", false)]
    [TestCase("""{"a":{"wrapped_key":"AAAA","key_iv":"AAAA","key_tag":"AAAA",}}""", false)]
    [TestCase("""{"a":{"wrapped_key":"AAAA","key_iv":"AAAA","key_tag":"AAAA","iv":nul}}""", false)]
    [TestCase("""{"a":{"wrapped_key":"AAAA","key_iv":"AAAA","key_tag":"AAAA","iv":12}}""", false)]
    [TestCase("""{"a<US>":{"wrapped_key":"AAAA","key_iv":"AAAA","key_tag":"AAAA"}}""", false)]
    [TestCase("""{"a<DEL>":{"wrapped_key":"AAAA","key_iv":"AAAA","key_tag":"AAAA"}}""", true)]
    [TestCase("{}", true)]
    [TestCase("{", false)]
    [TestCase("", false)]
    [TestCase("[]", false)]
    public void FixedCases(string json, bool fast)
    {
        // Control characters are spelled out in the cases: test names holding them do not reach the runner.
        var text = json.Replace("<US>", "\u001f", StringComparison.Ordinal).Replace("<DEL>", "\u007f", StringComparison.Ordinal);
        Assert.That(Check(text), Is.EqualTo(fast), json);
    }

    /// <summary><paramref name="text"/> with one to three characters removed, inserted from <paramref name="alphabet"/> or replaced.</summary>
    private static string Mutate(string text, Random rng, string alphabet)
    {
        var chars = text.ToList();
        for (var m = rng.Next(1, 4); m > 0 && chars.Count > 0; m--)
        {
            var at = rng.Next(chars.Count);
            switch (rng.Next(3))
            {
                case 0: chars.RemoveAt(at); break;
                case 1: chars.Insert(at, alphabet[rng.Next(alphabet.Length)]); break;
                default: chars[at] = alphabet[rng.Next(alphabet.Length)]; break;
            }
        }
        return new string(chars.ToArray());
    }

    [Test]
    public void RandomMutationsNeverMakeTheFastPathDisagree()
    {
        var rng = new Random(11);
        const string alphabet = "{}[]:,\" \n\\/nul0Aa=+bt\u0001\u001f\u00e9";
        var taken = 0;
        for (var round = 0; round < 20_000; round++)
        {
            if (Check(Mutate(Canonical(rng.Next(1, 4), rng.Next(2) == 0, round), rng, alphabet))) taken++;
        }
        Assert.That(taken, Is.GreaterThan(100), "some mutants (whitespace, names) still take the fast path");
    }

    /// <summary>The JSON text as a header stores it inside the <c>__encryption__</c> string: canonical (serde) escaping.</summary>
    private static byte[] Stored(string json)
    {
        var w = new CryptoTensors.Gpu.Format.PooledBufferWriter(json.Length * 2 + 16);
        CryptoTensors.Gpu.Format.CanonicalJson.WriteEscapedContent(w, json);
        var bytes = w.WrittenSpan.ToArray();
        w.Dispose();
        return bytes;
    }

    /// <summary>
    /// The stored-form fast path on <paramref name="stored"/>: where it gives an answer, the stored bytes must be a valid
    /// JSON string whose value the general parser reads to the same entries. True when it answered.
    /// </summary>
    private static bool CheckStored(byte[] stored)
    {
        var fast = EncryptionEntry.TryParsePlain(stored, inString: true);
        // The parse of the same bytes followed by the rest of a header (what the reader starts before the header is
        // parsed), taken where it stopped inside the value with only whitespace after: the same answer.
        byte[] withRest = [.. stored, .. "\",\"__policy__\":\"{}\"},\"t\":{}}"u8];
        var prefix = EncryptionEntry.TryParsePlainPrefix(withRest, inString: true, out var consumed);
        var viaPrefix = prefix is not null && consumed <= stored.Length && CryptoTensors.Gpu.Format.JsonScan.Ends(stored, consumed) ? prefix : null;
        Assert.That(viaPrefix is null, Is.EqualTo(fast is null), Encoding.UTF8.GetString(stored));
        if (fast is null) return false;
        AssertSame(viaPrefix!, fast, Encoding.UTF8.GetString(stored));
        string value;
        try { value = System.Text.Json.JsonSerializer.Deserialize<string>([(byte)'"', .. stored, (byte)'"'])!; }
        catch (System.Text.Json.JsonException e)
        {
            Assert.Fail($"the stored-form fast path accepted bytes that are no JSON string ({e.Message}): {Encoding.UTF8.GetString(stored)}");
            return true;
        }
        Dictionary<string, EncryptionEntry> general;
        try { general = EncryptionEntry.ParseGeneral(Encoding.UTF8.GetBytes(value)); }
        catch (CryptoTensorsException e)
        {
            Assert.Fail($"the stored-form fast path accepted what the general parser refuses ({e.Message}): {value}");
            return true;
        }
        AssertSame(fast, general, value);
        // And ParseStored (fast path or fallback) reads the same entries.
        AssertSame(EncryptionEntry.ParseStored(stored, () => value), general, value);
        return true;
    }

    [Test]
    public void WriterOutputIsParsedInItsStoredForm()
    {
        foreach (var chunked in new[] { false, true })
        foreach (var n in new[] { 0, 1, 5, 300 })
            Assert.That(CheckStored(Stored(Canonical(n, chunked, n))), Is.True, $"{n} entries, chunked {chunked}");
    }

    [TestCase("""{"a":{"wrapped_key":"AAAA","key_iv":"AAAA","key_tag":"AAAA","iv":null}}""", true)]
    [TestCase("""{ "a" : {"wrapped_key":"AAAA", "key_iv":"AAAA","key_tag":"AAAA"} } """, true)]
    [TestCase("{\n\"a\":{\"wrapped_key\":\"AAAA\",\"key_iv\":\"AAAA\",\"key_tag\":\"AAAA\"}}", false)] // whitespace stored as \n
    [TestCase("""{"a\\":{"wrapped_key":"AAAA","key_iv":"AAAA","key_tag":"AAAA"}}""", false)] // a backslash in a name
    [TestCase("""{"a\"":{"wrapped_key":"AAAA","key_iv":"AAAA","key_tag":"AAAA"}}""", false)] // a quote in a name
    [TestCase("""{"a":{"wrapped_key":"AA\/A","key_iv":"AAAA","key_tag":"AAAA"}}""", false)]
    [TestCase("""{"a":{"wrapped_key":"AAAA","key_iv":"AAAA","key_tag":"AAAA"},"a":{"wrapped_key":"AAAA","key_iv":"AAAA","key_tag":"AAAA"}}""", false)]
    public void StoredFormCases(string json, bool fast)
        => Assert.That(CheckStored(Stored(json)), Is.EqualTo(fast), json);

    [TestCase("""{\u0022a\u0022:{\"wrapped_key\":\"AAAA\",\"key_iv\":\"AAAA\",\"key_tag\":\"AAAA\"}}""", true)]
    [TestCase("""{\"a\":{\"wrapped_key\":\"AAAA\",\"key_iv\":\"AAAA\",\"key_tag\":\"AA\/A\"}}""", true)]
    [TestCase("""{\"a\":{\"wrapped_key\":\"AAAA\",\"key_iv\":\"AAAA\",\"key_tag\":\"AAAA\"}\t}""", true)]
    [TestCase("{\\\"a\\\":{\\\"wrapped_key\\\":\\\"AAAA\\\",\\\"key_iv\\\":\\\"AAAA\\\",\\\"key_tag\\\":\\\"AAAA\\\"}}\\\"", false)] // a stray quote after the object
    public void StoredFormsWithOtherEscapesAreDeclinedButStillParsed(string stored, bool valid)
    {
        var bytes = Encoding.UTF8.GetBytes(stored);
        Assert.That(CheckStored(bytes), Is.False, stored);
        var value = System.Text.Json.JsonSerializer.Deserialize<string>([(byte)'"', .. bytes, (byte)'"'])!;
        // The fallback parses the unescaped value, and reports its errors.
        if (valid) Assert.That(EncryptionEntry.ParseStored(bytes, () => value), Has.Count.EqualTo(1), stored);
        else Assert.That(() => EncryptionEntry.ParseStored(bytes, () => value), Throws.InstanceOf<CryptoTensorsException>(), stored);
    }

    [Test]
    public void AStoredFormWithABareQuoteIsDeclined()
    {
        // A bare quote cannot occur inside a stored string; the scanner must not take it for a delimiter either way.
        var stored = Encoding.UTF8.GetBytes("{\"a\":{\"wrapped_key\":\"AAAA\",\"key_iv\":\"AAAA\",\"key_tag\":\"AA\"AA\"}}");
        Assert.That(EncryptionEntry.TryParsePlain(stored, inString: true), Is.Null);
        Assert.That(EncryptionEntry.TryParsePlain("{\"a\":{}}"u8, inString: true), Is.Null, "unescaped text is not the stored form");
    }

    [Test]
    public void RandomMutationsOfTheStoredFormNeverMakeTheFastPathDisagree()
    {
        var rng = new Random(13);
        const string alphabet = "{}[]:,\" \\/nul0Aa=+btu\u0001\u00e9";
        var taken = 0;
        for (var round = 0; round < 20_000; round++)
        {
            var mutant = Mutate(Encoding.UTF8.GetString(Stored(Canonical(rng.Next(1, 4), rng.Next(2) == 0, round))), rng, alphabet);
            if (CheckStored(Encoding.UTF8.GetBytes(mutant))) taken++;
        }
        Assert.That(taken, Is.GreaterThan(100), "some mutants (spaces, names) still take the fast path");
    }
}
