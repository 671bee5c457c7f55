using System.Runtime.InteropServices;
using ILGPU;

namespace CryptoTensors.Gpu.ILGPU;

/// <summary>
/// One GCM message for the device: a v2 chunk or a whole v1 tensor, decrypted in place in the launch's data view.
/// The nonce (12 bytes) and expected tag (16 bytes) are big-endian words; <see cref="J0Counter"/> is the low 32-bit
/// word of J0 (1 for every 12-byte IV: J0 = IV ‖ 0x00000001; tests set it to show the inc32 wrap).
/// </summary>
[StructLayout(LayoutKind.Sequential)]
internal struct GcmWorkItem
{
    /// <summary>Offset of the message in the data view.</summary>
    public long DataOffset;
    /// <summary>Offset of the associated data in the AAD view (the format uses none).</summary>
    public long AadOffset;
    /// <summary>Bytes of ciphertext.</summary>
    public int Length;
    /// <summary>Bytes of associated data.</summary>
    public int AadLength;
    /// <summary>Index of the data key in the launch's round-key table.</summary>
    public int KeyIndex;
    /// <summary>Low word of J0 (1 for 12-byte IVs).</summary>
    public uint J0Counter;
    /// <summary>Nonce words (big-endian).</summary>
    public uint N0, N1, N2;
    /// <summary>Expected tag words (big-endian).</summary>
    public uint T0, T1, T2, T3;
}

/// <summary>A 128-bit value as two big-endian halves.</summary>
internal struct U128
{
    public ulong Hi, Lo;
}

/// <summary>An AES state or output block as four big-endian words.</summary>
internal struct Block
{
    public uint A, B, C, D;
}

/// <summary>
/// The AES-GCM kernels: table-based AES (one 1 KiB T-table, rotated, and the S-box for the last round, both in device
/// global memory), GCM's CTR (data from inc32(J0), 32-bit wrap), GHASH (bitwise GF(2^128) multiply, no key-dependent
/// tables) and an OR-of-XORs tag comparison. One thread per message: it authenticates the ciphertext first and only
/// then decrypts in place; a message whose tag fails is zeroed instead, so no unauthenticated plaintext ever exists,
/// even on the device. Status: 1 = authenticated and decrypted, 2 = tag failure (zeroed); 0 (the initial value) = not
/// processed, which the host treats as a failure.
/// </summary>
internal static class GcmKernels
{
    /// <summary>Words of round keys per key in the round-key table (AES-256's 60; AES-128 uses the first 44).</summary>
    public const int KeyStride = 60;

    /// <summary>Status of an authenticated, decrypted message.</summary>
    public const int Authenticated = 1;

    /// <summary>Status of a message whose tag failed (its bytes zeroed).</summary>
    public const int TagMismatch = 2;

    /// <summary>The kernel: item <paramref name="index"/> of <paramref name="items"/>.</summary>
    public static void Decrypt(Index1D index, ArrayView<byte> data, ArrayView<GcmWorkItem> items, ArrayView<uint> roundKeys,
        ArrayView<uint> te, ArrayView<byte> sbox, ArrayView<byte> aad, ArrayView<int> status, int rounds)
    {
        var item = items[index];
        var k = (long)item.KeyIndex * KeyStride;
        var hb = Encrypt(0, 0, 0, 0, roundKeys, k, rounds, te, sbox);
        U128 h;
        h.Hi = ((ulong)hb.A << 32) | hb.B;
        h.Lo = ((ulong)hb.C << 32) | hb.D;
        U128 y;
        y.Hi = 0;
        y.Lo = 0;
        for (long o = 0; o < item.AadLength; o += 16)
            y = GfMul(Xor(y, Load(aad, item.AadOffset + o, (int)Math.Min(16L, item.AadLength - o))), h);
        for (long o = 0; o < item.Length; o += 16)
            y = GfMul(Xor(y, Load(data, item.DataOffset + o, (int)Math.Min(16L, item.Length - o))), h);
        U128 lengths;
        lengths.Hi = (ulong)item.AadLength * 8;
        lengths.Lo = (ulong)item.Length * 8;
        y = GfMul(Xor(y, lengths), h);
        var ej0 = Encrypt(item.N0, item.N1, item.N2, item.J0Counter, roundKeys, k, rounds, te, sbox);
        var tagHi = y.Hi ^ (((ulong)ej0.A << 32) | ej0.B);
        var tagLo = y.Lo ^ (((ulong)ej0.C << 32) | ej0.D);
        // Constant-time style: every bit of the tag is compared, the decision taken once on the OR of the XORs.
        var diff = (tagHi ^ (((ulong)item.T0 << 32) | item.T1)) | (tagLo ^ (((ulong)item.T2 << 32) | item.T3));
        if (diff == 0)
        {
            var counter = item.J0Counter;
            for (long o = 0; o < item.Length; o += 16)
            {
                counter = unchecked(counter + 1); // inc32: the low 32 bits wrap, the nonce words never change
                var ks = Encrypt(item.N0, item.N1, item.N2, counter, roundKeys, k, rounds, te, sbox);
                var n = (int)Math.Min(16L, item.Length - o);
                for (var j = 0; j < n; j++)
                {
                    var at = item.DataOffset + o + j;
                    data[at] = (byte)(data[at] ^ KeystreamByte(ks, j));
                }
            }
            status[index] = Authenticated;
        }
        else
        {
            for (long o = 0; o < item.Length; o++) data[item.DataOffset + o] = 0;
            status[index] = TagMismatch;
        }
    }

    private static byte KeystreamByte(Block ks, int j)
    {
        var w = j < 8 ? (j < 4 ? ks.A : ks.B) : (j < 12 ? ks.C : ks.D);
        return (byte)(w >> (24 - 8 * (j & 3)));
    }

    /// <summary>Up to 16 bytes at <paramref name="offset"/> as a big-endian block, zero-padded.</summary>
    private static U128 Load(ArrayView<byte> view, long offset, int n)
    {
        U128 b;
        b.Hi = 0;
        b.Lo = 0;
        for (var j = 0; j < n; j++)
        {
            var v = (ulong)view[offset + j];
            if (j < 8) b.Hi |= v << (56 - 8 * j);
            else b.Lo |= v << (56 - 8 * (j - 8));
        }
        return b;
    }

    private static U128 Xor(U128 a, U128 b)
    {
        U128 r;
        r.Hi = a.Hi ^ b.Hi;
        r.Lo = a.Lo ^ b.Lo;
        return r;
    }

    /// <summary>X·H in GF(2^128) with GCM's bit order (SP 800-38D, algorithm 1), branch-free on the bits.</summary>
    private static U128 GfMul(U128 x, U128 h)
    {
        ulong zHi = 0, zLo = 0, vHi = h.Hi, vLo = h.Lo;
        for (var i = 0; i < 128; i++)
        {
            var bit = i < 64 ? (x.Hi >> (63 - i)) & 1 : (x.Lo >> (127 - i)) & 1;
            var mask = 0UL - bit;
            zHi ^= vHi & mask;
            zLo ^= vLo & mask;
            var lsb = vLo & 1;
            vLo = (vLo >> 1) | (vHi << 63);
            vHi = (vHi >> 1) ^ (0xE100000000000000UL & (0UL - lsb));
        }
        U128 z;
        z.Hi = zHi;
        z.Lo = zLo;
        return z;
    }

    private static uint Ror(uint x, int n) => (x >> n) | (x << (32 - n));

    /// <summary>AES encryption of one block (words big-endian) with the round keys at <paramref name="k"/>.</summary>
    internal static Block Encrypt(uint i0, uint i1, uint i2, uint i3, ArrayView<uint> rk, long k, int rounds, ArrayView<uint> te, ArrayView<byte> sbox)
    {
        var s0 = i0 ^ rk[k];
        var s1 = i1 ^ rk[k + 1];
        var s2 = i2 ^ rk[k + 2];
        var s3 = i3 ^ rk[k + 3];
        for (var r = 1; r < rounds; r++)
        {
            var kr = k + 4 * r;
            var t0 = te[(int)(s0 >> 24)] ^ Ror(te[(int)((s1 >> 16) & 0xff)], 8) ^ Ror(te[(int)((s2 >> 8) & 0xff)], 16) ^ Ror(te[(int)(s3 & 0xff)], 24) ^ rk[kr];
            var t1 = te[(int)(s1 >> 24)] ^ Ror(te[(int)((s2 >> 16) & 0xff)], 8) ^ Ror(te[(int)((s3 >> 8) & 0xff)], 16) ^ Ror(te[(int)(s0 & 0xff)], 24) ^ rk[kr + 1];
            var t2 = te[(int)(s2 >> 24)] ^ Ror(te[(int)((s3 >> 16) & 0xff)], 8) ^ Ror(te[(int)((s0 >> 8) & 0xff)], 16) ^ Ror(te[(int)(s1 & 0xff)], 24) ^ rk[kr + 2];
            var t3 = te[(int)(s3 >> 24)] ^ Ror(te[(int)((s0 >> 16) & 0xff)], 8) ^ Ror(te[(int)((s1 >> 8) & 0xff)], 16) ^ Ror(te[(int)(s2 & 0xff)], 24) ^ rk[kr + 3];
            s0 = t0;
            s1 = t1;
            s2 = t2;
            s3 = t3;
        }
        var kl = k + 4 * rounds;
        Block o;
        o.A = Last(s0, s1, s2, s3, sbox) ^ rk[kl];
        o.B = Last(s1, s2, s3, s0, sbox) ^ rk[kl + 1];
        o.C = Last(s2, s3, s0, s1, sbox) ^ rk[kl + 2];
        o.D = Last(s3, s0, s1, s2, sbox) ^ rk[kl + 3];
        return o;
    }

    private static uint Last(uint a, uint b, uint c, uint d, ArrayView<byte> sbox)
        => ((uint)sbox[(int)(a >> 24)] << 24) | ((uint)sbox[(int)((b >> 16) & 0xff)] << 16) | ((uint)sbox[(int)((c >> 8) & 0xff)] << 8) | sbox[(int)(d & 0xff)];
}
