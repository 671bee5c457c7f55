using System.Text;
using CryptoTensors.Gpu.Format;
using FsCheck;
using FsCheck.Fluent;

namespace CryptoTensors.Gpu.Tests.Format;

/// <summary>serde_json compact output (FORMAT.md §1.6) and UTF-8 byte order of keys.</summary>
public class CompactJsonWriterTests
{
    private static string Str(string value)
    {
        var w = new CompactJsonWriter();
        w.String(value);
        return w.ToUtf8String();
    }

    private static byte[] StrBytes(string value)
    {
        var w = new CompactJsonWriter();
        w.String(value);
        return w.ToArray();
    }

    [TestCase("", ExpectedResult = "\"\"")]
    [TestCase("abc", ExpectedResult = "\"abc\"")]
    [TestCase("\"", ExpectedResult = "\"\\\"\"")]
    [TestCase("\\", ExpectedResult = "\"\\\\\"")]
    [TestCase("\b", ExpectedResult = "\"\\b\"")]
    [TestCase("\f", ExpectedResult = "\"\\f\"")]
    [TestCase("\n", ExpectedResult = "\"\\n\"")]
    [TestCase("\r", ExpectedResult = "\"\\r\"")]
    [TestCase("\t", ExpectedResult = "\"\\t\"")]
    [TestCase("\0", ExpectedResult = "\"\\u0000\"")]
    [TestCase("\u0001", ExpectedResult = "\"\\u0001\"")]
    [TestCase("\u000b", ExpectedResult = "\"\\u000b\"")]
    [TestCase("\u000e", ExpectedResult = "\"\\u000e\"")]
    [TestCase("\u001a", ExpectedResult = "\"\\u001a\"")]
    [TestCase("\u001f", ExpectedResult = "\"\\u001f\"")]
    [TestCase("/", ExpectedResult = "\"/\"")]
    [TestCase("+<>&'", ExpectedResult = "\"+<>&'\"")]
    [TestCase("\u007f", ExpectedResult = "\"\u007f\"")]
    [TestCase("\u0080\u00e9\u2028\u2029\ufeff\uffff", ExpectedResult = "\"\u0080\u00e9\u2028\u2029\ufeff\uffff\"")]
    [TestCase("\U0001F600\U0010FFFF", ExpectedResult = "\"\U0001F600\U0010FFFF\"")]
    [TestCase("a\"b\\c\nd", ExpectedResult = "\"a\\\"b\\\\c\\nd\"")]
    [TestCase("package model\nallow = true", ExpectedResult = "\"package model\\nallow = true\"")]
    public string EscapingRules(string value) => Str(value);

    [Test]
    public void EveryControlCharacterHasTheSerdeForm()
    {
        for (var c = 0; c < 0x20; c++)
        {
            var expected = c switch
            {
                0x08 => "\\b",
                0x0C => "\\f",
                0x0A => "\\n",
                0x0D => "\\r",
                0x09 => "\\t",
                _ => "\\u00" + c.ToString("x2", System.Globalization.CultureInfo.InvariantCulture),
            };
            Assert.That(Str(((char)c).ToString()), Is.EqualTo("\"" + expected + "\""), $"U+{c:X4}");
        }
    }

    [Test]
    public void NothingAboveU001FOtherThanQuoteAndBackslashIsEscaped()
    {
        for (var c = 0x20; c < 0xD800; c++)
        {
            if (c is '"' or '\\') continue;
            var s = ((char)c).ToString();
            Assert.That(StrBytes(s), Is.EqualTo(Encoding.UTF8.GetBytes("\"" + s + "\"")), $"U+{c:X4}");
        }
    }

    [Test]
    public void NonAsciiIsRawUtf8Bytes()
        => Assert.That(StrBytes("\u00e9\U0001F600"), Is.EqualTo(new byte[] { 0x22, 0xC3, 0xA9, 0xF0, 0x9F, 0x98, 0x80, 0x22 }));

    // Attribute arguments are stored as UTF-8, which cannot hold a lone surrogate: build the strings in code.
    // The adapter may pass case arguments through UTF-8 as well, so the cases carry an index into this table.
    private static readonly string[] LoneSurrogateValues = ["\uD800", "\uDFFF", "a\uD83D", "\uDE00b", "\uDE00\uD83D", "\U0001F600\uD83D"];

    private static IEnumerable<int> LoneSurrogates() => Enumerable.Range(0, LoneSurrogateValues.Length);

    [TestCaseSource(nameof(LoneSurrogates))]
    public void LoneSurrogateIsAnError(int index)
    {
        var value = LoneSurrogateValues[index];
        Assert.That(System.Text.Unicode.Utf8.FromUtf16(value, new byte[64], out _, out _, replaceInvalidSequences: false),
            Is.EqualTo(System.Buffers.OperationStatus.InvalidData), "the case really holds a lone surrogate");
        var ex = Assert.Throws(Is.InstanceOf<CryptoTensorsException>(), () => Str(value)) as CryptoTensorsException;
        Assert.That(ex!.Code, Is.EqualTo(ErrorCode.InvalidJson));
        var ex2 = Assert.Throws(Is.InstanceOf<CryptoTensorsException>(), () =>
        {
            var w = new CompactJsonWriter();
            w.StartObject();
            w.Name(value);
        }) as CryptoTensorsException;
        Assert.That(ex2!.Code, Is.EqualTo(ErrorCode.InvalidJson));
    }

    [Test]
    public void StructureIsCompact()
    {
        var w = new CompactJsonWriter(1);
        w.StartObject();
        w.Property("a", "x");
        w.Property("n", 0UL);
        w.Name("arr");
        w.StartArray();
        w.Number(1);
        w.Number(ulong.MaxValue);
        w.StartObject();
        w.EndObject();
        w.StartArray();
        w.EndArray();
        w.Bool(true);
        w.Bool(false);
        w.String("s");
        w.EndArray();
        w.Name("o");
        w.StartObject();
        w.Property("k\n", "v\t");
        w.EndObject();
        w.Name("e");
        w.StartArray();
        w.EndArray();
        w.Name("raw");
        w.RawValue("{\"z\":[]}"u8);
        w.Name("u8"u8);
        w.String("last");
        w.EndObject();
        Assert.That(w.ToUtf8String(),
            Is.EqualTo("{\"a\":\"x\",\"n\":0,\"arr\":[1,18446744073709551615,{},[],true,false,\"s\"],\"o\":{\"k\\n\":\"v\\t\"},\"e\":[],\"raw\":{\"z\":[]},\"u8\":\"last\"}"));
        Assert.That(w.WrittenSpan.ToArray(), Is.EqualTo(w.ToArray()));
    }

    [TestCase(0UL, ExpectedResult = "0")]
    [TestCase(7UL, ExpectedResult = "7")]
    [TestCase(10UL, ExpectedResult = "10")]
    [TestCase(100_000_000UL, ExpectedResult = "100000000")]
    [TestCase(ulong.MaxValue, ExpectedResult = "18446744073709551615")]
    public string NumbersArePlainDecimal(ulong value)
    {
        var w = new CompactJsonWriter();
        w.Number(value);
        return w.ToUtf8String();
    }

    [Test]
    public void Utf8NameIsEscapedToo()
    {
        var w = new CompactJsonWriter();
        w.StartObject();
        w.Name("a\"\\\u0001\u00e9"u8);
        w.Number(1);
        w.EndObject();
        Assert.That(w.ToUtf8String(), Is.EqualTo("{\"a\\\"\\\\\\u0001\u00e9\":1}"));
    }

    [Test]
    public void OutputIsReadBackByAStrictJsonParser()
    {
        var all = new StringBuilder();
        for (var c = 0; c < 0x100; c++) all.Append((char)c);
        all.Append("\u2028\U0001F600\uFFFF");
        var w = new CompactJsonWriter();
        w.StartObject();
        w.Property(all.ToString(), all.ToString());
        w.EndObject();
        using var doc = System.Text.Json.JsonDocument.Parse(w.ToArray());
        var p = doc.RootElement.EnumerateObject().Single();
        Assert.That(p.Name, Is.EqualTo(all.ToString()));
        Assert.That(p.Value.GetString(), Is.EqualTo(all.ToString()));
    }

    // ---- Utf8Order ------------------------------------------------------------------------------------------------

    private static int Sign(int x) => Math.Sign(x);

    private static int ByteOrder(string a, string b)
        => Sign(Encoding.UTF8.GetBytes(a).AsSpan().SequenceCompareTo(Encoding.UTF8.GetBytes(b)));

    [Test]
    public void AstralSortsAfterHighBmpUnlikeOrdinalUtf16()
    {
        const string astral = "\U0001F600"; // F0 9F 98 80 (UTF-16 D83D DE00)
        const string fullwidthTilde = "\uFF5E"; // EF BD 9E
        Assert.That(Utf8Order.Instance.Compare(astral, fullwidthTilde), Is.GreaterThan(0));
        Assert.That(Utf8Order.Instance.Compare(fullwidthTilde, astral), Is.LessThan(0));
        Assert.That(string.CompareOrdinal(astral, fullwidthTilde), Is.LessThan(0), "ordinal UTF-16 order differs: this is the trap");
        Assert.That(Utf8Order.Instance.Compare("a" + astral, "a" + fullwidthTilde + "z"), Is.GreaterThan(0));
        Assert.That(Utf8Order.Instance.Compare("\uE000", "\U00010000"), Is.LessThan(0));
        Assert.That(Utf8Order.Instance.Compare("\uD7FF", "\U00010000"), Is.LessThan(0));
    }

    [TestCase("a", "b", -1)]
    [TestCase("b", "a", 1)]
    [TestCase("A", "a", -1)]
    [TestCase("Z", "a", -1)]
    [TestCase("_", "a", -1)]
    [TestCase("a", "a", 0)]
    [TestCase("", "", 0)]
    [TestCase("", "a", -1)]
    [TestCase("a", "", 1)]
    [TestCase("ab", "abc", -1)]
    [TestCase("abc", "ab", 1)]
    [TestCase("abc", "abd", -1)]
    [TestCase("a\0", "a", 1)]
    [TestCase("__metadata__", "a", -1)]
    [TestCase("\u007f", "\u0080", -1)]
    [TestCase("\u00ff", "\u0100", -1)]
    [TestCase("\U0001F600", "\U0001F600x", -1)]
    [TestCase("\U0001F600x", "\U0001F600", 1)]
    [TestCase("\U0001F600", "\U0001F601", -1)]
    [TestCase("\U00010000", "\U0010FFFF", -1)]
    [TestCase("\uFF5E", "\uFF5E\U0001F600", -1)]
    public void Utf8OrderCases(string a, string b, int expected)
    {
        Assert.That(Sign(Utf8Order.Instance.Compare(a, b)), Is.EqualTo(expected));
        Assert.That(ByteOrder(a, b), Is.EqualTo(expected), "reference: UTF-8 byte comparison");
    }

    [Test]
    public void NullsSortFirst()
    {
        Assert.That(Utf8Order.Instance.Compare(null, "a"), Is.LessThan(0));
        Assert.That(Utf8Order.Instance.Compare("a", null), Is.GreaterThan(0));
        Assert.That(Utf8Order.Instance.Compare(null, null), Is.EqualTo(0));
    }

    private static readonly Gen<string> Piece = Gen.OneOf(
        Gen.Elements("a", "b", "A", "_", "\0", "\u007f", "\u00e9", "\u0800", "\uD7FF", "\uE000", "\uFF5E", "\uFFFF",
            "\U00010000", "\U0001F600", "\U0010FFFF"),
        Gen.Choose(0x20, 0x7E).Select(c => ((char)c).ToString()),
        Gen.Choose(0x80, 0xD7FF).Select(c => ((char)c).ToString()),
        Gen.Choose(0xE000, 0xFFFF).Select(c => ((char)c).ToString()),
        Gen.Choose(0x10000, 0x10FFFF).Select(char.ConvertFromUtf32));

    internal static readonly Gen<string> UnicodeString = Gen.ListOf(Piece).Select(p => string.Concat(p));

    [Test]
    public void Utf8OrderEqualsByteOrderOnRandomStrings()
    {
        var pairs = Gen.Two(UnicodeString.Resize(8)).ToArbitrary();
        Prop.ForAll(pairs, p =>
        {
            var (a, b) = p;
            var got = Sign(Utf8Order.Instance.Compare(a, b));
            var want = ByteOrder(a, b);
            if (got != want) throw new InvalidOperationException($"Compare({Escape(a)}, {Escape(b)}) = {got}, UTF-8 bytes say {want}");
            if (Sign(Utf8Order.Instance.Compare(b, a)) != -want) throw new InvalidOperationException("not antisymmetric");
        }).QuickCheckThrowOnFailure();
    }

    internal static string Escape(string s) => string.Concat(s.Select(c => c is >= ' ' and < '\u007f' ? c.ToString() : $"\\u{(int)c:x4}"));
}
