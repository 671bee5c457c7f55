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
    private static readonly UTF8Encoding StrictUtf8 = new(false, true);
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
        byte[] utf8;
        try { utf8 = StrictUtf8.GetBytes(value); }
        catch (EncoderFallbackException e)
        {
            throw Errors.Create(ErrorCode.InvalidJson, "string is not valid Unicode (lone surrogate)", inner: e);
        }
        WriteEscapedUtf8(utf8);
    }

    private void WriteEscapedUtf8(ReadOnlySpan<byte> utf8)
    {
        Raw((byte)'"');
        var start = 0;
        for (var i = 0; i < utf8.Length; i++)
        {
            var b = utf8[i];
            if (b >= 0x20 && b != (byte)'"' && b != (byte)'\\') continue;
            _out.Write(utf8[start..i]);
            start = i + 1;
            switch (b)
            {
                case (byte)'"': RawAscii("\\\""); break;
                case (byte)'\\': RawAscii("\\\\"); break;
                case 0x08: RawAscii("\\b"); break;
                case 0x0C: RawAscii("\\f"); break;
                case 0x0A: RawAscii("\\n"); break;
                case 0x0D: RawAscii("\\r"); break;
                case 0x09: RawAscii("\\t"); break;
                default:
                    RawAscii("\\u00");
                    Raw(Hex(b >> 4));
                    Raw(Hex(b & 0xF));
                    break;
            }
        }
        _out.Write(utf8[start..]);
        Raw((byte)'"');
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
