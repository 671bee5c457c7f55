using System.Runtime.CompilerServices;

namespace CryptoTensors.Gpu.Format;

/// <summary>Byte-level helpers shared by the fast-path JSON scanners (header and <c>__encryption__</c>).</summary>
internal static class JsonScan
{
    /// <summary>JSON whitespace (RFC 8259): space, tab, line feed, carriage return.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static bool IsWhitespace(byte b) => b is (byte)' ' or (byte)'\t' or (byte)'\n' or (byte)'\r';

    /// <summary>Skips whitespace; the next byte, or 0 at the end.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static byte Peek(ReadOnlySpan<byte> s, ref int i)
    {
        while (i < s.Length && IsWhitespace(s[i])) i++;
        return i < s.Length ? s[i] : (byte)0;
    }

    /// <summary>Skips whitespace and consumes <paramref name="b"/>; false when the next byte is anything else.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static bool Expect(ReadOnlySpan<byte> s, ref int i, byte b)
    {
        if (Peek(s, ref i) != b) return false;
        i++;
        return true;
    }

    /// <summary>Whether only whitespace follows position <paramref name="i"/>.</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public static bool Ends(ReadOnlySpan<byte> s, int i)
    {
        Peek(s, ref i);
        return i == s.Length;
    }
}
