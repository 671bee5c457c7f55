using System.Runtime.CompilerServices;
using System.Buffers;

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
    /// included), more than two <c>=</c>, or non-zero bits after the last whole byte. A plain scalar decoder: the values
    /// are short (16 to 88 characters) and decoded once per tensor field at open.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public static bool TryDecodeUtf8(ReadOnlySpan<byte> utf8, out byte[] bytes)
    {
        bytes = [];
        if (utf8.Length % 4 != 0) return false;
        if (utf8.IsEmpty) return true;
        var pad = utf8[^1] != (byte)'=' ? 0 : utf8[^2] != (byte)'=' ? 1 : 2;
        var body = utf8[..^pad];
        var decoded = new byte[body.Length * 3 / 4];
        var map = Sextets;
        int acc = 0, bits = 0, o = 0;
        foreach (var c in body)
        {
            var v = map[c];
            if (v < 0) return false;
            acc = (acc << 6) | (byte)v;
            bits += 6;
            if (bits >= 8)
            {
                bits -= 8;
                decoded[o++] = (byte)(acc >> bits);
                acc &= (1 << bits) - 1;
            }
        }
        // Canonical: the 2 (one '=') or 4 (two '=') bits after the last byte are zero.
        if (acc != 0 || o != decoded.Length) return false;
        bytes = decoded;
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
