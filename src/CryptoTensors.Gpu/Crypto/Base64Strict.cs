using System.Runtime.CompilerServices;
using System.Buffers;
using System.Runtime.InteropServices;

namespace CryptoTensors.Gpu.Crypto;

/// <summary>
/// Base64 as the reference reads and writes it (FORMAT.md §2.6): standard alphabet, <c>=</c> padding, canonical
/// (zero trailing bits), no whitespace. <see cref="Convert.FromBase64String(string)"/> alone is more lenient
/// (it skips whitespace), so decoded values are re-encoded and compared.
/// </summary>
internal static class Base64Strict
{
    public static string Encode(ReadOnlySpan<byte> data) => Convert.ToBase64String(data);

    /// <summary>Decodes canonical standard base64; false for anything the reference's decoder rejects.</summary>
    public static bool TryDecode(string text, out byte[] bytes)
    {
        bytes = [];
        if (text.Length % 4 != 0) return false;
        foreach (var c in text)
        {
            if (c is not ((>= 'A' and <= 'Z') or (>= 'a' and <= 'z') or (>= '0' and <= '9') or '+' or '/' or '=')) return false;
        }
        byte[] decoded;
        try { decoded = Convert.FromBase64String(text); }
        catch (FormatException) { return false; }
        if (!string.Equals(Convert.ToBase64String(decoded), text, StringComparison.Ordinal)) return false;
        bytes = decoded;
        return true;
    }

    /// <summary>The value of each base64 character of the standard alphabet, -1 for every other byte.</summary>
    private static readonly sbyte[] Sextets = BuildSextets();

    private static sbyte[] BuildSextets()
    {
        var map = new sbyte[256];
        map.AsSpan().Fill(-1);
        var alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"u8;
        for (var i = 0; i < alphabet.Length; i++) map[alphabet[i]] = (sbyte)i;
        return map;
    }

    /// <summary>
    /// Canonical standard base64 given as UTF-8 bytes (no allocation but the result); false for anything the reference
    /// rejects: a length that is not a multiple of 4, any byte outside the alphabet before the padding (whitespace
    /// included), more than two <c>=</c>, or non-zero bits after the last whole byte. A scalar decoder, four characters
    /// at a time: the values are short (16 to 88 characters) and decoded once per tensor field at open.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public static bool TryDecodeUtf8(ReadOnlySpan<byte> utf8, out byte[] bytes)
    {
        bytes = [];
        if (utf8.Length % 4 != 0) return false;
        if (utf8.IsEmpty) return true;
        var pad = utf8[^1] != (byte)'=' ? 0 : utf8[^2] != (byte)'=' ? 1 : 2;
        var decoded = new byte[utf8.Length / 4 * 3 - pad];
        if (!TryDecodeQuads(utf8, pad, decoded)) return false;
        bytes = decoded;
        return true;
    }

    /// <summary>Decodes <paramref name="utf8"/> (a multiple of 4 long, ending in <paramref name="pad"/> <c>=</c>) into <paramref name="output"/>.</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static bool TryDecodeQuads(ReadOnlySpan<byte> utf8, int pad, Span<byte> output)
    {
        // Unchecked reads: the caller sized output to 3 bytes per whole quad plus 1 or 2 for the padded one, and every
        // index below stays within utf8 (a multiple of 4 long) and that output; the map has an entry for every byte.
        if (utf8.Length % 4 != 0 || pad is < 0 or > 2 || output.Length != utf8.Length / 4 * 3 - pad)
            throw new ArgumentException("output must hold exactly the decoded bytes", nameof(output));
        ref var map = ref MemoryMarshal.GetArrayDataReference(Sextets);
        ref var src = ref MemoryMarshal.GetReference(utf8);
        ref var dst = ref MemoryMarshal.GetReference(output);
        var whole = utf8.Length / 4 - (pad == 0 ? 0 : 1);
        for (var q = 0; q < whole; q++)
        {
            ref var c = ref Unsafe.Add(ref src, q * 4);
            int a = Unsafe.Add(ref map, c), b = Unsafe.Add(ref map, Unsafe.Add(ref c, 1)),
                d = Unsafe.Add(ref map, Unsafe.Add(ref c, 2)), e = Unsafe.Add(ref map, Unsafe.Add(ref c, 3));
            if ((a | b | d | e) < 0) return false;
            var v = (a << 18) | (b << 12) | (d << 6) | e;
            ref var o = ref Unsafe.Add(ref dst, q * 3);
            o = (byte)(v >> 16);
            Unsafe.Add(ref o, 1) = (byte)(v >> 8);
            Unsafe.Add(ref o, 2) = (byte)v;
        }
        if (pad == 0) return true;
        var last = utf8[^4..];
        int x = Unsafe.Add(ref map, last[0]), y = Unsafe.Add(ref map, last[1]);
        if ((x | y) < 0) return false;
        var at = whole * 3;
        if (pad == 2)
        {
            // "xy==": one byte; canonical only when the 4 bits after it are zero.
            if ((y & 0xF) != 0) return false;
            output[at] = (byte)((x << 2) | (y >> 4));
            return true;
        }
        // "xyz=": two bytes; canonical only when the 2 bits after them are zero.
        int z = Unsafe.Add(ref map, last[2]);
        if (z < 0 || (z & 0x3) != 0) return false;
        var w = (x << 12) | (y << 6) | z;
        output[at] = (byte)(w >> 10);
        output[at + 1] = (byte)(w >> 2);
        return true;
    }

    /// <summary>
    /// Decodes key material leniently (standard or URL alphabet, padded or not: RFC 7517 JWKs use base64url
    /// without padding) straight into <paramref name="destination"/>; returns the byte count or -1.
    /// The temporary character copy is cleared before returning.
    /// </summary>
    public static int DecodeLenient(ReadOnlySpan<char> text, Span<byte> destination)
    {
        var padded = (text.Length + 3) / 4 * 4;
        var chars = ArrayPool<char>.Shared.Rent(Math.Max(padded, 4));
        try
        {
            for (var i = 0; i < text.Length; i++)
            {
                chars[i] = text[i] switch { '-' => '+', '_' => '/', var c => c };
                if (char.IsWhiteSpace(chars[i])) return -1;
            }
            var n = text.Length;
            while (n % 4 != 0) chars[n++] = '=';
            return Convert.TryFromBase64Chars(chars.AsSpan(0, n), destination, out var written) ? written : -1;
        }
        finally
        {
            chars.AsSpan().Clear();
            ArrayPool<char>.Shared.Return(chars);
        }
    }
}
