using System.Buffers;
using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;
using System.Numerics;
using System.Runtime.Intrinsics;
using System.Text;

using static CryptoTensors.Gpu.Format.JsonScan;

namespace CryptoTensors.Gpu.Format;

/// <summary>
/// The fast path of <see cref="SafetensorsHeader"/> parsing: a scanner for the plain subset of JSON that writers emit
/// (one object; <c>__metadata__</c> an object of strings or <c>null</c>; each tensor an object of exactly <c>dtype</c>,
/// <c>shape</c> and <c>data_offsets</c>; integers in plain decimal; tensor and field names without escapes; strings
/// with the simple escapes and <c>\uXXXX</c> outside the surrogate range; JSON whitespace anywhere). It declines
/// (returns false) on anything else, valid or not, and on every semantic error it meets (duplicates, missing fields,
/// unknown dtypes, wrong counts, integer overflow): the general parser then parses the header and reports the error.
/// What it accepts it reads exactly as the general parser does. The header must already be valid UTF-8.
/// </summary>
internal static class PlainHeaderParser
{
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public static bool TryParse(byte[] header, out HeaderMetadata? metadata, out List<TensorInfo> tensors, out Dictionary<string, TensorInfo> byName)
    {
        metadata = null;
        tensors = [];
        byName = new Dictionary<string, TensorInfo>(StringComparer.Ordinal);
        ReadOnlySpan<byte> s = header;
        var i = 0;
        if (!Expect(s, ref i, (byte)'{')) return false;
        if (Peek(s, ref i) == (byte)'}') return Ends(s, i + 1);
        var metadataSeen = false;
        while (true)
        {
            if (!TryString(s, ref i, out var key, out var escaped) || escaped || !Expect(s, ref i, (byte)':')) return false;
            if (s[key].SequenceEqual("__metadata__"u8))
            {
                if (metadataSeen || !TryMetadata(header, ref i, out metadata)) return false;
                metadataSeen = true;
            }
            else
            {
                if (tensors.Count == HeaderLimits.MaxTensorCount) return false;
                var name = Encoding.UTF8.GetString(s[key]);
                ref var slot = ref CollectionsMarshal.GetValueRefOrAddDefault(byName, name, out var exists);
                if (exists || !TryTensor(s, ref i, name, Raw(key, canonical: true), out var tensor)) return false;
                slot = tensor;
                tensors.Add(tensor);
            }
            var next = Peek(s, ref i);
            i++;
            if (next == (byte)'}') return Ends(s, i);
            if (next != (byte)',') return false;
        }
    }

    /// <summary>
    /// Metadata values from this many stored bytes (the per-tensor reserved fields of many-tensor models) are unescaped
    /// only when first read (<see cref="HeaderMetadata"/>): the reader parses <c>__encryption__</c> from the stored bytes.
    /// </summary>
    internal const int DeferredValueBytes = 16 << 10;

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static bool TryMetadata(byte[] header, ref int i, out HeaderMetadata? metadata)
    {
        metadata = null;
        ReadOnlySpan<byte> s = header;
        var first = Peek(s, ref i);
        if (first == (byte)'n')
        {
            if (!s[i..].StartsWith("null"u8)) return false;
            i += 4;
            return true;
        }
        if (first != (byte)'{') return false;
        i++;
        metadata = new HeaderMetadata(header);
        if (Peek(s, ref i) == (byte)'}')
        {
            i++;
            return true;
        }
        while (true)
        {
            if (!TryString(s, ref i, out var k, out var kEscaped, out var kCanonical) || !Expect(s, ref i, (byte)':')
                || !TryString(s, ref i, out var v, out var vEscaped, out var vCanonical))
                return false;
            var key = Unescape(s[k], kEscaped);
            if (key is null) return false;
            var deferred = v.End.Value - v.Start.Value >= DeferredValueBytes;
            var value = deferred ? null : Unescape(s[v], vEscaped);
            if (!deferred && value is null) return false;
            if (metadata.Count == HeaderLimits.MaxMetadataEntries) return false;
            if (!metadata.TryAdd(new RawMetadataEntry(key, Raw(k, kCanonical), Raw(v, vCanonical), vEscaped), value)) return false;
            var next = Peek(s, ref i);
            i++;
            if (next == (byte)'}') return true;
            if (next != (byte)',') return false;
        }
    }

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static bool TryTensor(ReadOnlySpan<byte> s, ref int i, string name, RawString rawName, out TensorInfo tensor)
    {
        tensor = null!;
        if (!Expect(s, ref i, (byte)'{')) return false;
        Dtype? dtype = null;
        ulong[]? shape = null;
        ulong begin = 0, end = 0;
        var haveOffsets = false;
        Span<ulong> values = stackalloc ulong[8];
        if (Peek(s, ref i) == (byte)'}') return false;
        while (true)
        {
            if (!TryString(s, ref i, out var field, out var escaped) || escaped || !Expect(s, ref i, (byte)':')) return false;
            var f = s[field];
            if (f.SequenceEqual("dtype"u8))
            {
                if (dtype is not null || !TryString(s, ref i, out var d, out var dEscaped) || dEscaped || !Dtypes.TryParseUtf8(s[d], out var parsed)) return false;
                dtype = parsed;
            }
            else if (f.SequenceEqual("shape"u8))
            {
                if (shape is not null) return false;
                var n = TryIntegers(s, ref i, values);
                if (n < 0) return false;
                shape = values[..n].ToArray();
            }
            else if (f.SequenceEqual("data_offsets"u8))
            {
                if (haveOffsets || TryIntegers(s, ref i, values) != 2) return false;
                (begin, end) = (values[0], values[1]);
                haveOffsets = true;
            }
            else return false; // unknown fields: the general parser skips them
            var next = Peek(s, ref i);
            i++;
            if (next == (byte)'}') break;
            if (next != (byte)',') return false;
        }
        if (dtype is null || shape is null || !haveOffsets) return false;
        tensor = new TensorInfo(name, dtype.Value, shape, begin, end) { RawName = rawName };
        return true;
    }

    /// <summary>An array of at most <paramref name="values"/>.Length plain unsigned integers; the count, or -1.</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static int TryIntegers(ReadOnlySpan<byte> s, ref int i, Span<ulong> values)
    {
        if (!Expect(s, ref i, (byte)'[')) return -1;
        if (Peek(s, ref i) == (byte)']')
        {
            i++;
            return 0;
        }
        var n = 0;
        while (true)
        {
            if (n == values.Length) return -1;
            Peek(s, ref i);
            var start = i;
            ulong v = 0;
            while (i < s.Length && s[i] is >= (byte)'0' and <= (byte)'9')
            {
                var digit = (ulong)(s[i] - '0');
                if (v > (ulong.MaxValue - digit) / 10) return -1;
                v = v * 10 + digit;
                i++;
            }
            // At least one digit, and no leading zero (which JSON forbids).
            if (i == start || (s[start] == (byte)'0' && i - start > 1)) return -1;
            values[n++] = v;
            var next = Peek(s, ref i);
            i++;
            if (next == (byte)']') return n;
            if (next != (byte)',') return -1;
        }
    }

    /// <summary>
    /// A string token: the range of its raw content, and whether it holds escapes. Declines raw control characters,
    /// unknown escapes and <c>\u</c> escapes of surrogates (the general parser handles those).
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static bool TryString(ReadOnlySpan<byte> s, ref int i, out Range content, out bool escaped)
        => TryString(s, ref i, out content, out escaped, out _);

    /// <summary>
    /// <see cref="TryString(ReadOnlySpan{byte}, ref int, out Range, out bool)"/>, also telling whether the raw content is in
    /// canonical escaping (<see cref="CanonicalJson.IsCanonicalEscaped"/>), found in the same pass.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static bool TryString(ReadOnlySpan<byte> s, ref int i, out Range content, out bool escaped, out bool canonical)
    {
        content = default;
        escaped = false;
        canonical = true;
        if (Peek(s, ref i) != (byte)'"') return false;
        var start = i + 1;
        var j = start;
        if (Vector256.IsHardwareAccelerated)
        {
            // 32 bytes at a time: a mask of the quotes, backslashes and control characters of the block, whose bits are
            // then taken in order (long metadata values such as __encryption__ hold an escape every few bytes, so the
            // block is not reloaded after each one).
            var quote = Vector256.Create((byte)'"');
            var backslash = Vector256.Create((byte)'\\');
            var space = Vector256.Create((byte)0x20);
            ref var origin = ref MemoryMarshal.GetReference(s);
            while (j <= s.Length - Vector256<byte>.Count)
            {
                var v = Vector256.LoadUnsafe(ref origin, (nuint)j);
                var mask = (Vector256.Equals(v, quote) | Vector256.Equals(v, backslash) | Vector256.LessThan(v, space)).ExtractMostSignificantBits();
                var next = j + Vector256<byte>.Count;
                while (mask != 0)
                {
                    var k = j + BitOperations.TrailingZeroCount(mask);
                    var b = s[k];
                    if (b == (byte)'"')
                    {
                        content = start..k;
                        i = k + 1;
                        return true;
                    }
                    if (b < 0x20) return false;
                    escaped = true; // b is a backslash
                    var after = SkipEscape(s, k, ref canonical);
                    if (after < 0) return false;
                    var skipped = after - j;
                    if (skipped >= Vector256<byte>.Count)
                    {
                        next = after; // the escape ends past this block
                        break;
                    }
                    mask &= uint.MaxValue << skipped;
                }
                j = next;
            }
        }
        while (j < s.Length)
        {
            var b = s[j];
            if (b == (byte)'"')
            {
                content = start..j;
                i = j + 1;
                return true;
            }
            if (b < 0x20) return false;
            if (b != (byte)'\\')
            {
                j++;
                continue;
            }
            escaped = true;
            j = SkipEscape(s, j, ref canonical);
            if (j < 0) return false;
        }
        return false;
    }

    /// <summary>
    /// The index just past the escape whose backslash is at <paramref name="j"/>, or -1 where it is not a valid JSON
    /// escape; clears <paramref name="canonical"/> for an escape <see cref="CanonicalJson.IsCanonicalEscaped"/> would not write.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static int SkipEscape(ReadOnlySpan<byte> s, int j, ref bool canonical)
    {
        if (j + 1 >= s.Length) return -1;
        switch (s[j + 1])
        {
            case (byte)'"' or (byte)'\\' or (byte)'b' or (byte)'f' or (byte)'n' or (byte)'r' or (byte)'t':
                return j + 2;
            case (byte)'/':
                canonical = false;
                return j + 2;
            case (byte)'u':
                if (j + 6 > s.Length || !TryHex4(s.Slice(j + 2, 4), out var c) || c is >= 0xD800 and <= 0xDFFF) return -1;
                // Canonical only for a control character without a short form, in lower-case hex.
                if (c >= 0x20 || c is 0x08 or 0x09 or 0x0A or 0x0C or 0x0D || s.Slice(j + 2, 4).ContainsAnyInRange((byte)'A', (byte)'F')) canonical = false;
                return j + 6;
            default:
                return -1;
        }
    }

    private static bool TryHex4(ReadOnlySpan<byte> hex, out int value)
    {
        value = 0;
        foreach (var h in hex)
        {
            int d = h switch
            {
                >= (byte)'0' and <= (byte)'9' => h - '0',
                >= (byte)'a' and <= (byte)'f' => h - 'a' + 10,
                >= (byte)'A' and <= (byte)'F' => h - 'A' + 10,
                _ => -1,
            };
            if (d < 0) return false;
            value = (value << 4) | d;
        }
        return true;
    }

    /// <summary>The value of a string accepted by <see cref="TryString(ReadOnlySpan{byte}, ref int, out Range, out bool)"/>.</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    internal static string? Unescape(ReadOnlySpan<byte> raw, bool escaped)
    {
        if (!escaped) return Encoding.UTF8.GetString(raw);
        var rented = ArrayPool<byte>.Shared.Rent(Math.Max(raw.Length, 1));
        try
        {
            var o = 0;
            for (var j = 0; j < raw.Length; j++)
            {
                var b = raw[j];
                if (b != (byte)'\\')
                {
                    rented[o++] = b;
                    continue;
                }
                var e = raw[++j];
                switch (e)
                {
                    case (byte)'b': rented[o++] = 0x08; break;
                    case (byte)'f': rented[o++] = 0x0C; break;
                    case (byte)'n': rented[o++] = 0x0A; break;
                    case (byte)'r': rented[o++] = 0x0D; break;
                    case (byte)'t': rented[o++] = 0x09; break;
                    case (byte)'u':
                        if (!TryHex4(raw.Slice(j + 1, 4), out var c)) return null;
                        j += 4;
                        // A code point below U+D800 or above U+DFFF (TryString declined surrogates): 1 to 3 UTF-8 bytes.
                        if (c < 0x80) rented[o++] = (byte)c;
                        else if (c < 0x800)
                        {
                            rented[o++] = (byte)(0xC0 | (c >> 6));
                            rented[o++] = (byte)(0x80 | (c & 0x3F));
                        }
                        else
                        {
                            rented[o++] = (byte)(0xE0 | (c >> 12));
                            rented[o++] = (byte)(0x80 | ((c >> 6) & 0x3F));
                            rented[o++] = (byte)(0x80 | (c & 0x3F));
                        }
                        break;
                    default: rented[o++] = e; break; // '"', '\\' and '/'
                }
            }
            return Encoding.UTF8.GetString(rented, 0, o);
        }
        finally
        {
            ArrayPool<byte>.Shared.Return(rented);
        }
    }

    private static RawString Raw(Range r, bool canonical)
    {
        var (start, length) = (r.Start.Value, r.End.Value - r.Start.Value);
        return length == 0 ? new RawString(0, 0, true) : new RawString(start, length, canonical);
    }
}
