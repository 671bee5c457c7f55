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
    /// <summary>First of the item's segments in the launch's segment list (set by <see cref="GpuAesGcm"/>).</summary>
    public int SegmentFirst;
    /// <summary>Number of the item's segments (0 for an empty message).</summary>
    public int SegmentCount;
}

/// <summary>A run of 16-byte blocks of one message: the unit of parallel GHASH and of CTR decryption.</summary>
[StructLayout(LayoutKind.Sequential)]
internal struct GcmSegment
{
    /// <summary>The message (index into the work list).</summary>
    public int Item;
    /// <summary>Blocks in the segment (the last one of a message may be partial).</summary>
    public int Blocks;
    /// <summary>Index of the segment's first block in its message (0-based).</summary>
    public long FirstBlock;
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
/// tables) and an OR-of-XORs tag comparison. Three launches over a work list of messages cut into segments of blocks:
/// GHASH of every segment in parallel (each multiplied by its power of H), then per message the XOR of its segments,
/// the lengths block, E(J0) and the tag comparison, then CTR decryption of every segment in parallel — only of
/// messages whose tag matched; the others are zeroed, so no unauthenticated plaintext ever exists, even on the
/// device. Status: 1 = authenticated and decrypted, 2 = tag failure (zeroed); 0 (the initial value) = not processed,
/// which the host treats as a failure.
/// </summary>
internal static class GcmKernels
{
    /// <summary>Words of round keys per key in the round-key table (AES-256's 60; AES-128 uses the first 44).</summary>
    public const int KeyStride = 60;

    /// <summary>Status of an authenticated, decrypted message.</summary>
    public const int Authenticated = 1;

    /// <summary>Status of a message whose tag failed (its bytes zeroed).</summary>
    public const int TagMismatch = 2;

    /// <summary>
    /// Parallel GHASH, step 1 (one thread per segment): Horner over the segment's ciphertext blocks, times the power of H
    /// that places it in the message's sum: P·H^(n+1-last) where n is the message's block count and last the segment's
    /// last block (1-based), so the message's GHASH is the XOR of its segments' values, the AAD's and L·H.
    /// </summary>
    public static void GhashSegments(Index1D index, ArrayView<byte> data, ArrayView<GcmWorkItem> items, ArrayView<GcmSegment> segments,
        ArrayView<uint> roundKeys, ArrayView<uint> te, ArrayView<byte> sbox, ArrayView<ulong> partials, int rounds)
    {
        var seg = segments[index];
        var item = items[seg.Item];
        var h = HashKey(item, roundKeys, rounds, te, sbox);
        U128 y;
        y.Hi = 0;
        y.Lo = 0;
        var start = item.DataOffset + seg.FirstBlock * 16;
        var end = Math.Min(item.DataOffset + item.Length, start + (long)seg.Blocks * 16);
        for (var o = start; o < end; o += 16) y = GfMul(Xor(y, Load(data, o, (int)Math.Min(16L, end - o))), h);
        var blocks = ((long)item.Length + 15) / 16;
        y = GfMul(y, Pow(h, blocks - (seg.FirstBlock + seg.Blocks) + 1));
        partials[2L * index] = y.Hi;
        partials[2L * index + 1] = y.Lo;
    }

    /// <summary>
    /// Parallel GHASH, step 2 (one thread per message): the AAD, the segments' values (an XOR tree of depth one: addition
    /// in GF(2^128)), the lengths block, E(J0), and the OR-of-XORs comparison; writes the status, decrypts nothing.
    /// </summary>
    public static void VerifyTags(Index1D index, ArrayView<byte> aad, ArrayView<GcmWorkItem> items, ArrayView<uint> roundKeys,
        ArrayView<uint> te, ArrayView<byte> sbox, ArrayView<ulong> partials, ArrayView<int> status, int rounds)
    {
        var item = items[index];
        var h = HashKey(item, roundKeys, rounds, te, sbox);
        U128 y;
        y.Hi = 0;
        y.Lo = 0;
        for (long o = 0; o < item.AadLength; o += 16)
            y = GfMul(Xor(y, Load(aad, item.AadOffset + o, (int)Math.Min(16L, item.AadLength - o))), h);
        var blocks = ((long)item.Length + 15) / 16;
        y = GfMul(y, Pow(h, blocks + 1));
        for (var j = 0; j < item.SegmentCount; j++)
        {
            var at = 2L * (item.SegmentFirst + j);
            y.Hi ^= partials[at];
            y.Lo ^= partials[at + 1];
        }
        U128 lengths;
        lengths.Hi = (ulong)item.AadLength * 8;
        lengths.Lo = (ulong)item.Length * 8;
        y = Xor(y, GfMul(lengths, h));
        var k = (long)item.KeyIndex * KeyStride;
        var ej0 = Encrypt(item.N0, item.N1, item.N2, item.J0Counter, roundKeys, k, rounds, te, sbox);
        var tagHi = y.Hi ^ (((ulong)ej0.A << 32) | ej0.B);
        var tagLo = y.Lo ^ (((ulong)ej0.C << 32) | ej0.D);
        var diff = (tagHi ^ (((ulong)item.T0 << 32) | item.T1)) | (tagLo ^ (((ulong)item.T2 << 32) | item.T3));
        status[index] = diff == 0 ? Authenticated : TagMismatch;
    }

    /// <summary>
    /// Step 3 (one thread per segment): CTR decryption in place of an authenticated message's segment (counter
    /// inc32(J0) + first block, 32-bit wrap); a segment of a message that failed (or was never verified) is zeroed.
    /// </summary>
    public static void CtrSegments(Index1D index, ArrayView<byte> data, ArrayView<GcmWorkItem> items, ArrayView<GcmSegment> segments,
        ArrayView<uint> roundKeys, ArrayView<uint> te, ArrayView<byte> sbox, ArrayView<int> status, int rounds)
    {
        var seg = segments[index];
        var item = items[seg.Item];
        var start = item.DataOffset + seg.FirstBlock * 16;
        var end = Math.Min(item.DataOffset + item.Length, start + (long)seg.Blocks * 16);
        if (status[seg.Item] != Authenticated)
        {
            for (var o = start; o < end; o++) data[o] = 0;
            return;
        }
        var k = (long)item.KeyIndex * KeyStride;
        var counter = unchecked(item.J0Counter + (uint)seg.FirstBlock); // inc32 applied FirstBlock times, then once per block
        for (var o = start; o < end; o += 16)
        {
            counter = unchecked(counter + 1);
            var ks = Encrypt(item.N0, item.N1, item.N2, counter, roundKeys, k, rounds, te, sbox);
            var n = (int)Math.Min(16L, end - o);
            for (var j = 0; j < n; j++) data[o + j] = (byte)(data[o + j] ^ KeystreamByte(ks, j));
        }
    }

    private static U128 HashKey(GcmWorkItem item, ArrayView<uint> roundKeys, int rounds, ArrayView<uint> te, ArrayView<byte> sbox)
    {
        var hb = Encrypt(0, 0, 0, 0, roundKeys, (long)item.KeyIndex * KeyStride, rounds, te, sbox);
        U128 h;
        h.Hi = ((ulong)hb.A << 32) | hb.B;
        h.Lo = ((ulong)hb.C << 32) | hb.D;
        return h;
    }

    /// <summary>H^e by square-and-multiply (e ≥ 0).</summary>
    private static U128 Pow(U128 h, long e)
    {
        U128 r;
        r.Hi = 0x8000000000000000UL; // the field's 1 in GCM's bit order
        r.Lo = 0;
        var b = h;
        while (e > 0)
        {
            if ((e & 1) != 0) r = GfMul(r, b);
            b = GfMul(b, b);
            e >>= 1;
        }
        return r;
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
