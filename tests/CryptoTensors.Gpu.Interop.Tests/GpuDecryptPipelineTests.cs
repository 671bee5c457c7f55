using System.Runtime.InteropServices;
using System.Text.Json;
using CryptoTensors.Gpu.Crypto;
using CryptoTensors.Gpu.Devices;
using CryptoTensors.Gpu.Devices.Staging;
using CryptoTensors.Gpu.Format;
using CryptoTensors.Gpu.ILGPU;
using CryptoTensors.Gpu.Keys;
using CryptoTensors.Gpu.Reading;
using CryptoTensors.Gpu.Tests;
using CryptoTensors.Gpu.Writing;
using ILGPU;
using ILGPU.Runtime;
using ILGPU.Runtime.CPU;

namespace CryptoTensors.Gpu.Interop.Tests;

/// <summary>
/// The GPU-decrypt pipeline (<see cref="DeviceLoadOptions.DecryptOn"/> = Gpu) through <see cref="IlgpuLoader"/> on the
/// CPU accelerator: the vector suite gives the CPU path's bytes or its errors, the ring never holds plaintext, and
/// tamper and cancellation leave the device buffer zeroed.
/// </summary>
[NonParallelizable]
public class GpuDecryptPipelineTests
{
    private Context _context = null!;
    private Accelerator _accelerator = null!;

    [OneTimeSetUp]
    public void Open()
    {
        _context = Context.Create(b => b.CPU());
        _accelerator = _context.CreateCPUAccelerator(0);
    }

    [OneTimeTearDown]
    public void Close()
    {
        _accelerator.Dispose();
        _context.Dispose();
    }

    public static IEnumerable<TestCaseData> Vectors()
    {
        using var index = JsonDocument.Parse(File.ReadAllText(Path.Combine(TestPaths.VectorsDir, "index.json")));
        foreach (var v in index.RootElement.GetProperty("vectors").EnumerateArray())
        {
            var name = v.GetProperty("name").GetString()!;
            yield return new TestCaseData(name).SetName("GpuDecrypt_" + name);
        }
    }

    private sealed record Outcome(Dictionary<string, byte[]>? Tensors, Exception? Error, IlgpuModelInfo? Info);

    private sealed record IlgpuModelInfo(DecryptSite? DecryptedOn, string? Note);

    private Outcome LoadAll(string dir, JsonElement expected, DecryptSite site)
    {
        string? Key(string which) => expected.TryGetProperty("keys", out var k) && k.ValueKind == JsonValueKind.Object && k.TryGetProperty(which, out var p)
            ? Path.GetFullPath(Path.Combine(dir, p.GetString()!)) : null;
        using var master = Key("enc") is { } ep ? Jwk.LoadMasterKey(ep) : null;
        var verify = Key("sign") is { } sp ? Jwk.LoadVerificationKey(sp) : null;
        CryptoTensorsReader reader;
        try
        {
            reader = CryptoTensorsReader.Open(Path.Combine(dir, expected.GetProperty("file").GetString()!),
                new ReaderOptions { MasterKey = master, VerificationKey = verify, Keys = new KeyRegistry() });
        }
        catch (CryptoTensorsException e)
        {
            return new Outcome(null, e, null);
        }
        using (reader)
        {
            try
            {
                using var model = IlgpuLoader.Load(_accelerator, reader, new DeviceLoadOptions { DecryptOn = site, SlotBytes = 4096, Slots = 3 });
                return new Outcome(model.Tensors.ToDictionary(t => t.Name, t => model[t.Name].GetAsArray1D()), null, new IlgpuModelInfo(model.DecryptedOn, model.DecryptionNote));
            }
            catch (CryptoTensorsException e)
            {
                return new Outcome(null, e, null);
            }
        }
    }

    [TestCaseSource(nameof(Vectors))]
    public void EveryVectorLoadsThroughTheGpuDecryptPipelineAsThroughTheCpuPath(string name)
    {
        var dir = Path.Combine(TestPaths.VectorsDir, name);
        using var doc = JsonDocument.Parse(File.ReadAllText(Path.Combine(dir, "expected.json")));
        var expected = doc.RootElement;
        var cpu = LoadAll(dir, expected, DecryptSite.Cpu);
        var gpu = LoadAll(dir, expected, DecryptSite.Gpu);
        if (cpu.Error is CryptoTensorsException ce)
        {
            Assert.That(gpu.Error, Is.Not.Null, "the CPU path refused it: " + ce.Message);
            var ge = (CryptoTensorsException)gpu.Error!;
            Assert.That((ge.GetType(), ge.Kind, ge.Code, ge.Tensor, ge.Chunk), Is.EqualTo((ce.GetType(), ce.Kind, ce.Code, ce.Tensor, ce.Chunk)), ge.Message);
            Assert.That(expected.GetProperty("expect").GetString(), Is.Not.EqualTo("ok"), "the vector is meant to load");
            return;
        }
        Assert.That(gpu.Error, Is.Null, () => gpu.Error!.ToString());
        Assert.That(gpu.Tensors!.Keys, Is.EquivalentTo(cpu.Tensors!.Keys));
        foreach (var (tensor, bytes) in cpu.Tensors!) Assert.That(gpu.Tensors[tensor], Is.EqualTo(bytes), tensor);
        var chacha = name.Contains("chacha", StringComparison.Ordinal);
        if (gpu.Info!.DecryptedOn is null) return; // nothing encrypted
        Assert.That(gpu.Info.DecryptedOn, Is.EqualTo(chacha ? DecryptSite.Cpu : DecryptSite.Gpu));
        if (chacha) Assert.That(gpu.Info.Note, Does.Contain("ChaCha20-Poly1305"));
    }

    private static (string Path, Dictionary<string, byte[]> Plain, MasterKey Master, SigningKey Signer) Model(TempDir tmp, int version, AeadAlgorithm alg = AeadAlgorithm.Aes256Gcm)
    {
        var master = MasterKey.Generate(alg);
        var signer = SigningKey.Generate();
        List<TensorSource> tensors =
        [
            TestModels.Tensor("a", Dtype.F32, [1000], 11),
            TestModels.Tensor("b", Dtype.U8, [5000], 12),
            TestModels.Tensor("c", Dtype.F16, [33, 65], 13),
            TestModels.Tensor("d", Dtype.U8, [31], 14),
        ];
        CryptoTensorsWriter.Write(tmp.File("m"), tensors, new WriterOptions { MasterKey = master, SigningKey = signer, FormatVersion = version, ChunkSize = 1024 });
        return (tmp.File("m"), TestModels.Plain(tensors), master, signer);
    }

    /// <summary>Wraps the ILGPU engine: sees every slot just before its copy.</summary>
    private sealed class SpyEngine(IDeviceCopyEngine inner, Action<ReadOnlySpan<byte>> onCopy) : IDeviceCopyEngine
    {
        private StagingRing? _ring;
        public int Copies;
        public string Name => inner.Name;
        public void Attach(StagingRing ring) { _ring = ring; inner.Attach(ring); }
        public void EnterWorker() => inner.EnterWorker();
        public unsafe void CopyAsync(int slot, long length, ulong destination)
        {
            onCopy(new ReadOnlySpan<byte>((void*)_ring!.SlotPointer(slot), (int)length));
            Interlocked.Increment(ref Copies);
            inner.CopyAsync(slot, length, destination);
        }
        public void WaitForSlot(int slot) => inner.WaitForSlot(slot);
        public void Synchronize() => inner.Synchronize();
        public void Clear(ulong destination, long length) => inner.Clear(destination, length);
        public void Detach() => inner.Detach();
    }

    private const int Window = 32;

    /// <summary>Every 32-byte window of the plaintexts (at every offset), to look for in the ring.</summary>
    private static HashSet<(ulong, ulong, ulong, ulong)> Windows(IEnumerable<byte[]> plains)
    {
        var set = new HashSet<(ulong, ulong, ulong, ulong)>();
        foreach (var p in plains)
            for (var i = 0; i + Window <= p.Length; i++) set.Add(Key(p.AsSpan(i, Window)));
        return set;
    }

    private static (ulong, ulong, ulong, ulong) Key(ReadOnlySpan<byte> w)
    {
        var u = MemoryMarshal.Cast<byte, ulong>(w);
        return (u[0], u[1], u[2], u[3]);
    }

    [Test]
    public void TheStagingRingNeverHoldsPlaintextWhenTheGpuDecrypts([Values(1, 2)] int version, [Values(DecryptSite.Cpu, DecryptSite.Gpu)] DecryptSite site)
    {
        using var tmp = new TempDir();
        var (path, plain, master, signer) = Model(tmp, version);
        using var _m = master;
        using var _s = signer;
        var windows = Windows(plain.Values);
        var found = 0;
        var scanned = 0L;
        using var reader = CryptoTensorsReader.Open(path, TestModels.Keys(master, signer));
        SpyEngine? spy = null;
        using var model = IlgpuLoader.Load(_accelerator, reader, new DeviceLoadOptions { DecryptOn = site, SlotBytes = 4096, Slots = 2, MaxDegreeOfParallelism = 2 },
            engine => spy = new SpyEngine(engine, slot =>
            {
                for (var i = 0; i + Window <= slot.Length; i++)
                    if (windows.Contains(Key(slot.Slice(i, Window)))) Interlocked.Increment(ref found);
                Interlocked.Add(ref scanned, slot.Length);
            }), default);
        foreach (var (name, bytes) in plain) Assert.That(model[name].GetAsArray1D(), Is.EqualTo(bytes), name);
        Assert.That(scanned, Is.EqualTo(plain.Values.Sum(p => (long)p.Length)), "every byte of the load went through the ring and was scanned");
        Assert.That(spy!.Copies, Is.GreaterThan(4));
        if (site == DecryptSite.Gpu) Assert.That(found, Is.Zero, "no 32-byte window of plaintext ever sat in a slot");
        else Assert.That(found, Is.GreaterThan(0), "control: with host decryption the slots do hold plaintext, so the scan sees it");
    }

    [Test]
    public void ACancelledGpuDecryptLoadLeavesTheBufferZeroedAndThrows()
    {
        using var tmp = new TempDir();
        var (path, _, master, signer) = Model(tmp, 2);
        using var _m = master;
        using var _s = signer;
        using var reader = CryptoTensorsReader.Open(path, TestModels.Keys(master, signer));
        using var cts = new CancellationTokenSource();
        byte[]? left = null;
        Assert.Catch<OperationCanceledException>(() => IlgpuLoader.Load(_accelerator, reader, new DeviceLoadOptions { DecryptOn = DecryptSite.Gpu, SlotBytes = 4096, Slots = 2 },
            engine => new SpyEngine(engine, _ => cts.Cancel()), cts.Token, buffer => left = buffer.GetAsArray1D()));
        Assert.That(left, Is.Not.Null);
        Assert.That(left!.All(b => b == 0), Is.True);
    }

    [Test]
    public void ATamperedTagOfAV1TensorFailsOnTheDeviceNamingIt()
    {
        using var tmp = new TempDir();
        var (path, _, master, signer) = Model(tmp, 1);
        using var _m = master;
        using var _s = signer;
        TestModels.MutateAndResign(path, signer, meta =>
        {
            var enc = System.Text.Json.Nodes.JsonNode.Parse(meta[ReservedFields.Encryption])!;
            var tag = Convert.FromBase64String(enc["c"]!["tag"]!.GetValue<string>());
            tag[3] ^= 1;
            enc["c"]!["tag"] = Convert.ToBase64String(tag);
            meta[ReservedFields.Encryption] = enc.ToJsonString();
        });
        using var reader = CryptoTensorsReader.Open(path, TestModels.Keys(master, signer));
        byte[]? left = null;
        var ex = Assert.Throws<DecryptionException>(() => IlgpuLoader.Load(_accelerator, reader, new DeviceLoadOptions { DecryptOn = DecryptSite.Gpu }, null, default,
            buffer => left = buffer.GetAsArray1D()));
        Assert.That((ex!.Tensor, ex.Chunk, ex.Code), Is.EqualTo(("c", (long?)null, ErrorCode.DecryptionFailed)));
        Assert.That(left!.All(b => b == 0), Is.True);
        var cpu = Assert.Throws<DecryptionException>(() => reader.ReadTensor("c"));
        Assert.That(ex.Message, Is.EqualTo(cpu!.Message), "the same error as the CPU path");
    }

    [Test]
    public void ABaseIvWhoseChunkCounterWouldOverflowIsRefusedAsOnTheCpuPath([Values(DecryptSite.Cpu, DecryptSite.Gpu)] DecryptSite site)
    {
        // Tensor "b" has 5 chunks of 1024 bytes: a base_iv counter of 0xFFFFFFFD reaches 0xFFFFFFFF at chunk 2 and would
        // need 2^32 at chunk 3. The chunk nonce is never wrapped (FORMAT §3.4): both paths refuse before any byte moves.
        using var tmp = new TempDir();
        var (path, _, master, signer) = Model(tmp, 2);
        using var _m = master;
        using var _s = signer;
        TestModels.MutateAndResign(path, signer, meta =>
        {
            var enc = System.Text.Json.Nodes.JsonNode.Parse(meta[ReservedFields.Encryption])!;
            var iv = Convert.FromBase64String(enc["b"]!["base_iv"]!.GetValue<string>());
            iv[8] = 0xFF; iv[9] = 0xFF; iv[10] = 0xFF; iv[11] = 0xFD;
            enc["b"]!["base_iv"] = Convert.ToBase64String(iv);
            meta[ReservedFields.Encryption] = enc.ToJsonString();
        });
        using var reader = CryptoTensorsReader.Open(path, TestModels.Keys(master, signer));
        var cpu = Assert.Catch<CryptoTensorsException>(() => reader.ReadTensor("b"));
        var ex = Assert.Catch<CryptoTensorsException>(() => IlgpuLoader.Load(_accelerator, reader, new DeviceLoadOptions { DecryptOn = site }));
        Assert.That((ex!.GetType(), ex.Code, ex.Tensor), Is.EqualTo((cpu!.GetType(), ErrorCode.IvCounterOverflow, "b")), ex.Message);
    }

    [Test]
    public void AFileTruncatedAfterOpenFailsTheSameWayOnBothPaths([Values(DecryptSite.Cpu, DecryptSite.Gpu)] DecryptSite site)
    {
        using var tmp = new TempDir();
        var (path, _, master, signer) = Model(tmp, 2);
        using var _m = master;
        using var _s = signer;
        using var reader = CryptoTensorsReader.Open(path, TestModels.Keys(master, signer));
        using (var f = new FileStream(path, FileMode.Open, FileAccess.ReadWrite)) f.SetLength(f.Length - 3000);
        byte[]? left = null;
        var ex = Assert.Catch<CryptoTensorsException>(() => IlgpuLoader.Load(_accelerator, reader, new DeviceLoadOptions { DecryptOn = site, ReadPath = Loading.ReadPath.PositionalRead }, null, default,
            buffer => left = buffer.GetAsArray1D()));
        Assert.That((ex!.GetType(), ex.Code, ex.Tensor), Is.EqualTo((typeof(MalformedFileException), ErrorCode.IncompleteBuffer, "b")), ex.Message);
        Assert.That(left!.All(b => b == 0), Is.True);
    }

    [Test]
    public void AChaChaFileFallsBackToTheCpuAndSaysSo()
    {
        using var tmp = new TempDir();
        var (path, plain, master, signer) = Model(tmp, 2, AeadAlgorithm.ChaCha20Poly1305);
        using var _m = master;
        using var _s = signer;
        using var reader = CryptoTensorsReader.Open(path, TestModels.Keys(master, signer));
        using var model = IlgpuLoader.Load(_accelerator, reader, new DeviceLoadOptions { DecryptOn = DecryptSite.Gpu });
        Assert.That(model.DecryptedOn, Is.EqualTo(DecryptSite.Cpu));
        Assert.That(model.DecryptionNote, Does.Contain("ChaCha20-Poly1305"));
        foreach (var (name, bytes) in plain) Assert.That(model[name].GetAsArray1D(), Is.EqualTo(bytes), name);
    }

    [Test]
    public void AutoDecryptsOnTheHostForTheCpuAcceleratorAndSaysWhy()
    {
        using var tmp = new TempDir();
        var (path, plain, master, signer) = Model(tmp, 2, AeadAlgorithm.Aes128Gcm);
        using var _m = master;
        using var _s = signer;
        using var reader = CryptoTensorsReader.Open(path, TestModels.Keys(master, signer));
        using var model = IlgpuLoader.Load(_accelerator, reader, new DeviceLoadOptions { DecryptOn = DecryptSite.Auto });
        Assert.That((model.DecryptedOn, model.DecryptionNote), Is.EqualTo(((DecryptSite?)DecryptSite.Cpu, "Auto: the host decrypts for a CPU accelerator")));
        foreach (var (name, bytes) in plain) Assert.That(model[name].GetAsArray1D(), Is.EqualTo(bytes), name);
    }

    [Test]
    public void LoadersWithoutDeviceDecryptionRefuseGpu()
    {
        using var tmp = new TempDir();
        var (path, _, master, signer) = Model(tmp, 2);
        using var _m = master;
        using var _s = signer;
        using var reader = CryptoTensorsReader.Open(path, TestModels.Keys(master, signer));
        using var buffer = _accelerator.Allocate1D<byte>(1 << 16);
        using var engine = new IlgpuCopyEngine(_accelerator, [buffer]);
        var ex = Assert.Throws<NotSupportedException>(() => DeviceLoader.LoadInto(reader, _ => 0, engine, new DeviceLoadOptions { DecryptOn = DecryptSite.Gpu }));
        Assert.That(ex!.Message, Does.Contain("IlgpuLoader"));
    }
}
