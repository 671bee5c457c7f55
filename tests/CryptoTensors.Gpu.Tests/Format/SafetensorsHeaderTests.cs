using System.Buffers.Binary;
using System.Text;
using CryptoTensors.Gpu.Format;

namespace CryptoTensors.Gpu.Tests.Format;

/// <summary>
/// The container (FORMAT.md §1): the reference's writer examples (§1.4), every reader refusal of §1.5 on a
/// handcrafted file, what the reader must accept, and the tie-break of empty tensors (§4.4).
/// </summary>
public class SafetensorsHeaderTests
{
    // ---- helpers --------------------------------------------------------------------------------------------------

    /// <summary>8-byte LE length, the header bytes, then <paramref name="dataLength"/> data bytes.</summary>
    internal static byte[] FileOf(byte[] header, long dataLength = 0)
    {
        var file = new byte[8 + header.Length + dataLength];
        BinaryPrimitives.WriteUInt64LittleEndian(file, (ulong)header.Length);
        header.CopyTo(file, 8);
        for (var i = 0; i < dataLength; i++) file[8 + header.Length + i] = (byte)(i * 7 + 1);
        return file;
    }

    internal static byte[] FileOf(string header, long dataLength = 0) => FileOf(Encoding.UTF8.GetBytes(header), dataLength);

    /// <summary>The reader pipeline of §1.5: length prefix, then header JSON and validation.</summary>
    internal static SafetensorsHeader ParseFile(byte[] file)
    {
        var n = SafetensorsHeader.ReadHeaderLength(file.AsSpan(0, Math.Min(8, file.Length)), file.Length);
        return SafetensorsHeader.Parse(file.AsSpan(8, (int)n), file.Length);
    }

    private static CryptoTensorsException Refused(byte[] file, ErrorCode code, string? tensor = null)
    {
        var ex = (CryptoTensorsException)Assert.Throws(Is.InstanceOf<CryptoTensorsException>(), () => ParseFile(file))!;
        Assert.That(ex.Code, Is.EqualTo(code), ex.Message);
        Assert.That(ex.Kind, Is.EqualTo(ErrorKind.Malformed));
        Assert.That(ex, Is.InstanceOf<MalformedFileException>());
        if (tensor is not null)
        {
            Assert.That(ex.Tensor, Is.EqualTo(tensor), "the error names the tensor");
            Assert.That(ex.Message, Does.Contain(tensor));
        }
        return ex;
    }

    private static string T(string name, string dtype, string shape, string offsets)
        => $"\"{name}\":{{\"dtype\":\"{dtype}\",\"shape\":{shape},\"data_offsets\":{offsets}}}";

    private const string OneU8 = """{"a":{"dtype":"U8","shape":[1],"data_offsets":[0,1]}}""";

    // ---- §1.4 writer examples -------------------------------------------------------------------------------------

    [Test]
    public void SingleF32TensorGivesN64WithoutPadding()
    {
        var json = HeaderSerializer.Serialize(null, [new HeaderTensor("attn.0", Dtype.F32, [1, 2, 3], 0, 24)]);
        var padded = HeaderSerializer.Pad(json);
        const string expected = """{"attn.0":{"dtype":"F32","shape":[1,2,3],"data_offsets":[0,24]}}""";
        Assert.That(Encoding.UTF8.GetString(padded), Is.EqualTo(expected));
        Assert.That(padded, Has.Length.EqualTo(64));
        var file = FileOf(padded, 24);
        Assert.That(file.AsSpan(0, 8).ToArray(), Is.EqualTo(new byte[] { 64, 0, 0, 0, 0, 0, 0, 0 }));
        var h = ParseFile(file);
        Assert.That(h.HeaderLength, Is.EqualTo(64));
        Assert.That(h.DataStart, Is.EqualTo(72));
        Assert.That(h.DataLength, Is.EqualTo(24));
        Assert.That(h.Metadata, Is.Null);
        Assert.That(h.Tensors, Has.Count.EqualTo(1));
        var t = h.Tensors[0];
        Assert.That((t.Name, t.Dtype, t.Begin, t.End, t.ByteLength), Is.EqualTo(("attn.0", Dtype.F32, 0UL, 24UL, 24L)));
        Assert.That(t.Shape, Is.EqualTo(new ulong[] { 1, 2, 3 }));
    }

    [Test]
    public void EmptyDictGivesEightBytesOfHeader()
    {
        var padded = HeaderSerializer.Pad(HeaderSerializer.Serialize(null, []));
        var file = FileOf(padded);
        Assert.That(file, Is.EqualTo(new byte[] { 8, 0, 0, 0, 0, 0, 0, 0, (byte)'{', (byte)'}', 32, 32, 32, 32, 32, 32 }));
        var h = ParseFile(file);
        Assert.That(h.Tensors, Is.Empty);
        Assert.That(h.Metadata, Is.Null);
        Assert.That(h.DataLength, Is.EqualTo(0));
    }

    [Test]
    public void MetadataFrameworkPtGivesN40()
    {
        var padded = HeaderSerializer.Pad(HeaderSerializer.Serialize(new Dictionary<string, string> { ["framework"] = "pt" }, []));
        Assert.That(Encoding.UTF8.GetString(padded), Is.EqualTo("""{"__metadata__":{"framework":"pt"}}""" + "     "));
        Assert.That(padded, Has.Length.EqualTo(40));
        var h = ParseFile(FileOf(padded));
        Assert.That(h.Metadata, Is.EqualTo(new Dictionary<string, string> { ["framework"] = "pt" }));
    }

    [Test]
    public void PadAddsZeroToSevenSpaces()
    {
        for (var len = 1; len <= 24; len++)
        {
            var json = Enumerable.Repeat((byte)'x', len).ToArray();
            var padded = HeaderSerializer.Pad(json);
            Assert.That(padded.Length % 8, Is.EqualTo(0));
            Assert.That(padded.Length - len, Is.InRange(0, 7));
            Assert.That(padded.AsSpan(0, len).ToArray(), Is.EqualTo(json));
            Assert.That(padded.Skip(len), Is.All.EqualTo((byte)' '));
        }
    }

    [Test]
    public void SerializerWritesMetadataSortedByUtf8AndTensorsInGivenOrder()
    {
        var meta = new Dictionary<string, string> { ["b"] = "1", ["\U0001F600"] = "2", ["\uFF5E"] = "3", ["__x__"] = "4", ["B"] = "\n" };
        var json = HeaderSerializer.Serialize(meta,
        [
            new HeaderTensor("z", Dtype.U64, [], 0, 8),
            new HeaderTensor("a", Dtype.BOOL, [2], 8, 10),
        ]);
        Assert.That(Encoding.UTF8.GetString(json), Is.EqualTo(
            "{\"__metadata__\":{\"B\":\"\\n\",\"__x__\":\"4\",\"b\":\"1\",\"\uFF5E\":\"3\",\"\U0001F600\":\"2\"},"
            + "\"z\":{\"dtype\":\"U64\",\"shape\":[],\"data_offsets\":[0,8]},\"a\":{\"dtype\":\"BOOL\",\"shape\":[2],\"data_offsets\":[8,10]}}"));
    }

    // ---- §1.5 refusals --------------------------------------------------------------------------------------------

    [TestCase(0)]
    [TestCase(1)]
    [TestCase(7)]
    public void HeaderTooSmall(int length) => Refused(new byte[length], ErrorCode.HeaderTooSmall);

    [Test]
    public void HeaderTooLargeReferenceExample()
        => Refused([(byte)'<', 0, 0, 0, 0, 0xFF, 0xFF, 0xFF], ErrorCode.HeaderTooLarge);

    [TestCase(100_000_001UL)]
    [TestCase(0x8000_0000_0000_0000UL)]
    [TestCase(ulong.MaxValue)]
    public void HeaderTooLarge(ulong n)
    {
        var file = new byte[64];
        BinaryPrimitives.WriteUInt64LittleEndian(file, n);
        Refused(file, ErrorCode.HeaderTooLarge);
    }

    [TestCase(100_000_000UL, 64)]
    [TestCase(57UL, 64)]
    [TestCase(1UL, 8)]
    [TestCase(10UL, 17)]
    public void InvalidHeaderLength(ulong n, int fileLength)
    {
        var file = new byte[fileLength];
        BinaryPrimitives.WriteUInt64LittleEndian(file, n);
        Refused(file, ErrorCode.InvalidHeaderLength);
    }

    [Test]
    public void HeaderExactlyToTheEndIsNotAnInvalidLength()
        => Assert.That(ParseFile(FileOf("{}")).HeaderLength, Is.EqualTo(2));

    [TestCase(new byte[] { 0xFF }, TestName = "InvalidUtf8 0xFF")]
    [TestCase(new byte[] { 0xC0, 0xAF }, TestName = "InvalidUtf8 overlong")]
    [TestCase(new byte[] { 0xED, 0xA0, 0x80 }, TestName = "InvalidUtf8 encoded surrogate")]
    [TestCase(new byte[] { 0xE2, 0x82 }, TestName = "InvalidUtf8 truncated sequence")]
    [TestCase(new byte[] { 0xF4, 0x90, 0x80, 0x80 }, TestName = "InvalidUtf8 above U+10FFFF")]
    [TestCase(new byte[] { 0x80 }, TestName = "InvalidUtf8 lone continuation")]
    public void InvalidUtf8InTensorName(byte[] bad)
    {
        var header = Encoding.UTF8.GetBytes("{\"").Concat(bad).Concat(Encoding.UTF8.GetBytes("\":{\"dtype\":\"U8\",\"shape\":[1],\"data_offsets\":[0,1]}}")).ToArray();
        Refused(FileOf(header, 1), ErrorCode.InvalidUtf8);
    }

    [Test]
    public void InvalidUtf8InPadding()
        => Refused(FileOf(Encoding.UTF8.GetBytes("{}  ").Append((byte)0xFF).ToArray()), ErrorCode.InvalidUtf8);

    [TestCase("hello", 0, TestName = "InvalidJson not JSON")]
    [TestCase("", 0, TestName = "InvalidJson empty header")]
    [TestCase("        ", 0, TestName = "InvalidJson only whitespace")]
    [TestCase("[]", 0, TestName = "InvalidJson top-level array")]
    [TestCase("\"x\"", 0, TestName = "InvalidJson top-level string")]
    [TestCase("null", 0, TestName = "InvalidJson top-level null")]
    [TestCase("{", 0, TestName = "InvalidJson unterminated")]
    [TestCase("""{"a":{"dtype":"U8","shape":[1],"data_offsets":[0,1]}""", 1, TestName = "InvalidJson truncated after a tensor")]
    [TestCase("""{"a":{"dtype":"U8","shape":[1""", 1, TestName = "InvalidJson truncated inside shape")]
    [TestCase("{\"__metadata__\":{\"k\":\"v\"", 0, TestName = "InvalidJson truncated inside metadata")]
    [TestCase("""{"a":{"dtype":"U8","shape":[1],"data_offsets":[0,1],"x":[[[""", 1, TestName = "InvalidJson truncated inside an unknown field")]
    [TestCase("{\"a\":}", 0, TestName = "InvalidJson missing value")]
    [TestCase("{\"__metadata__\":{},}", 0, TestName = "InvalidJson trailing comma")]
    [TestCase("{'a':1}", 0, TestName = "InvalidJson single quotes")]
    [TestCase("{/*c*/}", 0, TestName = "InvalidJson comment")]
    [TestCase("\uFEFF{}", 0, TestName = "InvalidJson byte order mark")]
    [TestCase(OneU8 + "x", 1, TestName = "InvalidJson trailing garbage")]
    [TestCase("{} {}", 0, TestName = "InvalidJson two objects")]
    [TestCase("{}\0\0\0\0\0\0", 0, TestName = "InvalidJson NUL padding")]
    [TestCase("{}  ,", 0, TestName = "InvalidJson trailing comma after object")]
    [TestCase("""{"a":{"dtype":"U8","shape":[16],"data_offsets":[0,16.0]}}""", 16, TestName = "InvalidJson float offset 16.0")]
    [TestCase("""{"a":{"dtype":"U8","shape":[16.0],"data_offsets":[0,16]}}""", 16, TestName = "InvalidJson float shape 16.0")]
    [TestCase("""{"a":{"dtype":"U8","shape":[1e3],"data_offsets":[0,1000]}}""", 1000, TestName = "InvalidJson exponent shape 1e3")]
    [TestCase("""{"a":{"dtype":"U8","shape":[1000],"data_offsets":[0,1E3]}}""", 1000, TestName = "InvalidJson exponent offset 1E3")]
    [TestCase("""{"a":{"dtype":"U8","shape":[-1],"data_offsets":[0,1]}}""", 1, TestName = "InvalidJson negative shape")]
    [TestCase("""{"a":{"dtype":"U8","shape":[0],"data_offsets":[-0,0]}}""", 0, TestName = "InvalidJson negative zero offset")]
    [TestCase("""{"a":{"dtype":"U8","shape":[18446744073709551616],"data_offsets":[0,0]}}""", 0, TestName = "InvalidJson shape above u64")]
    [TestCase("""{"a":{"dtype":"U8","shape":[1],"data_offsets":[0,18446744073709551616]}}""", 1, TestName = "InvalidJson offset above u64")]
    [TestCase("""{"a":{"dtype":"U8","shape":[01],"data_offsets":[0,1]}}""", 1, TestName = "InvalidJson leading zero")]
    [TestCase("""{"a":{"dtype":"U8","shape":["1"],"data_offsets":[0,1]}}""", 1, TestName = "InvalidJson shape string element")]
    [TestCase("""{"a":{"dtype":"U8","shape":[true],"data_offsets":[0,1]}}""", 1, TestName = "InvalidJson shape bool element")]
    [TestCase("""{"a":{"dtype":"U8","shape":[null],"data_offsets":[0,1]}}""", 1, TestName = "InvalidJson shape null element")]
    [TestCase("""{"a":{"dtype":"U8","shape":[[1]],"data_offsets":[0,1]}}""", 1, TestName = "InvalidJson shape nested array")]
    [TestCase("""{"a":{"dtype":"U8","shape":1,"data_offsets":[0,1]}}""", 1, TestName = "InvalidJson shape number")]
    [TestCase("""{"a":{"dtype":"U8","shape":"[1]","data_offsets":[0,1]}}""", 1, TestName = "InvalidJson shape string")]
    [TestCase("""{"a":{"dtype":"U8","shape":null,"data_offsets":[0,1]}}""", 1, TestName = "InvalidJson shape null")]
    [TestCase("""{"a":{"dtype":"U8","shape":{},"data_offsets":[0,1]}}""", 1, TestName = "InvalidJson shape object")]
    [TestCase("""{"a":{"dtype":4,"shape":[1],"data_offsets":[0,1]}}""", 1, TestName = "InvalidJson dtype number")]
    [TestCase("""{"a":{"dtype":null,"shape":[1],"data_offsets":[0,1]}}""", 1, TestName = "InvalidJson dtype null")]
    [TestCase("""{"a":{"dtype":["U8"],"shape":[1],"data_offsets":[0,1]}}""", 1, TestName = "InvalidJson dtype array")]
    [TestCase("""{"a":{"dtype":"U8","shape":[1],"data_offsets":"0,1"}}""", 1, TestName = "InvalidJson data_offsets string")]
    [TestCase("""{"a":{"dtype":"U8","shape":[1],"data_offsets":{"0":1}}}""", 1, TestName = "InvalidJson data_offsets object")]
    [TestCase("""{"a":{"dtype":"U8","shape":[1],"data_offsets":[0,1,1]}}""", 1, TestName = "InvalidJson data_offsets of 3 values")]
    [TestCase("""{"a":{"dtype":"U8","shape":[0],"data_offsets":[0]}}""", 0, TestName = "InvalidJson data_offsets of 1 value")]
    [TestCase("""{"a":{"dtype":"U8","shape":[0],"data_offsets":[]}}""", 0, TestName = "InvalidJson data_offsets empty")]
    [TestCase("""{"a":{"shape":[1],"data_offsets":[0,1]}}""", 1, TestName = "InvalidJson missing dtype")]
    [TestCase("""{"a":{"dtype":"U8","data_offsets":[0,1]}}""", 1, TestName = "InvalidJson missing shape")]
    [TestCase("""{"a":{"dtype":"U8","shape":[1]}}""", 1, TestName = "InvalidJson missing data_offsets")]
    [TestCase("""{"a":{}}""", 0, TestName = "InvalidJson empty tensor object")]
    [TestCase("""{"a":[]}""", 0, TestName = "InvalidJson tensor is an array")]
    [TestCase("""{"a":"U8"}""", 0, TestName = "InvalidJson tensor is a string")]
    [TestCase("""{"a":null}""", 0, TestName = "InvalidJson tensor is null")]
    [TestCase("""{"a":{"DTYPE":"U8","shape":[1],"data_offsets":[0,1]}}""", 1, TestName = "InvalidJson field names are case-sensitive")]
    [TestCase("{\"a\nb\":{\"dtype\":\"U8\",\"shape\":[0],\"data_offsets\":[0,0]}}", 0, TestName = "InvalidJson raw control character in a name")]
    [TestCase("""{"\ud800":{"dtype":"U8","shape":[0],"data_offsets":[0,0]}}""", 0, TestName = "InvalidJson lone surrogate escape in a name")]
    [TestCase("""{"__metadata__":{"k":"\udc00x"}}""", 0, TestName = "InvalidJson lone surrogate escape in metadata")]
    [TestCase("""{"a\x":{"dtype":"U8","shape":[0],"data_offsets":[0,0]}}""", 0, TestName = "InvalidJson invalid escape")]
    [TestCase("""{"__metadata__":{"a":1}}""", 0, TestName = "InvalidJson metadata value number")]
    [TestCase("""{"__metadata__":{"a":{}}}""", 0, TestName = "InvalidJson metadata value object")]
    [TestCase("""{"__metadata__":{"a":null}}""", 0, TestName = "InvalidJson metadata value null")]
    [TestCase("""{"__metadata__":{"a":["x"]}}""", 0, TestName = "InvalidJson metadata value array")]
    [TestCase("""{"__metadata__":{"a":true}}""", 0, TestName = "InvalidJson metadata value bool")]
    [TestCase("""{"__metadata__":[]}""", 0, TestName = "InvalidJson metadata array")]
    [TestCase("""{"__metadata__":"x"}""", 0, TestName = "InvalidJson metadata string")]
    [TestCase("""{"__metadata__":1}""", 0, TestName = "InvalidJson metadata number")]
    public void InvalidJson(string header, int dataLength) => Refused(FileOf(header, dataLength), ErrorCode.InvalidJson);

    [Test]
    public void InvalidJsonOnTypeErrorNamesTheTensor()
        => Refused(FileOf("""{"w":{"dtype":"U8","shape":[1.5],"data_offsets":[0,1]}}""", 1), ErrorCode.InvalidJson, "w");

    [TestCase("""{"a":{"dtype":"U8","shape":[1],"data_offsets":[0,1]},"a":{"dtype":"U8","shape":[1],"data_offsets":[0,1]}}""", 1, null, TestName = "DuplicateKey tensor twice")]
    [TestCase("""{"a":{"dtype":"U8","shape":[1],"data_offsets":[0,1]},"\u0061":{"dtype":"U8","shape":[1],"data_offsets":[0,1]}}""", 1, null, TestName = "DuplicateKey tensor twice via escape")]
    [TestCase("""{"__metadata__":{},"__metadata__":{}}""", 0, null, TestName = "DuplicateKey __metadata__ twice")]
    [TestCase("""{"__metadata__":null,"__metadata__":null}""", 0, null, TestName = "DuplicateKey __metadata__ null twice")]
    [TestCase("""{"__metadata__":{"k":"1","k":"2"}}""", 0, null, TestName = "DuplicateKey metadata key twice")]
    [TestCase("""{"__metadata__":{"k":"1","\u006b":"1"}}""", 0, null, TestName = "DuplicateKey metadata key twice via escape")]
    [TestCase("""{"a":{"dtype":"U8","dtype":"U8","shape":[1],"data_offsets":[0,1]}}""", 1, "a", TestName = "DuplicateKey dtype field twice")]
    [TestCase("""{"a":{"dtype":"U8","shape":[1],"shape":[1],"data_offsets":[0,1]}}""", 1, "a", TestName = "DuplicateKey shape field twice")]
    [TestCase("""{"a":{"dtype":"U8","shape":[1],"data_offsets":[0,1],"data_offsets":[0,1]}}""", 1, "a", TestName = "DuplicateKey data_offsets field twice")]
    public void DuplicateKey(string header, int dataLength, string? tensor)
        => Refused(FileOf(header, dataLength), ErrorCode.DuplicateKey, tensor);

    [TestCase("F8_E4M3FNUZ")]
    [TestCase("F8_E4M3FN")]
    [TestCase("f32")]
    [TestCase("Bool")]
    [TestCase("C128")]
    [TestCase("I4")]
    [TestCase("U4")]
    [TestCase("F32 ")]
    [TestCase("")]
    [TestCase("float32")]
    public void UnknownDtype(string dtype)
        => Refused(FileOf("{" + T("w.0", dtype, "[1]", "[0,4]") + "}", 4), ErrorCode.UnknownDtype, "w.0");

    private static string Nested(int depth) => new string('[', depth) + new string(']', depth);

    [TestCase(100)]
    [TestCase(10_000)]
    public void NestingTooDeepInAnUnknownTensorField(int depth)
        => Refused(FileOf("""{"a":{"dtype":"U8","shape":[1],"data_offsets":[0,1],"x":""" + Nested(depth) + "}}", 1), ErrorCode.NestingTooDeep);

    [Test]
    public void NestingTooDeepWithObjects()
    {
        var deep = string.Concat(Enumerable.Repeat("{\"k\":", 100)) + "1" + new string('}', 100);
        Refused(FileOf("""{"a":{"dtype":"U8","shape":[1],"data_offsets":[0,1],"x":""" + deep + "}}", 1), ErrorCode.NestingTooDeep);
    }

    [Test]
    public void ModerateNestingInAnUnknownFieldIsAccepted()
    {
        var h = ParseFile(FileOf("""{"a":{"dtype":"U8","shape":[1],"data_offsets":[0,1],"x":""" + Nested(40) + "}}", 1));
        Assert.That(h.Tensors.Single().Name, Is.EqualTo("a"));
    }

    [TestCase("""{"a":{"dtype":"U8","shape":[1],"data_offsets":[0,1]},"b":{"dtype":"U8","shape":[1],"data_offsets":[2,3]}}""", 3, "b", TestName = "InvalidOffset gap")]
    [TestCase("""{"a":{"dtype":"U8","shape":[2],"data_offsets":[0,2]},"b":{"dtype":"U8","shape":[2],"data_offsets":[1,3]}}""", 3, "b", TestName = "InvalidOffset overlap")]
    [TestCase("""{"a":{"dtype":"U8","shape":[1],"data_offsets":[0,1]},"b":{"dtype":"U8","shape":[1],"data_offsets":[0,1]}}""", 1, "b", TestName = "InvalidOffset same range twice")]
    [TestCase("""{"a":{"dtype":"U8","shape":[1],"data_offsets":[1,2]}}""", 2, "a", TestName = "InvalidOffset first not at 0")]
    [TestCase("""{"a":{"dtype":"U8","shape":[2],"data_offsets":[0,2]},"b":{"dtype":"U8","shape":[0],"data_offsets":[2,1]}}""", 2, "b", TestName = "InvalidOffset end before begin")]
    [TestCase("""{"a":{"dtype":"U8","shape":[0],"data_offsets":[1,0]}}""", 0, "a", TestName = "InvalidOffset end before begin, first")]
    public void InvalidOffset(string header, int dataLength, string tensor)
        => Refused(FileOf(header, dataLength), ErrorCode.InvalidOffset, tensor);

    [TestCase("U8", "[18446744073709551615,2]", TestName = "ValidationOverflow element count")]
    [TestCase("U8", "[4294967296,4294967296]", TestName = "ValidationOverflow element count 2^64")]
    [TestCase("U8", "[18446744073709551615,2,0]", TestName = "ValidationOverflow before a zero dimension")]
    [TestCase("F32", "[4611686018427387904]", TestName = "ValidationOverflow bits (2^62 F32)")]
    [TestCase("U64", "[2305843009213693952]", TestName = "ValidationOverflow bits (2^61 U64)")]
    [TestCase("BOOL", "[2305843009213693952]", TestName = "ValidationOverflow bits (2^61 BOOL)")]
    public void ValidationOverflow(string dtype, string shape)
        => Refused(FileOf("{" + T("big", dtype, shape, "[0,0]") + "}"), ErrorCode.ValidationOverflow, "big");

    [Test]
    public void ZeroDimensionDoesNotHideAnOverflowAfterIt()
        => Assert.That(ParseFile(FileOf("{" + T("z", "F64", "[0,18446744073709551615]", "[0,0]") + "}")).Tensors.Single().ByteLength, Is.EqualTo(0),
            "0 * anything = 0: the product never overflows, as in the reference's checked multiplication");

    [Test]
    public void DataSectionLargerThanAFileCanBeOverflows()
    {
        // Each tensor is 2^60 bytes (valid on its own); the eight end at 2^63, beyond any file length.
        var h = "{" + string.Join(",", Enumerable.Range(0, 8).Select(i =>
            T("t" + i, "U8", "[1152921504606846976]", $"[{(ulong)i << 60},{(ulong)(i + 1) << 60}]"))) + "}";
        var file = FileOf(h);
        var ex = (CryptoTensorsException)Assert.Throws(Is.InstanceOf<CryptoTensorsException>(), () => ParseFile(file))!;
        Assert.That(ex.Code, Is.EqualTo(ErrorCode.ValidationOverflow).Or.EqualTo(ErrorCode.IncompleteBuffer), ex.Message);
        var n = SafetensorsHeader.ReadHeaderLength(file, file.Length);
        var headerOnly = (CryptoTensorsException)Assert.Throws(Is.InstanceOf<CryptoTensorsException>(),
            () => SafetensorsHeader.Parse(file.AsSpan(8, (int)n), null))!;
        Assert.That(headerOnly.Code, Is.EqualTo(ErrorCode.ValidationOverflow), "header-only parsing must still bound the data length");
    }

    [TestCase("F4", "[1]", "[0,1]", TestName = "MisalignedSlice F4 x1")]
    [TestCase("F4", "[3]", "[0,2]", TestName = "MisalignedSlice F4 x3")]
    [TestCase("F4", "[3,1]", "[0,2]", TestName = "MisalignedSlice F4 3x1")]
    [TestCase("F6_E2M3", "[3]", "[0,3]", TestName = "MisalignedSlice F6_E2M3 x3")]
    [TestCase("F6_E3M2", "[1]", "[0,1]", TestName = "MisalignedSlice F6_E3M2 x1")]
    [TestCase("F6_E3M2", "[2,3]", "[0,5]", TestName = "MisalignedSlice F6_E3M2 2x3")]
    public void MisalignedSlice(string dtype, string shape, string offsets)
    {
        var end = int.Parse(offsets.Split(',')[1].TrimEnd(']'), System.Globalization.CultureInfo.InvariantCulture);
        Refused(FileOf("{" + T("sub", dtype, shape, offsets) + "}", end), ErrorCode.MisalignedSlice, "sub");
    }

    [TestCase("F4", "[2]", 1)]
    [TestCase("F4", "[3,2]", 3)]
    [TestCase("F4", "[0]", 0)]
    [TestCase("F6_E2M3", "[4]", 3)]
    [TestCase("F6_E3M2", "[2,4]", 6)]
    public void SubByteDtypesThatFillWholeBytes(string dtype, string shape, int bytes)
        => Assert.That(ParseFile(FileOf("{" + T("sub", dtype, shape, $"[0,{bytes}]") + "}", bytes)).Tensors[0].ByteLength, Is.EqualTo(bytes));

    [TestCase("F32", "[2]", 4, TestName = "TensorInvalidInfo too short")]
    [TestCase("F32", "[2]", 12, TestName = "TensorInvalidInfo too long")]
    [TestCase("U8", "[]", 0, TestName = "TensorInvalidInfo scalar with no bytes")]
    [TestCase("F32", "[0]", 4, TestName = "TensorInvalidInfo empty with bytes")]
    [TestCase("BF16", "[3,3]", 9, TestName = "TensorInvalidInfo element count instead of bytes")]
    public void TensorInvalidInfo(string dtype, string shape, int end)
        => Refused(FileOf("{" + T("bad", dtype, shape, $"[0,{end}]") + "}", end), ErrorCode.TensorInvalidInfo, "bad");

    [TestCase(OneU8, 2, TestName = "IncompleteBuffer one trailing byte")]
    [TestCase(OneU8, 0, TestName = "IncompleteBuffer missing byte")]
    [TestCase("{}", 1, TestName = "IncompleteBuffer data after an empty header")]
    [TestCase("""{"a":{"dtype":"F64","shape":[4],"data_offsets":[0,32]}}""", 31, TestName = "IncompleteBuffer one byte short")]
    [TestCase("""{"a":{"dtype":"F64","shape":[4],"data_offsets":[0,32]}}""", 4096, TestName = "IncompleteBuffer much longer")]
    public void IncompleteBuffer(string header, int dataLength) => Refused(FileOf(header, dataLength), ErrorCode.IncompleteBuffer);

    [Test]
    public void HeaderOnlyParsingSkipsTheCoverageCheck()
    {
        var file = FileOf(OneU8, 0);
        var h = SafetensorsHeader.Parse(file.AsSpan(8), null);
        Assert.That(h.DataLength, Is.EqualTo(1));
    }

    [Test]
    public void ValidationFollowsOffsetOrderNotJsonOrder()
    {
        // "b" comes first in the JSON but second in offset order; its size error is found only after "a" is fine,
        // and "c" (bad offsets, last in offset order) is not reached.
        var h = "{" + T("c", "U8", "[1]", "[9,10]") + "," + T("b", "F32", "[1]", "[2,8]") + "," + T("a", "U8", "[2]", "[0,2]") + "}";
        Refused(FileOf(h, 10), ErrorCode.TensorInvalidInfo, "b");
    }

    // ---- accepted -------------------------------------------------------------------------------------------------

    [TestCase(" \n\t\r" + OneU8, TestName = "Accepted leading whitespace")]
    [TestCase(OneU8 + "       ", TestName = "Accepted trailing spaces")]
    [TestCase(OneU8 + " \t\r\n", TestName = "Accepted trailing JSON whitespace")]
    [TestCase("""{ "a" : { "dtype" : "U8" , "shape" : [ 1 ] , "data_offsets" : [ 0 , 1 ] } }""", TestName = "Accepted inner whitespace")]
    [TestCase("""{"a":{"data_offsets":[0,1],"shape":[1],"dtype":"U8"}}""", TestName = "Accepted any field order")]
    [TestCase("""{"a":{"dtype":"U8","shape":[1],"data_offsets":[0,1],"extra":{"x":[1,2,{"y":null}]},"n":-1.5e3,"s":"\u0000"}}""", TestName = "Accepted unknown tensor fields")]
    [TestCase("""{"__metadata__":null,"a":{"dtype":"U8","shape":[1],"data_offsets":[0,1]}}""", TestName = "Accepted metadata null")]
    [TestCase("""{"a":{"dtype":"U8","shape":[1],"data_offsets":[0,1]},"__metadata__":{"k":"v"}}""", TestName = "Accepted metadata last")]
    [TestCase("""{"\u0061":{"dtype":"\u0055\u0038","shape":[1],"data_offsets":[0,1]}}""", TestName = "Accepted escapes in names and dtype")]
    [TestCase("""{"\u005f_metadata__":{"k":"v"},"a":{"dtype":"U8","shape":[1],"data_offsets":[0,1]}}""", TestName = "Accepted escaped __metadata__ key")]
    [TestCase("""{"a":{"dtype":"U8","shape":[1],"data_offsets":[0,1],"x":{"k":1,"k":2}}}""", TestName = "Accepted duplicates inside an unknown field")]
    public void AcceptedOneU8(string header)
    {
        var h = ParseFile(FileOf(header, 1));
        Assert.That(h.Metadata?.ContainsKey("__metadata__") ?? false, Is.False);
        Assert.That(h.Tensors, Has.Count.EqualTo(1));
        Assert.That(h.TryGetTensor("a", out var t), Is.True);
        Assert.That((t.Dtype, t.Begin, t.End), Is.EqualTo((Dtype.U8, 0UL, 1UL)));
        Assert.That(t.Shape, Is.EqualTo(new ulong[] { 1 }));
    }

    [Test]
    public void MetadataNullMeansNoMetadata()
        => Assert.That(ParseFile(FileOf("""{"__metadata__":null}""")).Metadata, Is.Null);

    [Test]
    public void MetadataEmptyObjectIsEmpty()
        => Assert.That(ParseFile(FileOf("""{"__metadata__":{}}""")).Metadata, Is.Empty);

    [Test]
    public void MetadataValuesAreUnescaped()
    {
        var h = ParseFile(FileOf("""{"__metadata__":{"__crypto_keys__":"{\"a\":\"b\\nc\"}","\u00e9\ud83d\ude00":"\/"}}"""));
        Assert.That(h.Metadata, Is.EqualTo(new Dictionary<string, string> { ["__crypto_keys__"] = "{\"a\":\"b\\nc\"}", ["\u00e9\U0001F600"] = "/" }));
    }

    [Test]
    public void UnalignedHeaderLengthIsAccepted()
    {
        var h = ParseFile(FileOf("{}   "));
        Assert.That(h.HeaderLength, Is.EqualTo(5));
        Assert.That(h.DataStart, Is.EqualTo(13));
    }

    [Test]
    public void ZeroSizeTensorsAreAccepted()
    {
        var header = "{" + string.Join(",",
            T("x", "F32", "[2]", "[0,8]"),
            T("e1", "F32", "[0]", "[8,8]"),
            T("e2", "I64", "[3,0,5]", "[8,8]"),
            T("y", "U8", "[1]", "[8,9]"),
            T("e3", "BOOL", "[0]", "[9,9]")) + "}";
        var h = ParseFile(FileOf(header, 9));
        Assert.That(h.Tensors.Select(t => t.Name), Is.EqualTo(new[] { "x", "e2", "e1", "y", "e3" }));
        Assert.That(h.Tensors.Where(t => t.Name.StartsWith('e')).Select(t => t.ByteLength), Is.All.EqualTo(0));
        Assert.That(h.DataLength, Is.EqualTo(9));
    }

    [Test]
    public void OnlyEmptyTensorsWithNoData()
    {
        var h = ParseFile(FileOf("{" + T("a", "U8", "[0]", "[0,0]") + "}"));
        Assert.That(h.DataLength, Is.EqualTo(0));
        Assert.That(h.Tensors.Single().ByteLength, Is.EqualTo(0));
    }

    [TestCase("F32", 4)]
    [TestCase("F64", 8)]
    [TestCase("BOOL", 1)]
    [TestCase("C64", 8)]
    public void ScalarShape(string dtype, int bytes)
    {
        var t = ParseFile(FileOf("{" + T("s", dtype, "[]", $"[0,{bytes}]") + "}", bytes)).Tensors.Single();
        Assert.That(t.Shape, Is.Empty);
        Assert.That(t.ByteLength, Is.EqualTo(bytes));
    }

    [TestCase(Dtype.BOOL, 0, "BOOL", 8)]
    [TestCase(Dtype.F4, 1, "F4", 4)]
    [TestCase(Dtype.F6_E2M3, 2, "F6_E2M3", 6)]
    [TestCase(Dtype.F6_E3M2, 3, "F6_E3M2", 6)]
    [TestCase(Dtype.U8, 4, "U8", 8)]
    [TestCase(Dtype.I8, 5, "I8", 8)]
    [TestCase(Dtype.F8_E5M2, 6, "F8_E5M2", 8)]
    [TestCase(Dtype.F8_E4M3, 7, "F8_E4M3", 8)]
    [TestCase(Dtype.F8_E8M0, 8, "F8_E8M0", 8)]
    [TestCase(Dtype.I16, 9, "I16", 16)]
    [TestCase(Dtype.U16, 10, "U16", 16)]
    [TestCase(Dtype.F16, 11, "F16", 16)]
    [TestCase(Dtype.BF16, 12, "BF16", 16)]
    [TestCase(Dtype.I32, 13, "I32", 32)]
    [TestCase(Dtype.U32, 14, "U32", 32)]
    [TestCase(Dtype.F32, 15, "F32", 32)]
    [TestCase(Dtype.C64, 16, "C64", 64)]
    [TestCase(Dtype.F64, 17, "F64", 64)]
    [TestCase(Dtype.I64, 18, "I64", 64)]
    [TestCase(Dtype.U64, 19, "U64", 64)]
    public void AllTwentyDtypes(Dtype dtype, int order, string name, int bits)
    {
        Assert.That((int)dtype, Is.EqualTo(order), "enum order of the reference");
        Assert.That(dtype.Name(), Is.EqualTo(name));
        Assert.That(dtype.BitSize(), Is.EqualTo(bits));
        Assert.That(Dtypes.TryParse(name, out var parsed), Is.True);
        Assert.That(parsed, Is.EqualTo(dtype));
        Assert.That(Dtypes.TryParse(name.ToLowerInvariant(), out _), Is.False, "case-sensitive");

        // 8 elements always fill whole bytes: 8 * bits / 8 = bits bytes; a 3x0 tensor is empty.
        var h = ParseFile(FileOf("{" + T("t", name, "[2,4]", $"[0,{bits}]") + "," + T("u", name, "[3,0]", $"[{bits},{bits}]") + "}", bits));
        Assert.That(h.Tensors[0].Dtype, Is.EqualTo(dtype));
        Assert.That(h.Tensors[0].ByteLength, Is.EqualTo(bits));
        Assert.That(h.Tensors[1].ByteLength, Is.EqualTo(0));
        Assert.That(dtype.TryByteSize([2, 4], out var bytes), Is.Null);
        Assert.That(bytes, Is.EqualTo((ulong)bits));
    }

    [Test]
    public void ExactlyTwentyDtypes()
    {
        Assert.That(Dtypes.All, Has.Count.EqualTo(20));
        Assert.That(Dtypes.All.Select(d => (int)d), Is.EqualTo(Enumerable.Range(0, 20)));
    }

    [Test]
    public void UnicodeTensorNames()
    {
        var names = new[] { "\u00e9", "\U0001F600", "\uFF5E", "tab\there", "nul\0", "quote\"", "back\\slash", "" };
        var tensors = names.Order(Utf8Order.Instance).Select((n, i) => new HeaderTensor(n, Dtype.U8, [1], (ulong)i, (ulong)i + 1)).ToList();
        var json = HeaderSerializer.Pad(HeaderSerializer.Serialize(null, tensors));
        var h = ParseFile(FileOf(json, names.Length));
        Assert.That(h.Tensors.Select(t => t.Name), Is.EqualTo(tensors.Select(t => t.Name)));
        foreach (var n in names) Assert.That(h.TryGetTensor(n, out _), Is.True, CompactJsonWriterTests.Escape(n));
        Assert.That(h.TryGetTensor("missing", out _), Is.False);
    }

    // ---- §4.4 tie-break -------------------------------------------------------------------------------------------

    [Test]
    public void EmptyTensorsAtTheSameOffsetAreOrderedByDtypeDescThenName()
    {
        // JSON order deliberately scrambled.
        var header = "{" + string.Join(",",
            T("w", "U8", "[1]", "[0,1]"),
            T("b", "U8", "[0]", "[0,0]"),
            T("\U0001F600", "U8", "[0]", "[0,0]"),
            T("a", "U8", "[0]", "[0,0]"),
            T("z", "BOOL", "[0]", "[0,0]"),
            T("\uFF5E", "U8", "[0]", "[0,0]"),
            T("y", "U64", "[0]", "[0,0]"),
            T("m", "F32", "[0]", "[1,1]"),
            T("l", "BOOL", "[0]", "[1,1]")) + "}";
        var h = ParseFile(FileOf(header, 1));
        Assert.That(h.Tensors.Select(t => t.Name),
            Is.EqualTo(new[] { "y", "a", "b", "\uFF5E", "\U0001F600", "z", "w", "m", "l" }));
    }

    [Test]
    public void ReSerializingTiedTensorsReproducesTheWriterOrder()
    {
        var tensors = new List<HeaderTensor>
        {
            new("q", Dtype.F16, [0], 0, 0),
            new("p", Dtype.F16, [0], 0, 0),
            new("r", Dtype.I64, [0, 2], 0, 0),
            new("s", Dtype.I8, [2], 0, 2),
        };
        tensors.Sort((x, y) => WriterOrder.Compare(x.Dtype, x.Name, y.Dtype, y.Name));
        Assert.That(tensors.Select(t => t.Name), Is.EqualTo(new[] { "r", "p", "q", "s" }));
        // Offsets given above are already contiguous in writer order.
        var json = HeaderSerializer.Serialize(null, tensors);
        var h = ParseFile(FileOf(HeaderSerializer.Pad(json), 2));
        var again = HeaderSerializer.Serialize(null, h.Tensors.Select(t => new HeaderTensor(t.Name, t.Dtype, t.Shape, t.Begin, t.End)));
        Assert.That(again, Is.EqualTo(json));
    }

    [Test]
    public void TensorToStringIsInformative()
        => Assert.That(ParseFile(FileOf(OneU8, 1)).Tensors[0].ToString(), Is.EqualTo("a U8[1] @[0,1)"));
}
