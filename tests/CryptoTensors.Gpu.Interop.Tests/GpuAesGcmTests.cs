using System.Buffers.Binary;
using System.Security.Cryptography;
using System.Text.Json;
using CryptoTensors.Gpu.ILGPU;
using CryptoTensors.Gpu.Tests;
using ILGPU;
using ILGPU.Runtime;
using ILGPU.Runtime.CPU;

namespace CryptoTensors.Gpu.Interop.Tests;

/// <summary>
/// The device AES-GCM kernels on ILGPU's CPU accelerator (the very kernels a CUDA accelerator runs): every Wycheproof
/// AES-GCM vector with the format's parameters (12-byte IV, 16-byte tag), random messages against the BCL's AesGcm,
/// tamper detection within a shared launch, and GCM's inc32 counter wrap against a host reference. Each fixture cuts
/// messages into segments of another size (1 and 3 blocks: every message of more than one block is hashed and
/// decrypted by several threads whose parts the reduction must put together; 256: the loader's default).
/// </summary>
[NonParallelizable]
[TestFixture(1)]
[TestFixture(3)]
[TestFixture(GpuAesGcm.DefaultSegmentBlocks)]
public class GpuAesGcmTests(int segmentBlocks)
{
    private Context _context = null!;
    private Accelerator _accelerator = null!;
    private GpuAesGcm _gcm = null!;

    [OneTimeSetUp]
    public void Open()
    {
        _context = Context.Create(b => b.CPU());
        _accelerator = _context.CreateCPUAccelerator(0);
        _gcm = new GpuAesGcm(_accelerator, segmentBlocks);
    }

    [OneTimeTearDown]
    public void Close()
    {
        _gcm.Dispose();
        _accelerator.Dispose();
        _context.Dispose();
    }

    private sealed record Case(int TcId, byte[] Key, byte[] Iv, byte[] Aad, byte[] Msg, byte[] Ct, byte[] Tag, bool Valid);

    private static List<Case> WycheproofAesGcm(out int declared)
    {
        using var doc = JsonDocument.Parse(File.ReadAllText(Path.Combine(TestPaths.VectorsDir, "wycheproof", "aes_gcm_test.json")));
        declared = doc.RootElement.GetProperty("numberOfTests").GetInt32();
        var cases = new List<Case>();
        foreach (var g in doc.RootElement.GetProperty("testGroups").EnumerateArray())
        {
            foreach (var t in g.GetProperty("tests").EnumerateArray())
            {
                byte[] H(string n) => Convert.FromHexString(t.GetProperty(n).GetString()!);
                var (key, iv, tag) = (H("key"), H("iv"), H("tag"));
                if (key.Length is not (16 or 32) || iv.Length != 12 || tag.Length != 16) continue;
                cases.Add(new Case(t.GetProperty("tcId").GetInt32(), key, iv, H("aad"), H("msg"), H("ct"), tag, t.GetProperty("result").GetString() != "invalid"));
            }
        }
        return cases;
    }

    /// <summary>Messages laid out one after another (with a gap, so an overrun shows), decrypted in one launch per key size.</summary>
    private (byte[] Data, int[] Status) Run(IReadOnlyList<(byte[] Key, byte[] Iv, byte[] Aad, byte[] Ct, byte[] Tag)> messages, long[] offsets, Func<int, GcmWorkItem, GcmWorkItem>? edit = null)
    {
        var keySize = messages[0].Key.Length;
        long size = 0;
        long aadSize = 0;
        for (var i = 0; i < messages.Count; i++)
        {
            offsets[i] = size;
            size += messages[i].Ct.Length + 7;
            aadSize += messages[i].Aad.Length;
        }
        var data = new byte[Math.Max(size, 1)];
        Array.Fill(data, (byte)0xA5);
        var aad = new byte[Math.Max(aadSize, 1)];
        var keys = new byte[messages.Count * keySize];
        var items = new GcmWorkItem[messages.Count];
        long aadAt = 0;
        for (var i = 0; i < messages.Count; i++)
        {
            var m = messages[i];
            m.Ct.CopyTo(data, offsets[i]);
            m.Aad.CopyTo(aad, aadAt);
            m.Key.CopyTo(keys, i * keySize);
            items[i] = GpuAesGcm.Item(offsets[i], m.Ct.Length, i, m.Iv, m.Tag, aadAt, m.Aad.Length);
            if (edit is not null) items[i] = edit(i, items[i]);
            aadAt += m.Aad.Length;
        }
        using var d = _accelerator.Allocate1D(data);
        using var a = _accelerator.Allocate1D(aad);
        var status = _gcm.Decrypt(d.View, items, keys, keySize, aadSize > 0 ? a.View : default);
        return (d.GetAsArray1D(), status);
    }

    [Test]
    public void EveryWycheproofVectorWithTheFormatsParametersDecryptsOrFailsItsTag()
    {
        var cases = WycheproofAesGcm(out var declared);
        Assert.That(cases, Has.Count.GreaterThan(100), $"of {declared} declared");
        Assert.That(cases.Count(c => !c.Valid), Is.GreaterThan(20), "the vectors include invalid ones");
        Assert.That(cases.Count(c => c.Msg.Length == 0), Is.GreaterThan(0), "and empty messages");
        var checkedCases = 0;
        foreach (var group in cases.GroupBy(c => c.Key.Length))
        {
            var list = group.ToList();
            var offsets = new long[list.Count];
            var (data, status) = Run(list.Select(c => (c.Key, c.Iv, c.Aad, c.Ct, c.Tag)).ToList(), offsets);
            Assert.Multiple(() =>
            {
                for (var i = 0; i < list.Count; i++)
                {
                    var c = list[i];
                    var got = data.AsSpan((int)offsets[i], c.Ct.Length).ToArray();
                    if (c.Valid)
                    {
                        Assert.That(status[i], Is.EqualTo(GcmKernels.Authenticated), $"tc{c.TcId} valid");
                        Assert.That(got, Is.EqualTo(c.Msg), $"tc{c.TcId} plaintext");
                    }
                    else
                    {
                        Assert.That(status[i], Is.EqualTo(GcmKernels.TagMismatch), $"tc{c.TcId} invalid");
                        Assert.That(got.All(b => b == 0), Is.True, $"tc{c.TcId} zeroed");
                    }
                    Assert.That(data.AsSpan((int)offsets[i] + c.Ct.Length, 7).ToArray().All(b => b == 0xA5), Is.True, $"tc{c.TcId} no overrun");
                    checkedCases++;
                }
            });
        }
        Assert.That(checkedCases, Is.EqualTo(cases.Count));
        TestContext.Out.WriteLine($"{cases.Count} of {declared} Wycheproof AES-GCM vectors fit the format ({cases.Count(c => c.Valid)} valid, {cases.Count(c => !c.Valid)} invalid); all pass on the device kernel");
    }

    private static readonly int[] Lengths = [0, 1, 2, 15, 16, 17, 31, 32, 33, 47, 48, 63, 64, 65, 127, 128, 129, 255, 256, 257, 1000, 1023, 1024, 1025, 4095, 4096, 4097, 6000, 8191];

    [Test]
    public void RandomMessagesOfManyLengthsMatchTheBclAndATamperedOneFailsAlone([Values(16, 32)] int keySize)
    {
        var rng = new Random(keySize);
        var messages = new List<(byte[] Key, byte[] Iv, byte[] Aad, byte[] Ct, byte[] Tag)>();
        var plains = new List<byte[]>();
        foreach (var len in Lengths)
        {
            var key = RandomNumberGenerator.GetBytes(keySize);
            var iv = RandomNumberGenerator.GetBytes(12);
            var plain = new byte[len];
            rng.NextBytes(plain);
            var ct = new byte[len];
            var tag = new byte[16];
            using (var aes = new AesGcm(key, 16)) aes.Encrypt(iv, plain, ct, tag);
            messages.Add((key, iv, [], ct, tag));
            plains.Add(plain);
        }
        var offsets = new long[messages.Count];
        var (data, status) = Run(messages, offsets);
        for (var i = 0; i < messages.Count; i++)
        {
            Assert.That(status[i], Is.EqualTo(GcmKernels.Authenticated), $"length {Lengths[i]}");
            Assert.That(data.AsSpan((int)offsets[i], Lengths[i]).ToArray(), Is.EqualTo(plains[i]), $"length {Lengths[i]}");
        }

        // One flipped ciphertext bit (or tag bit for the empty message) per run: only that message fails, and is zeroed.
        foreach (var victim in new[] { 0, 3, 5, 20, Lengths.Length - 1 })
        {
            var tampered = messages.Select(m => (m.Key, m.Iv, m.Aad, (byte[])m.Ct.Clone(), (byte[])m.Tag.Clone())).ToList();
            if (Lengths[victim] == 0) tampered[victim].Item5[15] ^= 1;
            else tampered[victim].Item4[Lengths[victim] / 2] ^= 0x10;
            (data, status) = Run(tampered, offsets);
            for (var i = 0; i < messages.Count; i++)
            {
                var got = data.AsSpan((int)offsets[i], Lengths[i]).ToArray();
                if (i == victim)
                {
                    Assert.That(status[i], Is.EqualTo(GcmKernels.TagMismatch), $"tampered length {Lengths[i]}");
                    Assert.That(got.All(b => b == 0), Is.True, "a failed message is zeroed, never left as unauthenticated plaintext");
                }
                else
                {
                    Assert.That(status[i], Is.EqualTo(GcmKernels.Authenticated), $"untouched length {Lengths[i]}");
                    Assert.That(got, Is.EqualTo(plains[i]));
                }
            }
        }
    }

    [Test]
    public void ANonceOfAllOnesDecryptsAsTheBclDoes()
    {
        // The IV's own last word at 0xFFFFFFFF: GCM's counter is J0's separate fourth word, so nothing carries into the IV.
        var key = RandomNumberGenerator.GetBytes(32);
        var iv = Enumerable.Repeat((byte)0xFF, 12).ToArray();
        var plain = RandomNumberGenerator.GetBytes(100);
        var ct = new byte[100];
        var tag = new byte[16];
        using (var aes = new AesGcm(key, 16)) aes.Encrypt(iv, plain, ct, tag);
        var offsets = new long[1];
        var (data, status) = Run([(key, iv, [], ct, tag)], offsets);
        Assert.That(status[0], Is.EqualTo(GcmKernels.Authenticated));
        Assert.That(data.AsSpan(0, 100).ToArray(), Is.EqualTo(plain));
    }

    [Test]
    public void TheCounterWrapsModulo2To32AsInc32Says([Values(16, 32)] int keySize)
    {
        // J0's counter word just below 2^32: the data counters are FFFFFFFF, 00000000, 00000001, ... and the nonce words
        // stay as they are (inc32 never carries into them). A 12-byte IV always has J0 counter 1, so this only arises in
        // a message of 2^32 blocks; the work item's J0Counter lets the test reach the wrap with 5 blocks.
        var key = RandomNumberGenerator.GetBytes(keySize);
        var iv = Convert.FromHexString("0011223344556677FFFFFFFF");
        const uint j0 = 0xFFFFFFFE;
        var plain = RandomNumberGenerator.GetBytes(75);
        using var aes = Aes.Create();
        aes.Key = key;
        byte[] E(uint counter)
        {
            var block = new byte[16];
            iv.CopyTo(block, 0);
            BinaryPrimitives.WriteUInt32BigEndian(block.AsSpan(12), counter);
            return aes.EncryptEcb(block, PaddingMode.None);
        }
        var ct = new byte[plain.Length];
        for (var i = 0; i < plain.Length; i++) ct[i] = (byte)(plain[i] ^ E(unchecked(j0 + 1 + (uint)(i / 16)))[i % 16]);
        var h = aes.EncryptEcb(new byte[16], PaddingMode.None);
        var tag = Ghash(h, ct);
        var ej0 = E(j0);
        for (var i = 0; i < 16; i++) tag[i] ^= ej0[i];

        var offsets = new long[1];
        var (data, status) = Run([(key, iv, [], ct, tag)], offsets, (_, item) => { item.J0Counter = j0; return item; });
        Assert.That(status[0], Is.EqualTo(GcmKernels.Authenticated));
        Assert.That(data.AsSpan(0, plain.Length).ToArray(), Is.EqualTo(plain));

        // The test tells a wrap from a carry: with a 64-bit increment (the counter carrying into the IV's last word) the
        // blocks after the wrap would have another keystream, so the same ciphertext would not give the plaintext.
        var carriedIv = (byte[])iv.Clone();
        BinaryPrimitives.WriteUInt32BigEndian(carriedIv.AsSpan(8), 0);
        var carriedBlock = new byte[16];
        carriedIv.CopyTo(carriedBlock, 0);
        Assert.That(aes.EncryptEcb(carriedBlock, PaddingMode.None), Is.Not.EqualTo(E(0)));
    }

    /// <summary>Host reference GHASH (SP 800-38D) over <paramref name="c"/> with empty associated data.</summary>
    private static byte[] Ghash(byte[] h, byte[] c)
    {
        var hHi = BinaryPrimitives.ReadUInt64BigEndian(h);
        var hLo = BinaryPrimitives.ReadUInt64BigEndian(h.AsSpan(8));
        ulong yHi = 0, yLo = 0;
        void Mul()
        {
            ulong zHi = 0, zLo = 0, vHi = hHi, vLo = hLo;
            for (var i = 0; i < 128; i++)
            {
                var bit = i < 64 ? (yHi >> (63 - i)) & 1 : (yLo >> (127 - i)) & 1;
                if (bit == 1) { zHi ^= vHi; zLo ^= vLo; }
                var lsb = vLo & 1;
                vLo = (vLo >> 1) | (vHi << 63);
                vHi >>= 1;
                if (lsb == 1) vHi ^= 0xE100000000000000UL;
            }
            (yHi, yLo) = (zHi, zLo);
        }
        for (var o = 0; o < c.Length; o += 16)
        {
            var block = new byte[16];
            c.AsSpan(o, Math.Min(16, c.Length - o)).CopyTo(block);
            yHi ^= BinaryPrimitives.ReadUInt64BigEndian(block);
            yLo ^= BinaryPrimitives.ReadUInt64BigEndian(block.AsSpan(8));
            Mul();
        }
        yLo ^= (ulong)c.Length * 8;
        Mul();
        var tag = new byte[16];
        BinaryPrimitives.WriteUInt64BigEndian(tag, yHi);
        BinaryPrimitives.WriteUInt64BigEndian(tag.AsSpan(8), yLo);
        return tag;
    }

    [Test]
    public void TheKeyScheduleMatchesTheBclsAes([Values(16, 32)] int keySize)
    {
        // The first and last round keys of FIPS-197's appendix A examples (A.1: AES-128, A.3: AES-256).
        var key = keySize == 16 ? Convert.FromHexString("2b7e151628aed2a6abf7158809cf4f3c")
            : Convert.FromHexString("603deb1015ca71be2b73aef0857d77811f352c073b6108d72d9810a30914dff4");
        var words = new uint[GcmKernels.KeyStride];
        AesTables.Expand(key, words);
        var last = keySize == 16 ? new uint[] { 0xd014f9a8, 0xc9ee2589, 0xe13f0cc8, 0xb6630ca6 } : [0xfe4890d1, 0xe6188d0b, 0x046df344, 0x706c631e];
        var at = 4 * AesTables.Rounds(keySize);
        Assert.That(words.AsSpan(at, 4).ToArray(), Is.EqualTo(last));
    }
}
