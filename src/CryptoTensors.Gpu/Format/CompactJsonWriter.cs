using System.Runtime.CompilerServices;
using System.Buffers;
using System.Text;

namespace CryptoTensors.Gpu.Format;

/// <summary>
/// Writes JSON exactly as serde_json's compact serializer does (FORMAT.md §1.6): no whitespace, plain
/// decimal integers, and only <c>"</c>, <c>\</c> and U+0000..U+001F escaped (short forms for
/// \b \f \n \r \t, otherwise <c>\u00xx</c> with lower-case hex). Everything that is stored or signed goes
/// through this writer; System.Text.Json's default encoder escapes differently and is never used for it.
/// The caller is responsible for key order (see <see cref="Utf8Order"/>).
/// </summary>
internal sealed class CompactJsonWriter
{
    private readonly ArrayBufferWriter<byte> _out;
    private readonly Stack<bool> _first = new();
    private bool _afterName;

    public CompactJsonWriter(int initialCapacity = 256) => _out = new ArrayBufferWriter<byte>(initialCapacity);

    public ReadOnlySpan<byte> WrittenSpan => _out.WrittenSpan;

    public byte[] ToArray() => _out.WrittenSpan.ToArray();

    public string ToUtf8String() => Encoding.UTF8.GetString(_out.WrittenSpan);

    public void StartObject() { BeforeValue(); Raw((byte)'{'); _first.Push(true); }

    public void EndObject() { _first.Pop(); Raw((byte)'}'); }

    public void StartArray() { BeforeValue(); Raw((byte)'['); _first.Push(true); }

    public void EndArray() { _first.Pop(); Raw((byte)']'); }

    public void Name(string name)
    {
        Separator();
        WriteEscaped(name);
        Raw((byte)':');
        _afterName = true;
    }

    public void Name(ReadOnlySpan<byte> utf8Name)
    {
        Separator();
        WriteEscapedUtf8(utf8Name);
        Raw((byte)':');
        _afterName = true;
    }

    public void String(string value) { BeforeValue(); WriteEscaped(value); }

    public void Number(ulong value)
    {
        BeforeValue();
        var span = _out.GetSpan(20);
        value.TryFormat(span, out var n, default, System.Globalization.CultureInfo.InvariantCulture);
        _out.Advance(n);
    }

    public void Bool(bool value) { BeforeValue(); RawAscii(value ? "true" : "false"); }

    /// <summary>Writes an already-serialized JSON value verbatim.</summary>
    public void RawValue(ReadOnlySpan<byte> json) { BeforeValue(); _out.Write(json); }

    public void Property(string name, string value) { Name(name); String(value); }

    public void Property(string name, ulong value) { Name(name); Number(value); }

    private void BeforeValue()
    {
        if (_afterName) { _afterName = false; return; }
        Separator();
    }

    private void Separator()
    {
        if (_first.Count == 0) return;
        if (_first.Peek()) { _first.Pop(); _first.Push(false); }
        else Raw((byte)',');
    }

    private void Raw(byte b) { _out.GetSpan(1)[0] = b; _out.Advance(1); }

    private void RawAscii(string s)
    {
        var span = _out.GetSpan(s.Length);
        for (var i = 0; i < s.Length; i++) span[i] = (byte)s[i];
        _out.Advance(s.Length);
    }

    private void WriteEscaped(string value)
    {
        Raw((byte)'"');
        CanonicalJson.WriteEscapedContent(_out, value);
        Raw((byte)'"');
    }

    private void WriteEscapedUtf8(ReadOnlySpan<byte> utf8)
    {
        Raw((byte)'"');
        CanonicalJson.WriteEscapedContent(_out, utf8);
        Raw((byte)'"');
    }
}

/// <summary>
/// serde_json's string escaping (FORMAT.md §1.6): only <c>"</c>, <c>\</c> and U+0000..U+001F are escaped, with the
/// short forms for \b \f \n \r \t and <c>\u00xx</c> (lower-case hex) for the other control characters.
/// </summary>
internal static class CanonicalJson
{
    private static readonly UTF8Encoding StrictUtf8 = new(false, true);
    private static readonly SearchValues<byte> Escaped = SearchValues.Create(
        [0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17, 18, 19, 20, 21, 22, 23, 24, 25, 26, 27, 28, 29, 30, 31, (byte)'"', (byte)'\\']);

    /// <summary>Writes the escaped form of <paramref name="value"/> (no quotes); a lone surrogate is <see cref="ErrorCode.InvalidJson"/>.</summary>
    public static void WriteEscapedContent(IBufferWriter<byte> output, string value)
    {
        byte[] utf8;
        try { utf8 = StrictUtf8.GetBytes(value); }
        catch (EncoderFallbackException e)
        {
            throw Errors.Create(ErrorCode.InvalidJson, "string is not valid Unicode (lone surrogate)", inner: e);
        }
        WriteEscapedContent(output, utf8);
    }

    /// <summary>Writes the escaped form of the UTF-8 string <paramref name="utf8"/> (no quotes).</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public static void WriteEscapedContent(IBufferWriter<byte> output, ReadOnlySpan<byte> utf8)
    {
        while (true)
        {
            var i = utf8.IndexOfAny(Escaped);
            if (i < 0)
            {
                output.Write(utf8);
                return;
            }
            output.Write(utf8[..i]);
            var b = utf8[i];
            utf8 = utf8[(i + 1)..];
            switch (b)
            {
                case (byte)'"': output.Write("\\\""u8); break;
                case (byte)'\\': output.Write("\\\\"u8); break;
                case 0x08: output.Write("\\b"u8); break;
                case 0x0C: output.Write("\\f"u8); break;
                case 0x0A: output.Write("\\n"u8); break;
                case 0x0D: output.Write("\\r"u8); break;
                case 0x09: output.Write("\\t"u8); break;
                default:
                    var span = output.GetSpan(6);
                    "\\u00"u8.CopyTo(span);
                    span[4] = Hex(b >> 4);
                    span[5] = Hex(b & 0xF);
                    output.Advance(6);
                    break;
            }
        }
    }

    /// <summary>
    /// Whether <paramref name="raw"/>, the content of a JSON string as stored (escapes included, quotes excluded), is exactly
    /// what <see cref="WriteEscapedContent(IBufferWriter{byte}, ReadOnlySpan{byte})"/> writes for its value: every escape is one
    /// the serializer itself would use, for a character it must escape. The raw bytes must be a valid JSON string.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public static bool IsCanonicalEscaped(ReadOnlySpan<byte> raw)
    {
        // A scalar scan (strings are short, or dense with escapes like the JSON held in reserved fields).
        for (var i = 0; i < raw.Length; i++)
        {
            var b = raw[i];
            if (b >= 0x20 && b != (byte)'"' && b != (byte)'\\') continue;
            if (b != (byte)'\\' || i + 1 >= raw.Length) return false; // raw control characters and quotes are not valid JSON
            switch (raw[i + 1])
            {
                case (byte)'"' or (byte)'\\' or (byte)'b' or (byte)'f' or (byte)'n' or (byte)'r' or (byte)'t':
                    i += 1;
                    break;
                case (byte)'u':
                    // Only \u0000..\u001f in lower-case hex, and not the five characters that have a short form.
                    if (i + 6 > raw.Length || raw[i + 2] != (byte)'0' || raw[i + 3] != (byte)'0') return false;
                    var hi = raw[i + 4];
                    var lo = raw[i + 5];
                    if (hi is not ((byte)'0' or (byte)'1') || lo is not ((>= (byte)'0' and <= (byte)'9') or (>= (byte)'a' and <= (byte)'f'))) return false;
                    var c = ((hi - '0') << 4) | (lo <= '9' ? lo - '0' : lo - 'a' + 10);
                    if (c is 0x08 or 0x09 or 0x0A or 0x0C or 0x0D) return false;
                    i += 5;
                    break;
                default:
                    return false; // \/ and \u escapes of characters that are written raw
            }
        }
        return true;
    }

    private static byte Hex(int nibble) => (byte)(nibble < 10 ? '0' + nibble : 'a' + nibble - 10);
}

/// <summary>Byte-wise UTF-8 ordering of strings, as Rust's <c>String</c>/<c>BTreeMap</c> order them.</summary>
public sealed class Utf8Order : IComparer<string>
{
    /// <summary>The comparer.</summary>
    public static Utf8Order Instance { get; } = new();

    private Utf8Order() { }

    /// <inheritdoc />
    public int Compare(string? x, string? y)
    {
        if (ReferenceEquals(x, y)) return 0;
        if (x is null) return -1;
        if (y is null) return 1;
        // UTF-16 ordinal order equals UTF-8 byte order except where a surrogate (U+D800..DFFF) meets a code unit
        // in U+E000..U+FFFF; compare code points to get UTF-8 order in every case.
        int i = 0, j = 0;
        while (i < x.Length && j < y.Length)
        {
            var a = CodePoint(x, ref i);
            var b = CodePoint(y, ref j);
            if (a != b) return a < b ? -1 : 1;
        }
        return (x.Length - i).CompareTo(y.Length - j) switch { 0 => 0, _ => i < x.Length ? 1 : -1 };
    }

    private static int CodePoint(string s, ref int i)
    {
        var c = s[i++];
        if (char.IsHighSurrogate(c) && i < s.Length && char.IsLowSurrogate(s[i])) return char.ConvertToUtf32(c, s[i++]);
        return c;
    }
}
