using System.Buffers.Binary;

namespace CryptoTensors.Gpu.ILGPU;

/// <summary>AES constants and the host-side key schedule (FIPS-197) for the device kernels.</summary>
internal static class AesTables
{
    /// <summary>The S-box, computed (multiplicative inverse in GF(2^8) and the affine map).</summary>
    public static readonly byte[] SBox = BuildSBox();

    /// <summary>T-table 0: (2·S[x], S[x], S[x], 3·S[x]) big-endian; the others are its byte rotations.</summary>
    public static readonly uint[] Te0 = BuildTe0();

    private static byte[] BuildSBox()
    {
        var s = new byte[256];
        byte p = 1, q = 1;
        do
        {
            // p ← p·3, q ← q/3: q is p's inverse throughout.
            p = (byte)(p ^ (p << 1) ^ ((p & 0x80) != 0 ? 0x1B : 0));
            q ^= (byte)(q << 1);
            q ^= (byte)(q << 2);
            q ^= (byte)(q << 4);
            if ((q & 0x80) != 0) q ^= 0x09;
            var x = (byte)(q ^ Rotl8(q, 1) ^ Rotl8(q, 2) ^ Rotl8(q, 3) ^ Rotl8(q, 4));
            s[p] = (byte)(x ^ 0x63);
        }
        while (p != 1);
        s[0] = 0x63;
        return s;
    }

    private static byte Rotl8(byte x, int n) => (byte)((x << n) | (x >> (8 - n)));

    private static byte Mul2(byte x) => (byte)((x << 1) ^ ((x & 0x80) != 0 ? 0x1B : 0));

    private static uint[] BuildTe0()
    {
        var t = new uint[256];
        for (var i = 0; i < 256; i++)
        {
            var s = SBox[i];
            var s2 = Mul2(s);
            var s3 = (byte)(s2 ^ s);
            t[i] = ((uint)s2 << 24) | ((uint)s << 16) | ((uint)s << 8) | s3;
        }
        return t;
    }

    /// <summary>Rounds of AES for a key of <paramref name="keyBytes"/> bytes (16 or 32).</summary>
    public static int Rounds(int keyBytes) => keyBytes switch
    {
        16 => 10,
        32 => 14,
        _ => throw new ArgumentOutOfRangeException(nameof(keyBytes), "AES-GCM keys here are 16 or 32 bytes"),
    };

    /// <summary>Expands <paramref name="key"/> into <paramref name="words"/> (4·(rounds+1) big-endian round-key words).</summary>
    public static void Expand(ReadOnlySpan<byte> key, Span<uint> words)
    {
        var nk = key.Length / 4;
        var total = 4 * (Rounds(key.Length) + 1);
        for (var i = 0; i < nk; i++) words[i] = BinaryPrimitives.ReadUInt32BigEndian(key.Slice(4 * i, 4));
        uint rcon = 1;
        for (var i = nk; i < total; i++)
        {
            var temp = words[i - 1];
            if (i % nk == 0)
            {
                temp = SubWord((temp << 8) | (temp >> 24)) ^ (rcon << 24);
                rcon = Mul2((byte)rcon);
            }
            else if (nk > 6 && i % nk == 4)
            {
                temp = SubWord(temp);
            }
            words[i] = words[i - nk] ^ temp;
        }
    }

    private static uint SubWord(uint w)
        => ((uint)SBox[w >> 24] << 24) | ((uint)SBox[(w >> 16) & 0xff] << 16) | ((uint)SBox[(w >> 8) & 0xff] << 8) | SBox[w & 0xff];
}
