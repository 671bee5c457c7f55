using CryptoTensors.Gpu.Crypto;
using CryptoTensors.Gpu.Devices;
using CryptoTensors.Gpu.Devices.Staging;
using CryptoTensors.Gpu.Format;
using CryptoTensors.Gpu.Keys;
using CryptoTensors.Gpu.Loading;
using CryptoTensors.Gpu.Loading.Native;
using CryptoTensors.Gpu.Reading;
using CryptoTensors.Gpu.Tests.Vectors;
using CryptoTensors.Gpu.Writing;

namespace CryptoTensors.Gpu.Tests.Devices;

/// <summary>The staging-ring scheduler of device loads, driven by <see cref="FakeCopyEngine"/> (same code path as CUDA; only the copy call differs).</summary>
public class DeviceLoaderTests
{
    private static Dictionary<string, ulong> Layout(CryptoTensorsReader r, out long size)
    {
        var layout = new Dictionary<string, ulong>(StringComparer.Ordinal);
        size = 0;
        foreach (var t in r.Tensors)
        {
            layout[t.Name] = FakeCopyEngine.BaseAddress + (ulong)size;
            size += (t.ByteLength + 255) / 256 * 256 + 256;
        }
        size = Math.Max(size, 1);
        return layout;
    }

    private static IEnumerable<TestCaseData> Vectors() => VectorSuiteTests.Vectors().Select(c => new TestCaseData(c.Arguments[0]).SetName($"Device_{c.Arguments[0]}"));

    [TestCaseSource(nameof(Vectors))]
    public void DeviceLoadAgreesWithTheVectors(string name)
    {
        var e = VectorSuiteTests.Load(name);
        if (e.Expect == "refuse" && e.Stage == "open") Assert.Pass("refused at open: covered by the reader tests");
        using var r = VectorSuiteTests.OpenWithVectorKeys(e, out var master);
        using var _ = master;
        var layout = Layout(r, out var size);
        using var engine = new FakeCopyEngine(size);
        engine.Memory.Fill(0xAA);
        if (e.Expect == "ok")
        {
            DeviceLoader.LoadInto(r, t => layout[t.Name], engine, new DeviceLoadOptions { Slots = 2, SlotBytes = 4096 });
            foreach (var t in r.Tensors) Assert.That(engine.At(layout[t.Name], t.ByteLength).ToArray(), Is.EqualTo(r.ReadTensor(t.Name)), t.Name);
        }
        else
        {
            var ex = Assert.Throws<DecryptionException>(() => DeviceLoader.LoadInto(r, t => layout[t.Name], engine, new DeviceLoadOptions { Slots = 2 }));
            Assert.That(ex!.Tensor, Is.AnyOf(e.Failing));
            foreach (var t in r.Tensors) Assert.That(engine.At(layout[t.Name], t.ByteLength).ToArray(), Is.All.EqualTo(0), $"{t.Name}: a refused load leaves nothing on the device");
        }
        Assert.That(engine.Violations, Is.Empty);
        Assert.That(engine.Attaches, Is.EqualTo(engine.Detaches).And.LessThanOrEqualTo(1), "every attach is matched by a detach");
        Assert.That(engine.Attached, Is.False);
    }

    /// <summary>An encrypted model of every kind of tensor (plain ones too), written to a temporary directory.</summary>
    private sealed class SampleModel : IDisposable
    {
        private readonly TempDir _dir = new();
        private readonly MasterKey _master = MasterKey.Generate(AeadAlgorithm.Aes256Gcm);
        private readonly SigningKey _signer = SigningKey.Generate();

        public SampleModel(int version, int chunk)
        {
            Path = _dir.File("m");
            Tensors = TestModels.EveryDtype();
            for (var i = 0; i < 150; i++) Tensors.Add(TestModels.Tensor($"lora.{i}", Dtype.F32, [4, (ulong)(i % 9)], i));
            Tensors.Add(TestModels.Tensor("big", Dtype.U8, [100_003], 5));
            Tensors.Add(TestModels.Tensor("plain.big", Dtype.U8, [50_001], 6));
            CryptoTensorsWriter.Write(Path, Tensors, new WriterOptions
            {
                MasterKey = _master, SigningKey = _signer, FormatVersion = version, ChunkSize = chunk,
                EncryptOnly = Tensors.Where((t, i) => i % 3 != 0 && t.Name != "plain.big").Select(t => t.Name).ToList(),
            });
        }

        public string Path { get; }
        public List<TensorSource> Tensors { get; }
        public CryptoTensorsReader Open() => CryptoTensorsReader.Open(Path, TestModels.Keys(_master, _signer));

        public void Dispose()
        {
            _master.Dispose();
            _signer.Dispose();
            _dir.Dispose();
        }
    }

    [TestCase(2, 4096, 2, 4096)]
    [TestCase(2, 1000, 3, 8192)]
    [TestCase(1, 4096, 2, 4096)]
    [TestCase(2, 4096, 1, 4096)]
    public void EveryKindOfTensorGoesThroughASmallRing(int version, int chunk, int slots, int slotBytes)
    {
        using var m = new SampleModel(version, chunk);
        using var r = m.Open();
        var layout = Layout(r, out var size);
        using var engine = new FakeCopyEngine(size, streams: 3);
        var progress = new List<TensorProgress>();
        var stats = DeviceLoader.LoadInto(r, t => layout[t.Name], engine, new DeviceLoadOptions
        {
            Slots = slots, SlotBytes = slotBytes, MaxDegreeOfParallelism = 4, Progress = new Sync(progress),
        });
        var want = TestModels.Plain(m.Tensors);
        foreach (var t in m.Tensors) Assert.That(engine.At(layout[t.Name], t.ByteLength).ToArray(), Is.EqualTo(want[t.Name]), t.Name);
        Assert.That(engine.Violations, Is.Empty);
        Assert.That(engine.MaxBusySlots, Is.LessThanOrEqualTo(slots));
        Assert.That(stats.RingBytes, Is.EqualTo(slots * (long)slotBytes), "the host memory of the load is the ring");
        Assert.That(stats.OversizeBytes, Is.EqualTo(version == 1 ? 100_003 : 0), "only v1 tensors larger than a slot need a buffer of their own");
        lock (progress) Assert.That(progress.Max(p => p.BytesDone), Is.EqualTo(m.Tensors.Sum(t => t.ByteLength)));
        lock (progress) Assert.That(progress.Max(p => p.TensorsDone), Is.EqualTo(m.Tensors.Count));
    }

    private sealed class Sync(List<TensorProgress> list) : IProgress<TensorProgress>
    {
        public void Report(TensorProgress value) { lock (list) list.Add(value); }
    }

    [Test]
    public void ARingIsReusedAcrossLoadsAndMustHoldAChunk()
    {
        using var m = new SampleModel(2, 4096);
        using var r = m.Open();
        var layout = Layout(r, out var size);
        using var ring = StagingRing.Allocate(3, 4096, cudaRegister: false);
        for (var i = 0; i < 2; i++)
        {
            using var engine = new FakeCopyEngine(size);
            var stats = DeviceLoader.LoadInto(r, t => layout[t.Name], engine, new DeviceLoadOptions { Ring = ring });
            Assert.That(stats.RingBytes, Is.EqualTo(ring.Length));
            var want = TestModels.Plain(m.Tensors);
            foreach (var t in m.Tensors) Assert.That(engine.At(layout[t.Name], t.ByteLength).ToArray(), Is.EqualTo(want[t.Name]), t.Name);
        }
        Assert.That(ring.Buffer.IsClosed, Is.False, "a caller's ring is not freed by the load");

        // One load at a time per ring: a second load while the first holds it is refused, and the first goes on.
        using (var first = new FakeCopyEngine(size))
        {
            InvalidOperationException? concurrent = null;
            first.OnAttach = () =>
            {
                using var second = new FakeCopyEngine(size);
                concurrent = Assert.Throws<InvalidOperationException>(() => DeviceLoader.LoadInto(r, t => layout[t.Name], second, new DeviceLoadOptions { Ring = ring }));
            };
            DeviceLoader.LoadInto(r, t => layout[t.Name], first, new DeviceLoadOptions { Ring = ring });
            Assert.That(concurrent?.Message, Does.Contain("in use by another load"));
            Assert.That(first.At(layout["big"], 100_003).ToArray(), Is.EqualTo(TestModels.Plain(m.Tensors)["big"]));
        }

        using var m2 = new SampleModel(2, 8192);
        using var r2 = m2.Open();
        using var engine2 = new FakeCopyEngine(Math.Max(1, r2.Tensors.Sum(t => t.ByteLength + 512)));
        Assert.Throws<ArgumentException>(() => DeviceLoader.LoadInto(r2, t => FakeCopyEngine.BaseAddress, engine2, new DeviceLoadOptions { Ring = ring }));
    }

    [TestCase(2)]
    [TestCase(1)]
    public void ATamperedChunkClearsEveryDestinationAndNamesTheTensor(int version)
    {
        using var m = new SampleModel(version, 4096);
        long bigOffset;
        using (var r0 = m.Open())
        {
            r0.Header.TryGetTensor("big", out var info);
            bigOffset = r0.Header.DataStart + (long)info.Begin;
        }
        using (var f = new FileStream(m.Path, FileMode.Open, FileAccess.ReadWrite))
        {
            f.Position = bigOffset + 9000;
            var b = f.ReadByte();
            f.Position = bigOffset + 9000;
            f.WriteByte((byte)(b ^ 1));
        }
        using var r = m.Open();
        var layout = Layout(r, out var size);
        using var engine = new FakeCopyEngine(size);
        engine.Memory.Fill(0xAA);
        var ex = Assert.Throws<DecryptionException>(() => DeviceLoader.LoadInto(r, t => layout[t.Name], engine, new DeviceLoadOptions { Slots = 2, SlotBytes = 4096 }));
        Assert.That((ex!.Code, ex.Tensor, ex.Chunk), Is.EqualTo((ErrorCode.DecryptionFailed, "big", version == 2 ? 2L : (long?)null)));
        foreach (var t in r.Tensors) Assert.That(engine.At(layout[t.Name], t.ByteLength).ToArray(), Is.All.EqualTo(0), t.Name);
        Assert.That(engine.Cleared.Count, Is.EqualTo(r.Tensors.Count(t => t.ByteLength > 0)));
        Assert.That(engine.Violations, Is.Empty);
        Assert.That(engine.Attached, Is.False);
    }

    [Test]
    public void AFileThatShrinksIsAnErrorAndCancellationClearsToo()
    {
        using var m = new SampleModel(2, 4096);
        using var r = m.Open();
        var layout = Layout(r, out var size);
        using (var engine = new FakeCopyEngine(size))
        {
            engine.Memory.Fill(0xAA);
            using var cts = new CancellationTokenSource();
            cts.Cancel();
            Assert.Catch<OperationCanceledException>(() => DeviceLoader.LoadInto(r, t => layout[t.Name], engine, cancellationToken: cts.Token));
            foreach (var t in r.Tensors) Assert.That(engine.At(layout[t.Name], t.ByteLength).ToArray(), Is.All.EqualTo(0), t.Name);
        }
        using (var f = new FileStream(m.Path, FileMode.Open, FileAccess.Write, FileShare.ReadWrite)) f.SetLength(r.Header.DataStart + 10);
        using (var engine = new FakeCopyEngine(size))
        {
            var ex = Assert.Throws<MalformedFileException>(() => DeviceLoader.LoadInto(r, t => layout[t.Name], engine));
            Assert.That(ex!.Code, Is.EqualTo(ErrorCode.IncompleteBuffer));
            Assert.That(engine.Violations, Is.Empty);
        }
    }

    [TestCase(ReadPath.MemoryMapped, 2, AeadBackend.IpsecMb)]
    [TestCase(ReadPath.MemoryMapped, 2, AeadBackend.Bcl)]
    [TestCase(ReadPath.MemoryMapped, 1, AeadBackend.IpsecMb)]
    [TestCase(ReadPath.PositionalRead, 2, AeadBackend.Bcl)]
    public void AFileTruncatedWhileLoadingThroughTheRingIsAnErrorNotACrash(ReadPath path, int version, AeadBackend backend)
    {
        if (path == ReadPath.MemoryMapped && !PinnedHostBuffer.NativeShimAvailable) Assert.Ignore("native shim not loadable: " + PinnedHostBuffer.NativeShimLoadError);
        if (backend == AeadBackend.IpsecMb && !AeadBackends.IpsecMbAvailable) Assert.Ignore("accelerated AES-GCM unavailable: " + AeadBackends.IpsecMbUnavailableReason);
        using var m = new SampleModel(version, 4096);
        var saved = AeadBackends.Default;
        try
        {
            AeadBackends.Default = backend;
            using var r = m.Open();
            var layout = Layout(r, out var size);
            using var engine = new FakeCopyEngine(size);
            engine.Memory.Fill(0xAA);
            var truncated = false;
            var progress = new Truncate(() =>
            {
                if (truncated) return;
                using (var f = new FileStream(m.Path, FileMode.Open, FileAccess.Write, FileShare.ReadWrite)) f.SetLength(r.Header.DataStart + 4096);
                truncated = true;
            });
            var ex = Assert.Throws<MalformedFileException>(() => DeviceLoader.LoadInto(r, t => layout[t.Name], engine,
                new DeviceLoadOptions { ReadPath = path, MaxDegreeOfParallelism = 1, Slots = 2, SlotBytes = 4096, Progress = progress }));
            Assert.That(truncated, Is.True);
            Assert.That(ex!.Code, Is.EqualTo(ErrorCode.IncompleteBuffer));
            foreach (var t in r.Tensors) Assert.That(engine.At(layout[t.Name], t.ByteLength).ToArray(), Is.All.EqualTo(0), t.Name);
            Assert.That(engine.Violations, Is.Empty);
        }
        finally
        {
            AeadBackends.Default = saved;
        }
    }

    private sealed class Truncate(Action action) : IProgress<TensorProgress>
    {
        public void Report(TensorProgress value) => action();
    }

    [Test]
    public void ASubsetLoadsOnlyWhatWasAsked()
    {
        using var m = new SampleModel(2, 4096);
        using var r = m.Open();
        var layout = Layout(r, out var size);
        using var engine = new FakeCopyEngine(size);
        engine.Memory.Fill(0xAA);
        DeviceLoader.LoadInto(r, t => layout[t.Name], engine, new DeviceLoadOptions { Tensors = ["big", "lora.7"] });
        var want = TestModels.Plain(m.Tensors);
        Assert.That(engine.At(layout["big"], 100_003).ToArray(), Is.EqualTo(want["big"]));
        Assert.That(engine.At(layout["lora.8"], r.GetTensor("lora.8").ByteLength).ToArray(), Is.All.EqualTo(0xAA));
        var notFound = Assert.Throws<MalformedFileException>(() => DeviceLoader.LoadInto(r, t => layout[t.Name], engine, new DeviceLoadOptions { Tensors = ["nope"] }));
        Assert.That((notFound!.Code, notFound.Tensor), Is.EqualTo((ErrorCode.TensorNotFound, "nope")));
    }

    [Test]
    public unsafe void ReadIntoHostMemoryDecryptsOneTensorInPlace()
    {
        using var m = new SampleModel(2, 4096);
        using var r = m.Open();
        var dest = GC.AllocateArray<byte>(100_003, pinned: true);
        fixed (byte* p = dest)
        {
            r.ReadInto("big", (IntPtr)p, dest.Length);
            Assert.That(dest, Is.EqualTo(TestModels.Plain(m.Tensors)["big"]));
            var ptr = (IntPtr)p;
            var ex = Assert.Catch<CryptoTensorsException>(() => r.ReadInto("big", ptr, dest.Length - 1));
            Assert.That(ex!.Code, Is.EqualTo(ErrorCode.DestinationSize));
        }
    }
}
