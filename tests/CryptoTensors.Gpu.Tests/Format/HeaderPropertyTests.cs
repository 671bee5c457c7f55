using System.Buffers.Binary;
using System.Text;
using CryptoTensors.Gpu.Format;
using FsCheck;
using FsCheck.Fluent;

namespace CryptoTensors.Gpu.Tests.Format;

/// <summary>
/// Property tests: header serialization round-trips through the reader for random tensors and metadata, and the
/// reader refuses arbitrary bytes only with <see cref="CryptoTensorsException"/>.
/// </summary>
public class HeaderPropertyTests
{
    public sealed record TensorSpec(string Name, Dtype Dtype, ulong[] Shape)
    {
        public override string ToString() => $"{CompactJsonWriterTests.Escape(Name)}:{Dtype.Name()}[{string.Join(',', Shape)}]";
    }

    public sealed record HeaderCase(Dictionary<string, string>? Metadata, List<TensorSpec> Tensors)
    {
        public override string ToString()
            => "meta=" + (Metadata is null ? "null" : "{" + string.Join(", ", Metadata.Select(kv => CompactJsonWriterTests.Escape(kv.Key) + "=" + CompactJsonWriterTests.Escape(kv.Value))) + "}")
               + " tensors=[" + string.Join(", ", Tensors) + "]";
    }

    // ---- generators -----------------------------------------------------------------------------------------------

    private static readonly Gen<string> Piece = Gen.Frequency(
        (4, Gen.Choose(0x20, 0x7E).Select(c => ((char)c).ToString())),
        (2, Gen.Choose(0x00, 0x1F).Select(c => ((char)c).ToString())),
        (2, Gen.Elements("\"", "\\", "/", "\u007f", "__", ".", "<", "&", "'")),
        (2, Gen.Choose(0x80, 0xD7FF).Select(c => ((char)c).ToString())),
        (1, Gen.Choose(0xE000, 0xFFFF).Select(c => ((char)c).ToString())),
        (1, Gen.Elements("\uFF5E", "\uFFFF", "\uE000", "\U0001F600", "\U00010000", "\U0010FFFF")),
        (2, Gen.Choose(0x10000, 0x10FFFF).Select(char.ConvertFromUtf32)));

    private static Gen<string> Text(int maxPieces) => Gen.Choose(0, maxPieces).SelectMany(n => Gen.ListOf(Piece, n)).Select(p => string.Concat(p));

    private static readonly Gen<ulong> Dim = Gen.Frequency((1, Gen.Constant(0UL)), (4, Gen.Choose(1, 5).Select(d => (ulong)d)));

    private static readonly Gen<ulong[]> ShapeGen = Gen.Choose(0, 3).SelectMany(rank => Gen.ArrayOf(Dim, rank));

    private static readonly Gen<TensorSpec> TensorGen =
        from name in Text(6)
        from dtype in Gen.Elements(Dtypes.All.ToArray())
        from shape in ShapeGen
        select new TensorSpec(name, dtype, shape);

    private static readonly Gen<TensorSpec> AlignedTensorGen = TensorGen.Where(t => t.Dtype.TryByteSize(t.Shape, out _) is null);

    private static readonly Gen<Dictionary<string, string>?> MetadataGen = Gen.Frequency(
        (1, Gen.Constant<Dictionary<string, string>?>(null)),
        (4, Gen.Choose(0, 5).SelectMany(n => Gen.ListOf(Gen.Zip(Text(5), Text(12)), n))
            .Select(kvs =>
            {
                var d = new Dictionary<string, string>(StringComparer.Ordinal);
                foreach (var (k, v) in kvs) d[k] = v;
                return (Dictionary<string, string>?)d;
            })));

    private static readonly Gen<HeaderCase> CaseGen =
        from meta in MetadataGen
        from n in Gen.Choose(0, 8)
        from tensors in Gen.ListOf(AlignedTensorGen, n)
        select new HeaderCase(meta, tensors.DistinctBy(t => t.Name, StringComparer.Ordinal).Where(t => t.Name != "__metadata__").ToList());

    // ---- helpers --------------------------------------------------------------------------------------------------

    private static List<HeaderTensor> Layout(IEnumerable<TensorSpec> tensors)
    {
        var ordered = tensors.ToList();
        ordered.Sort((x, y) => WriterOrder.Compare(x.Dtype, x.Name, y.Dtype, y.Name));
        var result = new List<HeaderTensor>(ordered.Count);
        ulong offset = 0;
        foreach (var t in ordered)
        {
            if (t.Dtype.TryByteSize(t.Shape, out var size) is { } err) throw new InvalidOperationException($"generator produced {err}");
            result.Add(new HeaderTensor(t.Name, t.Dtype, t.Shape, offset, offset + size));
            offset += size;
        }
        return result;
    }

    private static byte[] FileOf(byte[] header, ulong dataLength)
    {
        var file = new byte[8 + header.Length + (int)dataLength];
        BinaryPrimitives.WriteUInt64LittleEndian(file, (ulong)header.Length);
        header.CopyTo(file, 8);
        return file;
    }

    private static void Require(bool ok, Func<string> message)
    {
        if (!ok) throw new InvalidOperationException(message());
    }

    private static Config Quick(int maxTest) => Config.QuickThrowOnFailure.WithMaxTest(maxTest);

    // ---- round trip -----------------------------------------------------------------------------------------------

    private static void RoundTrip(HeaderCase c)
    {
        var layout = Layout(c.Tensors);
        var json = HeaderSerializer.Serialize(c.Metadata, layout);
        var padded = HeaderSerializer.Pad(json);
        Require(padded.Length % 8 == 0, () => $"padded length {padded.Length} is not a multiple of 8");
        Require(padded.Length - json.Length is >= 0 and <= 7, () => $"{padded.Length - json.Length} padding bytes");
        Require(padded.AsSpan(0, json.Length).SequenceEqual(json), () => "padding changed the JSON");
        Require(padded.Skip(json.Length).All(b => b == (byte)' '), () => "padding is not spaces");

        var dataLength = layout.Count == 0 ? 0 : layout[^1].End;
        var file = FileOf(padded, dataLength);
        var h = SafetensorsHeaderTests.ParseFile(file);
        var headerText = Encoding.UTF8.GetString(json);

        Require(h.HeaderLength == padded.Length, () => $"HeaderLength {h.HeaderLength} != {padded.Length}");
        Require(h.DataLength == (long)dataLength, () => $"DataLength {h.DataLength} != {dataLength}");
        Require(h.Tensors.Count == layout.Count, () => $"{h.Tensors.Count} tensors parsed, {layout.Count} written: {headerText}");
        for (var i = 0; i < layout.Count; i++)
        {
            var want = layout[i];
            var got = h.Tensors[i];
            Require(got.Name == want.Name, () => $"tensor {i}: name {CompactJsonWriterTests.Escape(got.Name)} != {CompactJsonWriterTests.Escape(want.Name)} (offset order must equal writer order)");
            Require(got.Dtype == want.Dtype, () => $"{CompactJsonWriterTests.Escape(want.Name)}: dtype {got.Dtype} != {want.Dtype}");
            Require(got.Shape.SequenceEqual(want.Shape), () => $"{CompactJsonWriterTests.Escape(want.Name)}: shape differs");
            Require(got.Begin == want.Begin && got.End == want.End, () => $"{CompactJsonWriterTests.Escape(want.Name)}: offsets [{got.Begin},{got.End}) != [{want.Begin},{want.End})");
            Require(h.TryGetTensor(want.Name, out var byName) && ReferenceEquals(byName, got), () => $"lookup of {CompactJsonWriterTests.Escape(want.Name)} failed");
        }
        if (c.Metadata is null) Require(h.Metadata is null, () => "metadata appeared");
        else
        {
            Require(h.Metadata is not null && h.Metadata.Count == c.Metadata.Count, () => "metadata count differs");
            foreach (var (k, v) in c.Metadata)
                Require(h.Metadata!.TryGetValue(k, out var got) && got == v, () => $"metadata {CompactJsonWriterTests.Escape(k)} differs");
        }

        var again = HeaderSerializer.Serialize(h.Metadata, h.Tensors.Select(t => new HeaderTensor(t.Name, t.Dtype, t.Shape, t.Begin, t.End)));
        Require(again.AsSpan().SequenceEqual(json), () => $"re-serialization differs:\n{Encoding.UTF8.GetString(again)}\n{headerText}");
        Require(Canonical(h).AsSpan().SequenceEqual(json), () => $"canonical form differs:\n{Encoding.UTF8.GetString(Canonical(h))}\n{headerText}");
    }

    // ---- canonical re-serialization (the signed message) --------------------------------------------------------

    /// <summary>What <see cref="SafetensorsHeader.WriteCanonical"/> gives without excluding any key.</summary>
    private static byte[] Canonical(SafetensorsHeader h)
    {
        using var w = new PooledBufferWriter(16);
        h.WriteCanonical(w, null);
        return w.WrittenSpan.ToArray();
    }

    /// <summary>
    /// The header of <paramref name="c"/> written as valid but non-canonical JSON: random whitespace, every character of
    /// every string randomly raw (where JSON allows) or escaped in any legal form (\uXXXX in either case, \/), and an
    /// unknown field in some tensor objects; metadata in reverse order.
    /// </summary>
    private static byte[] Noisy(HeaderCase c, List<HeaderTensor> layout, int seed)
    {
        var rng = new Random(seed);
        var sb = new StringBuilder();
        void Ws() { if (rng.Next(4) == 0) sb.Append(" \t\r\n"[rng.Next(4)]); }
        void Str(string s)
        {
            sb.Append('"');
            foreach (var ch in s)
            {
                var mode = rng.Next(4);
                if (char.IsSurrogate(ch)) sb.Append(ch); // halves of a pair stay together, raw
                else if (ch is '"' or '\\' || ch < 0x20 || mode == 0)
                {
                    if (ch == '"' && mode < 2) sb.Append("\\\"");
                    else if (ch == '\\' && mode < 2) sb.Append("\\\\");
                    else if (ch == '\n' && mode < 2) sb.Append("\\n");
                    else sb.Append("\\u").Append(((int)ch).ToString(rng.Next(2) == 0 ? "x4" : "X4", System.Globalization.CultureInfo.InvariantCulture));
                }
                else if (ch == '/' && mode == 1) sb.Append("\\/");
                else sb.Append(ch);
            }
            sb.Append('"');
        }
        sb.Append('{');
        var first = true;
        if (c.Metadata is not null)
        {
            Ws(); Str("__metadata__"); Ws(); sb.Append(':'); Ws(); sb.Append('{');
            var firstEntry = true;
            foreach (var (k, v) in c.Metadata.Reverse())
            {
                if (!firstEntry) sb.Append(',');
                firstEntry = false;
                Ws(); Str(k); Ws(); sb.Append(':'); Ws(); Str(v); Ws();
            }
            sb.Append('}');
            first = false;
        }
        foreach (var t in layout)
        {
            if (!first) sb.Append(',');
            first = false;
            Ws(); Str(t.Name); Ws(); sb.Append(':'); Ws(); sb.Append('{');
            if (rng.Next(3) == 0) { Str("extra"); sb.Append(":[1,{\"x\":null}],"); }
            Str("data_offsets"); sb.Append(":[").Append(t.Begin).Append(',').Append(Ws2()).Append(t.End).Append("],");
            Str("shape"); sb.Append(":[").Append(string.Join(",", t.Shape)).Append("],");
            Str("dtype"); sb.Append(':'); Str(t.Dtype.Name());
            sb.Append('}');
        }
        Ws();
        sb.Append('}');
        return Encoding.UTF8.GetBytes(sb.ToString());

        string Ws2() => rng.Next(2) == 0 ? " " : "";
    }

    private static void CanonicalOfNoisyIsTheReserialization(HeaderCase c, int seed)
    {
        var layout = Layout(c.Tensors);
        var json = HeaderSerializer.Serialize(c.Metadata, layout);
        var noisy = Noisy(c, layout, seed);
        var dataLength = layout.Count == 0 ? 0 : layout[^1].End;
        var h = SafetensorsHeaderTests.ParseFile(FileOf(noisy, dataLength));
        var got = Canonical(h);
        Require(got.AsSpan().SequenceEqual(json), () => $"canonical form differs:\n{Encoding.UTF8.GetString(got)}\n{Encoding.UTF8.GetString(json)}\nfrom {Encoding.UTF8.GetString(noisy)}");
        // Straight from canonical bytes (every raw string copied) as well.
        var direct = SafetensorsHeaderTests.ParseFile(FileOf(HeaderSerializer.Pad(json), dataLength));
        Require(Canonical(direct).AsSpan().SequenceEqual(json), () => "canonical form of a canonical header differs");
    }

    /// <summary>
    /// Parses <paramref name="header"/> with the plain scanner allowed and with the general parser only: where the scanner
    /// took it, the general parser must accept it too, with the same tensors, metadata and canonical form.
    /// </summary>
    private static bool PlainAgreesWithGeneral(byte[] header)
    {
        if (!System.Text.Unicode.Utf8.IsValid(header)) return false; // checked before either parser runs
        if (!PlainHeaderParser.TryParse(header, out var m1, out var t1, out var b1)) return false;
        var text = Encoding.UTF8.GetString(header);
        HeaderMetadata? m2;
        List<TensorInfo> t2;
        Dictionary<string, TensorInfo> b2;
        try { SafetensorsHeader.ParseGeneral(header, out m2, out t2, out b2); }
        catch (CryptoTensorsException e)
        {
            throw new InvalidOperationException($"the plain scanner accepted what the general parser refuses ({e.Message}): {text}");
        }
        Require(t1.Count == t2.Count, () => $"tensor count differs: {text}");
        for (var i = 0; i < t1.Count; i++)
        {
            var (a, g) = (t1[i], t2[i]);
            Require(a.Name == g.Name && a.Dtype == g.Dtype && a.Shape.SequenceEqual(g.Shape) && a.Begin == g.Begin && a.End == g.End && a.RawName == g.RawName,
                () => $"tensor {i} differs: {a} / {g}: {text}");
        }
        Require(b1.Keys.Order(StringComparer.Ordinal).SequenceEqual(b2.Keys.Order(StringComparer.Ordinal)), () => $"names differ: {text}");
        Require((m1 is null) == (m2 is null), () => $"metadata presence differs: {text}");
        if (m1 is not null)
        {
            Require(m1.Count == m2!.Count, () => $"metadata count differs: {text}");
            foreach (var (k, v) in m1)
                Require(m2.TryGetValue(k, out var gv) && gv == v, () => $"metadata {CompactJsonWriterTests.Escape(k)} differs: {text}");
            Require(m1.Entries.SequenceEqual(m2.Entries), () => $"raw metadata differs: {text}");
        }
        return true;
    }

    [Test]
    public void PlainScannerAgreesWithTheGeneralParserForEverySpecialByteAtEveryPosition()
    {
        // The scanner looks for quotes, backslashes and control characters 32 bytes at a time: put each kind (and each
        // escape) at every position of a 100-byte metadata value and a 70-byte tensor name, across the block boundaries.
        string[] specials = ["\"", "\\", "\u0001", "\u001f", "\\\"", "\\\\", "\\/", "\\u0041", "\\u001f", "\\x", "\\", "\u00e9"];
        var taken = 0;
        foreach (var special in specials)
        {
            for (var at = 0; at <= 100; at++)
            {
                var value = new string('v', at) + special + new string('w', 100 - at);
                var name = new string('n', at % 70) + special + new string('m', 70 - at % 70);
                foreach (var (k, n) in new[] { (value, "t"), ("v", name) })
                {
                    var header = Encoding.UTF8.GetBytes("{\"__metadata__\":{\"k\":\"" + k + "\"},\"" + n + "\":{\"dtype\":\"U8\",\"shape\":[1],\"data_offsets\":[0,1]}}");
                    if (PlainAgreesWithGeneral(header)) taken++;
                    else
                    {
                        // Declined: the general parser decides, accepting or refusing with its typed error.
                        try { SafetensorsHeader.ParseGeneral(header, out _, out _, out _); }
                        catch (CryptoTensorsException) { }
                    }
                }
            }
        }
        Assert.That(taken, Is.GreaterThan(600), "values with valid escapes, and names without escapes, take the plain path");
    }

    [Test]
    public void PlainScannerAgreesWithTheGeneralParser()
    {
        var plain = 0;
        Check.One(Quick(500), Prop.ForAll(CaseGen.ToArbitrary(), ArbMap.Default.ArbFor<int>(), (c, seed) =>
        {
            var layout = Layout(c.Tensors);
            if (PlainAgreesWithGeneral(HeaderSerializer.Pad(HeaderSerializer.Serialize(c.Metadata, layout)))) plain++;
            PlainAgreesWithGeneral(Noisy(c, layout, seed));
        }));
        Assert.That(plain, Is.GreaterThan(100), "serialized headers take the plain path");
    }

    /// <summary>
    /// Values from <see cref="PlainHeaderParser.DeferredValueBytes"/> stored bytes are unescaped only when read: they must
    /// read (from any thread, first read racing) exactly as the general parser reads them, and re-serialize canonically.
    /// </summary>
    [Test]
    public void LargeMetadataValuesReadOnDemandAsTheGeneralParserReadsThem()
    {
        var rng = new Random(17);
        const string pieces = "ab\"\\/\n\t\u0001\u007f\u00e9\u4e2d\U0001F600{}:, ";
        string Big(int chars)
        {
            var sb = new StringBuilder(chars);
            while (sb.Length < chars)
            {
                var at = rng.Next(pieces.Length);
                // Never split a surrogate pair.
                if (char.IsHighSurrogate(pieces[at])) sb.Append(pieces, at, 2);
                else if (!char.IsLowSurrogate(pieces[at])) sb.Append(pieces[at]);
            }
            return sb.ToString();
        }
        for (var round = 0; round < 20; round++)
        {
            var meta = new Dictionary<string, string>(StringComparer.Ordinal)
            {
                ["__encryption__"] = Big(PlainHeaderParser.DeferredValueBytes + rng.Next(5000)),
                ["user"] = Big(PlainHeaderParser.DeferredValueBytes / 2),
                ["plain"] = new string('x', PlainHeaderParser.DeferredValueBytes + 1),
                ["small"] = "s\"",
            };
            var c = new HeaderCase(meta, [new TensorSpec("t", Dtype.U8, [3])]);
            var layout = Layout(c.Tensors);
            var canonical = HeaderSerializer.Serialize(meta, layout);
            // Also the canonical text with "/" stored as "\/": still the plain subset, but no longer canonical.
            var slashes = Encoding.UTF8.GetBytes(Encoding.UTF8.GetString(canonical).Replace("/", "\\/", StringComparison.Ordinal));
            foreach (var bytes in new[] { canonical, slashes, Noisy(c, layout, round) })
            {
                var h = SafetensorsHeader.ParseOwned(bytes.ToArray(), null);
                var general = SafetensorsHeader.ParseOwned(bytes.ToArray(), null, allowPlain: false);
                Require(h.ParsedPlain || ReferenceEquals(bytes, canonical) is false && ReferenceEquals(bytes, slashes) is false, () => "the plain scanner takes these headers");
                // First reads race on two threads.
                var values = new string[2][];
                Parallel.For(0, 2, k => values[k] = meta.Keys.Select(key => h.Metadata![key]).ToArray());
                foreach (var (key, i) in meta.Keys.Select((key, i) => (key, i)))
                {
                    Require(values[0][i] == meta[key] && values[1][i] == meta[key] && general.Metadata![key] == meta[key], () => $"value of {key} differs");
                    Require(ReferenceEquals(values[0][i], values[1][i]), () => $"{key} was materialized twice");
                }
                Require(h.Metadata!.OrderBy(kv => kv.Key, StringComparer.Ordinal).SequenceEqual(meta.OrderBy(kv => kv.Key, StringComparer.Ordinal)), () => "enumeration differs");
                Require(Canonical(h).AsSpan().SequenceEqual(canonical) && Canonical(general).AsSpan().SequenceEqual(canonical), () => "canonical form differs");
                Require(h.TryGetStoredValue("__encryption__", out var stored)
                    && System.Text.Json.JsonSerializer.Deserialize<string>([(byte)'"', .. stored.Span, (byte)'"']) == meta["__encryption__"], () => "stored bytes differ");
            }
        }
    }

    [Test]
    public void PlainScannerAgreesWithTheGeneralParserOnMutants()
    {
        var rng = new Random(5);
        const string alphabet = "{}[]:,\" \n\\/nul0123456789eE.-+uAadF_\u0001\u001f\u00e9";
        var sample = Gen.Sample(CaseGen, 300).ToArray();
        var plain = 0;
        for (var round = 0; round < 20_000; round++)
        {
            var c = sample[round % sample.Length];
            var layout = Layout(c.Tensors);
            var chars = (round % 2 == 0 ? Encoding.UTF8.GetString(HeaderSerializer.Serialize(c.Metadata, layout)) : Encoding.UTF8.GetString(Noisy(c, layout, round))).ToList();
            for (var m = rng.Next(1, 3); m > 0 && chars.Count > 0; m--)
            {
                var at = rng.Next(chars.Count);
                switch (rng.Next(3))
                {
                    case 0: chars.RemoveAt(at); break;
                    case 1: chars.Insert(at, alphabet[rng.Next(alphabet.Length)]); break;
                    default: chars[at] = alphabet[rng.Next(alphabet.Length)]; break;
                }
            }
            if (PlainAgreesWithGeneral(Encoding.UTF8.GetBytes(new string(chars.ToArray())))) plain++;
        }
        Assert.That(plain, Is.GreaterThan(200), "many mutants still take the plain path");
    }

    [TestCase("""{"__metadata__":{"k":"a\/b\u00E9\u0041\u00e9\n\u001f\\"}}""", true)]
    [TestCase("""{"__metadata__":{"k":"\uDC00"}}""", false)]
    [TestCase("""{"__metadata__":{"k":"\uD83D\uDE00"}}""", false)]
    [TestCase("""{"__metadata__":{"k":"a<US>b"}}""", false)]
    [TestCase("""{"__metadata__":{"k":"a<DEL>b"}}""", true)]
    [TestCase("""{"__metadata__":{"k":"\x"}}""", false)]
    [TestCase("""{"__metadata__":{"k":"\u12"}}""", false)]
    [TestCase("""{"__metadata__":null}""", true)]
    [TestCase("""{"__metadata__":nul}""", false)]
    [TestCase("""{"__metadata__":{"k":1}}""", false)]
    [TestCase("""{"__metadata__":{},"__metadata__":{}}""", false)]
    [TestCase("""{"__metadata__":{"k":"a","k":"b"}}""", false)]
    [TestCase("""{"\u0061":{"dtype":"F32","shape":[],"data_offsets":[0,4]}}""", false)]
    [TestCase("""{"a":{"dtype":"F32","shape":[],"data_offsets":[0,4]}}""", true)]
    [TestCase("""{"a":{"dtype":"F32","shape":[1,2,3,4,5,6,7,8,9],"data_offsets":[0,4]}}""", false)]
    [TestCase("""{"a":{"dtype":"F32","shape":[18446744073709551615],"data_offsets":[0,4]}}""", true)]
    [TestCase("""{"a":{"dtype":"F32","shape":[18446744073709551616],"data_offsets":[0,4]}}""", false)]
    [TestCase("""{"a":{"dtype":"F32","shape":[1.0],"data_offsets":[0,4]}}""", false)]
    [TestCase("""{"a":{"dtype":"F32","shape":[-1],"data_offsets":[0,4]}}""", false)]
    [TestCase("""{"a":{"dtype":"F32","shape":[01],"data_offsets":[0,4]}}""", false)]
    [TestCase("""{"a":{"dtype":"F32","shape":[1e2],"data_offsets":[0,4]}}""", false)]
    [TestCase("""{"a":{"dtype":"F33","shape":[],"data_offsets":[0,4]}}""", false)]
    [TestCase("""{"a":{"dtype":"F32","shape":[],"data_offsets":[0,4,5]}}""", false)]
    [TestCase("""{"a":{"dtype":"F32","shape":[],"data_offsets":[0,4],"x":1}}""", false)]
    [TestCase("""{"a":{"dtype":"F32","shape":[]}}""", false)]
    [TestCase("""{"a":{"dtype":"F32","shape":[],"data_offsets":[0,4]},"a":{"dtype":"F32","shape":[],"data_offsets":[0,4]}}""", false)]
    [TestCase("""{"a":{"dtype":"F32","shape":[],"data_offsets":[0,4]},}""", false)]
    [TestCase("""{"a":{"dtype":"F32","shape":[],"data_offsets":[0,4]}} x""", false)]
    [TestCase(" \t\r\n{ \"a\" : { \"shape\" : [ ] , \"dtype\" : \"F32\" , \"data_offsets\" : [ 0 , 4 ] } }        ", true)]
    [TestCase("\uFEFF{}", false)]
    [TestCase("{}", true)]
    [TestCase("", false)]
    public void PlainScannerOnFixedCases(string header, bool plain)
    {
        // Control characters are spelled out in the cases: test names holding them do not reach the runner.
        var text = header.Replace("<US>", "\u001f", StringComparison.Ordinal).Replace("<DEL>", "\u007f", StringComparison.Ordinal);
        Assert.That(PlainAgreesWithGeneral(Encoding.UTF8.GetBytes(text)), Is.EqualTo(plain), header);
    }

    [Test]
    public void LargeEscapedMetadataValuesAgree()
    {
        // Values above the scanner's parallel-unescape threshold, among small ones, with an escape that is not canonical.
        var big = string.Concat(Enumerable.Repeat("{\"a\":\"b\\c\u0001é\n\"}", 8000));
        var meta = new Dictionary<string, string> { ["__encryption__"] = big, ["a"] = "x", ["z"] = big + "/" };
        var json = Encoding.UTF8.GetString(HeaderSerializer.Pad(HeaderSerializer.Serialize(meta, [new HeaderTensor("t", Dtype.U8, [3], 0, 3)])));
        Assert.That(PlainAgreesWithGeneral(Encoding.UTF8.GetBytes(json)), Is.True);
        Assert.That(PlainAgreesWithGeneral(Encoding.UTF8.GetBytes(json.Replace("/", "\\/", StringComparison.Ordinal))), Is.True);
        var h = SafetensorsHeader.Parse(Encoding.UTF8.GetBytes(json), null);
        Assert.That(h.Metadata!["__encryption__"], Is.EqualTo(big));
        Assert.That(h.Metadata.Keys, Is.EqualTo(new[] { "__encryption__", "a", "z" }));
        // A duplicate key after a large value is still declined (and refused by the general parser).
        Assert.That(PlainAgreesWithGeneral(Encoding.UTF8.GetBytes(json.Replace("\"a\":\"x\"", "\"__encryption__\":\"x\"", StringComparison.Ordinal))), Is.False);
    }

    [Test]
    public void WrittenEncryptedHeadersTakeThePlainPath()
    {
        var meta = new Dictionary<string, string>
        {
            ["__encryption__"] = "{\"a\":{\"wrapped_key\":\"x\",\"tags\":\"y\"}}",
            ["__policy__"] = "{\"local\":\"package model\\nallow = true\",\"remote\":\"\"}",
            ["user"] = "é\u0001\\/",
        };
        var json = HeaderSerializer.Pad(HeaderSerializer.Serialize(meta, [new HeaderTensor("a", Dtype.F32, [32, 32], 0, 4096)]));
        Assert.That(PlainAgreesWithGeneral(json), Is.True);
    }

    [Test]
    public void CanonicalFormOfAnyEncodingIsTheReserialization()
        => Check.One(Quick(500), Prop.ForAll(CaseGen.ToArbitrary(), ArbMap.Default.ArbFor<int>(), CanonicalOfNoisyIsTheReserialization));

    [Test]
    public void CanonicalEscapeCheckAcceptsOnlyTheSerializersEscapes()
    {
        foreach (var ok in new[] { "", "abc", "\\\"", "\\\\", "\\b\\f\\n\\r\\t", "\\u0000\\u001f\\u000b\\u0019", "é/+<>&'\u007f" })
            Assert.That(CanonicalJson.IsCanonicalEscaped(Encoding.UTF8.GetBytes(ok)), Is.True, ok);
        foreach (var bad in new[] { "\\/", "\\u0041", "\\u001F", "\\u0008", "\\u000a", "\\u0020", "\\u00e9", "\\ud83d\\ude00", "\\u0100", "\\", "\\u00" })
            Assert.That(CanonicalJson.IsCanonicalEscaped(Encoding.UTF8.GetBytes(bad)), Is.False, bad);
    }

    [Test]
    public void SerializeParseRoundTrips()
        => Check.One(Quick(500), Prop.ForAll(CaseGen.ToArbitrary(), RoundTrip));

    [Test]
    public void RoundTripsWithManyTiedEmptyTensors()
    {
        // Bias towards zero-size tensors so that ties at one offset (§4.4) are frequent.
        var empty = from name in Text(3)
                    from dtype in Gen.Elements(Dtypes.All.ToArray())
                    from rank in Gen.Choose(1, 3)
                    from zeroAt in Gen.Choose(0, rank - 1)
                    select new TensorSpec(name, dtype, Enumerable.Range(0, rank).Select(i => i == zeroAt ? 0UL : 2UL).ToArray());
        var gen = from meta in MetadataGen
                  from n in Gen.Choose(2, 10)
                  from tensors in Gen.ListOf(Gen.Frequency((3, empty), (1, AlignedTensorGen)), n)
                  select new HeaderCase(meta, tensors.DistinctBy(t => t.Name, StringComparer.Ordinal).Where(t => t.Name != "__metadata__").ToList());
        Check.One(Quick(300), Prop.ForAll(gen.ToArbitrary(), RoundTrip));
    }

    [Test]
    public void RoundTripHoldsForAFixedAwkwardCase()
    {
        // Deterministic companion of the properties: astral vs U+FF5E names, controls, ties, metadata escapes.
        RoundTrip(new HeaderCase(
            new Dictionary<string, string> { ["\U0001F600"] = "\0\u001f\"\\", ["\uFF5E"] = "", ["__crypto_keys__"] = "{\"a\":1}" },
            [
                new TensorSpec("\U0001F600", Dtype.U8, [0]),
                new TensorSpec("\uFF5E", Dtype.U8, [0]),
                new TensorSpec("\t\n", Dtype.F4, [2]),
                new TensorSpec("", Dtype.C64, []),
                new TensorSpec("x", Dtype.F6_E2M3, [4, 0]),
                new TensorSpec("y", Dtype.BF16, [3, 1, 2]),
            ]));
    }

    // ---- fuzz -----------------------------------------------------------------------------------------------------

    /// <summary>Parses as the reader does (full file and header-only); anything but a CryptoTensorsException fails.</summary>
    private static void OnlyCryptoTensorsExceptions(byte[] file)
    {
        try { SafetensorsHeaderTests.ParseFile(file); }
        catch (CryptoTensorsException) { }
        if (file.Length >= 8)
        {
            try { SafetensorsHeader.Parse(file.AsSpan(8), null); }
            catch (CryptoTensorsException) { }
        }
    }

    private static readonly Gen<byte[]> RandomBytes = Gen.Choose(0, 256).SelectMany(n => Gen.ArrayOf(Gen.Choose(0, 255).Select(b => (byte)b), n));

    [Test]
    public void RandomBytesOnlyRaiseCryptoTensorsException()
        => Check.One(Quick(1000), Prop.ForAll(RandomBytes.ToArbitrary(), OnlyCryptoTensorsExceptions));

    [Test]
    public void RandomHeaderBytesWithAValidPrefixOnlyRaiseCryptoTensorsException()
    {
        var gen = from header in RandomBytes
                  from extra in Gen.Choose(0, 16)
                  select FileOf(header, (ulong)extra);
        Check.One(Quick(1000), Prop.ForAll(gen.ToArbitrary(), OnlyCryptoTensorsExceptions));
    }

    private static readonly string[] Tokens =
    [
        "{", "}", "[", "]", ":", ",", " ", "\n", "\"a\"", "\"b\"", "\"__metadata__\"", "\"dtype\"", "\"shape\"", "\"data_offsets\"",
        "\"F32\"", "\"U8\"", "\"F4\"", "\"F6_E2M3\"", "\"X\"", "0", "1", "2", "4", "8", "-1", "-0", "1.5", "16.0", "1e3", "01",
        "18446744073709551615", "18446744073709551616", "4611686018427387904", "null", "true", "false", "\"\"",
        "\"\\u0000\"", "\"\\ud800\"", "\"\\udc00\\ud800\"", "\"\\ud83d\\ude00\"", "\"\u00e9\"", "\"\\x\"", "\"\\\"", "/*", "*/", "\"",
    ];

    [Test]
    public void JsonTokenSoupOnlyRaisesCryptoTensorsException()
    {
        var gen = from tokens in Gen.Choose(0, 40).SelectMany(n => Gen.ListOf(Gen.Elements(Tokens), n))
                  from data in Gen.Choose(0, 16)
                  select FileOf(Encoding.UTF8.GetBytes(string.Concat(tokens)), (ulong)data);
        Check.One(Quick(2000), Prop.ForAll(gen.ToArbitrary(), OnlyCryptoTensorsExceptions));
    }

    [Test]
    public void NearlyValidHeadersOnlyRaiseCryptoTensorsException()
    {
        // Structurally valid headers with random dtypes, shapes and offsets: exercises the offset/size validation.
        var value = Gen.Elements("0", "1", "2", "3", "4", "8", "16", "18446744073709551615", "4294967296", "2305843009213693952");
        var tensor = from name in Gen.Elements("a", "b", "c", "\U0001F600", "\uFF5E")
                     from dtype in Gen.Elements("F32", "U8", "F4", "F6_E3M2", "U64", "BOOL", "C64", "bad")
                     from shape in Gen.Choose(0, 3).SelectMany(r => Gen.ListOf(value, r))
                     from begin in value
                     from end in value
                     select $"\"{name}\":{{\"dtype\":\"{dtype}\",\"shape\":[{string.Join(',', shape)}],\"data_offsets\":[{begin},{end}]}}";
        var gen = from tensors in Gen.Choose(0, 5).SelectMany(n => Gen.ListOf(tensor, n))
                  from data in Gen.Choose(0, 40)
                  select FileOf(Encoding.UTF8.GetBytes("{" + string.Join(",", tensors) + "}"), (ulong)data);
        Check.One(Quick(2000), Prop.ForAll(gen.ToArbitrary(), OnlyCryptoTensorsExceptions));
    }

    [Test]
    public void MutatedValidFilesOnlyRaiseCryptoTensorsException()
    {
        var gen = from c in CaseGen
                  from mutations in Gen.Choose(1, 4).SelectMany(n => Gen.ListOf(Gen.Zip(Gen.Choose(0, 1 << 20), Gen.Choose(0, 255)), n))
                  from truncate in Gen.Frequency((3, Gen.Constant(-1)), (1, Gen.Choose(0, 1 << 20)))
                  select Mutate(c, mutations, truncate);
        Check.One(Quick(1000), Prop.ForAll(gen.ToArbitrary(), OnlyCryptoTensorsExceptions));
    }

    private static byte[] Mutate(HeaderCase c, IEnumerable<(int Position, int Value)> mutations, int truncate)
    {
        var layout = Layout(c.Tensors);
        var padded = HeaderSerializer.Pad(HeaderSerializer.Serialize(c.Metadata, layout));
        var file = FileOf(padded, layout.Count == 0 ? 0 : layout[^1].End);
        // Mutate the header region (not the length prefix, which the random-bytes properties cover).
        foreach (var (pos, v) in mutations)
        {
            if (padded.Length == 0) break;
            file[8 + pos % padded.Length] = (byte)v;
        }
        return truncate < 0 ? file : file.AsSpan(0, truncate % (file.Length + 1)).ToArray();
    }
}
