using CryptoTensors.Gpu.Crypto;
using CryptoTensors.Gpu.Format;
using CryptoTensors.Gpu.Keys;
using CryptoTensors.Gpu.Loading;
using CryptoTensors.Gpu.Loading.Native;
using CryptoTensors.Gpu.Reading;
using CryptoTensors.Gpu.Tests.Vectors;
using CryptoTensors.Gpu.Writing;

namespace CryptoTensors.Gpu.Tests.Loading;

public class ModelLoaderTests
{
    private static IEnumerable<TestCaseData> OkVectorsAndPaths()
    {
        foreach (var c in VectorSuiteTests.Vectors())
        {
            var name = (string)c.Arguments[0]!;
            foreach (var path in Enum.GetValues<ReadPath>()) yield return new TestCaseData(name, path).SetName($"Load_{name}_{path}");
        }
    }

    [TestCaseSource(nameof(OkVectorsAndPaths))]
    public void WholeModelLoadAgreesWithTheVectors(string name, ReadPath path)
    {
        var e = VectorSuiteTests.Load(name);
        if (e.Expect == "refuse" && e.Stage == "open") Assert.Pass("refused at open: covered by the reader tests");
        using var r = VectorSuiteTests.OpenWithVectorKeys(e, out var master);
        using var _ = master;
        if (e.Expect == "ok")
        {
            using var model = ModelLoader.Load(r, options: new LoadOptions { ReadPath = path });
            foreach (var t in r.Tensors) Assert.That(model.GetSpan(t.Name).ToArray(), Is.EqualTo(r.ReadTensor(t.Name)), t.Name);
            Assert.That(model.Tensors.Select(t => model.OffsetOf(t.Name) % 256), Is.All.Zero);
            return;
        }
        var buffers = r.Tensors.ToDictionary(t => t.Name, t => GC.AllocateArray<byte>((int)t.ByteLength, pinned: true));
        foreach (var b in buffers.Values) b.AsSpan().Fill(0xAA);
        var ex = Assert.Throws<DecryptionException>(() => ModelLoader.LoadInto(r, t => Dest(buffers[t.Name]), new LoadOptions { ReadPath = path }));
        Assert.That(ex!.Tensor, Is.AnyOf(e.Failing));
        Assert.That(buffers.Values.SelectMany(b => b), Is.All.EqualTo(0), "a refused load returns nothing");
    }

    private static unsafe TensorDestination Dest(byte[] pinned)
        => new((IntPtr)System.Runtime.CompilerServices.Unsafe.AsPointer(ref System.Runtime.InteropServices.MemoryMarshal.GetArrayDataReference(pinned)), pinned.Length);

    [TestCase(1, 64, ReadPath.PositionalRead)]
    [TestCase(2, 64, ReadPath.PositionalRead)]
    [TestCase(2, 7, ReadPath.MemoryMapped)]
    [TestCase(1, 0, ReadPath.MemoryMapped)]
    public void ManyTensorsOfEveryKindLoadInParallel(int version, int chunk, ReadPath path)
    {
        using var tmp = new TempDir();
        using var master = MasterKey.Generate(AeadAlgorithm.ChaCha20Poly1305);
        using var signer = SigningKey.Generate();
        var tensors = TestModels.EveryDtype();
        for (var i = 0; i < 200; i++) tensors.Add(TestModels.Tensor($"lora.{i}", Dtype.F32, [4, (ulong)(i % 9)], i));
        tensors.Add(TestModels.Tensor("big", Dtype.U8, [100_003], 5));
        CryptoTensorsWriter.Write(tmp.File("m"), tensors, new WriterOptions
        {
            MasterKey = master, SigningKey = signer, FormatVersion = version, ChunkSize = Math.Max(chunk, 1),
            EncryptOnly = tensors.Where((t, i) => i % 3 != 0).Select(t => t.Name).ToList(),
        });
        using var r = CryptoTensorsReader.Open(tmp.File("m"), TestModels.Keys(master, signer));
        var progress = new List<TensorProgress>();
        using var model = ModelLoader.Load(r, options: new LoadOptions { ReadPath = path, PlainBlockSize = 1000, Progress = new Sync(progress), MaxDegreeOfParallelism = 4 });
        var want = TestModels.Plain(tensors);
        foreach (var t in tensors) Assert.That(model.GetSpan(t.Name).ToArray(), Is.EqualTo(want[t.Name]), t.Name);
        lock (progress) Assert.That(progress.Max(p => p.BytesDone), Is.EqualTo(tensors.Sum(t => t.ByteLength)));
        lock (progress) Assert.That(progress.Max(p => p.TensorsDone), Is.EqualTo(tensors.Count));
    }

    private sealed class Sync(List<TensorProgress> list) : IProgress<TensorProgress>
    {
        public void Report(TensorProgress value) { lock (list) list.Add(value); }
    }

    [Test]
    public void ASubsetLoadsOnlyWhatWasAskedAndThePoolIsReused()
    {
        if (!PinnedHostBuffer.NativeShimAvailable) Assert.Ignore("native shim not loadable: " + PinnedHostBuffer.NativeShimLoadError);
        using var tmp = new TempDir();
        using var master = MasterKey.Generate();
        using var signer = SigningKey.Generate();
        var tensors = TestModels.EveryDtype();
        CryptoTensorsWriter.Write(tmp.File("m"), tensors, new WriterOptions { MasterKey = master, SigningKey = signer, ChunkSize = 16 });
        using var r = CryptoTensorsReader.Open(tmp.File("m"), TestModels.Keys(master, signer));
        using var pool = new PinnedMemoryPool(64 << 20);
        IntPtr first;
        using (var m = ModelLoader.Load(r, pool, new LoadOptions { Tensors = ["t.f32", "t.bf16"] }))
        {
            Assert.That(m.Tensors.Select(t => t.Name), Is.EquivalentTo(new[] { "t.f32", "t.bf16" }));
            Assert.Throws<MalformedFileException>(() => m.GetSpan("t.u8"));
            Assert.That(m.GetSpan("t.bf16").ToArray(), Is.EqualTo(TestModels.Plain(tensors)["t.bf16"]));
            first = m.Buffer.Pointer;
        }
        using (var m = ModelLoader.Load(r, pool, new LoadOptions { Tensors = ["t.f32", "t.bf16"] }))
            Assert.That(m.Buffer.Pointer, Is.EqualTo(first), "the released, touched buffer is reused");
        Assert.That(pool.GetStatistics().Hits, Is.GreaterThanOrEqualTo(1));
    }

    [Test]
    public void CancellationClearsEverythingAndThrows()
    {
        using var tmp = new TempDir();
        using var master = MasterKey.Generate();
        using var signer = SigningKey.Generate();
        CryptoTensorsWriter.Write(tmp.File("m"), [TestModels.Tensor("x", Dtype.U8, [10_000], 1)], new WriterOptions { MasterKey = master, SigningKey = signer, ChunkSize = 10 });
        using var r = CryptoTensorsReader.Open(tmp.File("m"), TestModels.Keys(master, signer));
        using var cts = new CancellationTokenSource();
        var buffer = GC.AllocateArray<byte>(10_000, pinned: true);
        var progress = new CancelAfter(cts, 50);
        Assert.That(() => ModelLoader.LoadInto(r, _ => Dest(buffer), new LoadOptions { Progress = progress }, cts.Token), Throws.InstanceOf<OperationCanceledException>());
        Assert.That(buffer, Is.All.EqualTo(0));
    }

    private sealed class CancelAfter(CancellationTokenSource cts, int n) : IProgress<TensorProgress>
    {
        private int _count;
        public void Report(TensorProgress value) { if (Interlocked.Increment(ref _count) == n) cts.Cancel(); }
    }

    [Test]
    public void WrongDestinationSizeIsRefusedBeforeAnyWork()
    {
        using var tmp = new TempDir();
        CryptoTensorsWriter.Write(tmp.File("m"), [TestModels.Tensor("x", Dtype.U8, [10], 1)], new WriterOptions());
        using var r = CryptoTensorsReader.Open(tmp.File("m"), new ReaderOptions { Keys = new() });
        var buffer = GC.AllocateArray<byte>(9, pinned: true);
        var ex = Assert.Throws<MalformedFileException>(() => ModelLoader.LoadInto(r, _ => Dest(buffer)));
        Assert.That(ex!.Code, Is.EqualTo(ErrorCode.DestinationSize));
    }

    private static IEnumerable<TestCaseData> TruncationCases()
    {
        foreach (var path in new[] { ReadPath.MemoryMapped, ReadPath.PositionalRead })
        foreach (var version in new[] { 0, 1, 2 })
        foreach (var backend in version == 0 ? new[] { AeadBackend.Bcl } : new[] { AeadBackend.Bcl, AeadBackend.IpsecMb })
            yield return new TestCaseData(path, version, backend).SetName($"TruncatedWhileLoading_{path}_{(version == 0 ? "plain" : "v" + version)}_{backend}");
    }

    /// <summary>
    /// Another process truncates the file in the middle of a load. Memory-mapped reads of the pages that are gone
    /// raise SIGBUS, which would kill the test host without the shim's guard; both read paths must instead fail with
    /// IncompleteBuffer and leave every destination zeroed.
    /// </summary>
    [TestCaseSource(nameof(TruncationCases))]
    public void AFileTruncatedWhileLoadingIsAnErrorNotACrash(ReadPath path, int version, AeadBackend backend)
    {
        if (path == ReadPath.MemoryMapped && !PinnedHostBuffer.NativeShimAvailable) Assert.Ignore("native shim not loadable: " + PinnedHostBuffer.NativeShimLoadError);
        if (backend == AeadBackend.IpsecMb && !AeadBackends.IpsecMbAvailable) Assert.Ignore("accelerated AES-GCM unavailable: " + AeadBackends.IpsecMbUnavailableReason);
        using var tmp = new TempDir();
        using var master = MasterKey.Generate();
        using var signer = SigningKey.Generate();
        var tensors = Enumerable.Range(0, 8).Select(i => TestModels.Tensor($"w{i}", Dtype.U8, [256 << 10], i)).ToList();
        var file = tmp.File("m");
        CryptoTensorsWriter.Write(file, tensors, version == 0 ? new WriterOptions()
            : new WriterOptions { MasterKey = master, SigningKey = signer, FormatVersion = version, ChunkSize = 64 << 10 });
        var saved = AeadBackends.Default;
        try
        {
            AeadBackends.Default = backend;
            using var r = CryptoTensorsReader.Open(file, version == 0 ? new ReaderOptions { Keys = new() } : TestModels.Keys(master, signer));
            var buffers = r.Tensors.ToDictionary(t => t.Name, t => GC.AllocateArray<byte>((int)t.ByteLength, pinned: true));
            var truncateAt = r.FileLength / 3;
            var progress = new TruncateOnFirstReport(file, truncateAt);
            var ex = Assert.Throws<MalformedFileException>(() => ModelLoader.LoadInto(r, t => Dest(buffers[t.Name]),
                new LoadOptions { ReadPath = path, MaxDegreeOfParallelism = 1, PlainBlockSize = 64 << 10, Progress = progress }));
            Assert.That(progress.Truncated, Is.True, "the file was truncated mid-load");
            Assert.That(ex!.Code, Is.EqualTo(ErrorCode.IncompleteBuffer));
            Assert.That(ex.Tensor, Is.Not.Null);
            Assert.That(buffers.Values.SelectMany(b => b), Is.All.EqualTo(0), "a failed load returns nothing");
        }
        finally
        {
            AeadBackends.Default = saved;
        }
    }

    /// <summary>
    /// A plain file cut inside the last page of what was read: the mapping yields zeros there, not a fault, and plain
    /// tensors have no tag to catch it; the load must still fail instead of returning the zeros.
    /// </summary>
    [TestCase(ReadPath.MemoryMapped)]
    [TestCase(ReadPath.PositionalRead)]
    public void APlainFileCutInsideAPageIsAnErrorNotZeros(ReadPath path)
    {
        if (path == ReadPath.MemoryMapped && !PinnedHostBuffer.NativeShimAvailable) Assert.Ignore("native shim not loadable: " + PinnedHostBuffer.NativeShimLoadError);
        using var tmp = new TempDir();
        var file = tmp.File("m");
        CryptoTensorsWriter.Write(file, [TestModels.Tensor("a", Dtype.U8, [1000], 1), TestModels.Tensor("b", Dtype.U8, [1000], 2)], new WriterOptions());
        using var r = CryptoTensorsReader.Open(file, new ReaderOptions { Keys = new() });
        var buffers = r.Tensors.ToDictionary(t => t.Name, t => GC.AllocateArray<byte>((int)t.ByteLength, pinned: true));
        var progress = new TruncateOnFirstReport(file, r.FileLength - 500);
        var ex = Assert.Throws<MalformedFileException>(() => ModelLoader.LoadInto(r, t => Dest(buffers[t.Name]),
            new LoadOptions { ReadPath = path, MaxDegreeOfParallelism = 1, Progress = progress }));
        Assert.That(ex!.Code, Is.EqualTo(ErrorCode.IncompleteBuffer));
        Assert.That(buffers.Values.SelectMany(b => b), Is.All.EqualTo(0));
    }

    [TestCase(ReadPath.MemoryMapped)]
    [TestCase(ReadPath.PositionalRead)]
    public void AFileTruncatedAfterOpenIsRefusedBeforeAnyWrite(ReadPath path)
    {
        if (path == ReadPath.MemoryMapped && !PinnedHostBuffer.NativeShimAvailable) Assert.Ignore("native shim not loadable: " + PinnedHostBuffer.NativeShimLoadError);
        using var tmp = new TempDir();
        using var master = MasterKey.Generate();
        using var signer = SigningKey.Generate();
        var file = tmp.File("m");
        CryptoTensorsWriter.Write(file, [TestModels.Tensor("x", Dtype.U8, [100_000], 1)], new WriterOptions { MasterKey = master, SigningKey = signer, ChunkSize = 4096 });
        using var r = CryptoTensorsReader.Open(file, TestModels.Keys(master, signer));
        using (var f = new FileStream(file, FileMode.Open, FileAccess.Write, FileShare.ReadWrite)) f.SetLength(r.FileLength - 1);
        var buffer = GC.AllocateArray<byte>(100_000, pinned: true);
        buffer.AsSpan().Fill(0xAA);
        var ex = Assert.Throws<MalformedFileException>(() => ModelLoader.LoadInto(r, _ => Dest(buffer), new LoadOptions { ReadPath = path }));
        Assert.That(ex!.Code, Is.EqualTo(ErrorCode.IncompleteBuffer));
        Assert.That(buffer, Is.All.EqualTo(0));
    }

    [Test]
    public void AutoMeansMemoryMappedWhereTheShimLoads()
    {
        Assert.That(new LoadOptions().ReadPath, Is.EqualTo(ReadPath.Auto));
        Assert.That(ReadPaths.Resolve(ReadPath.Auto), Is.EqualTo(PinnedHostBuffer.NativeShimAvailable ? ReadPath.MemoryMapped : ReadPath.PositionalRead));
        Assert.That(ReadPaths.Resolve(ReadPath.PositionalRead), Is.EqualTo(ReadPath.PositionalRead));
        Assert.Throws<ArgumentOutOfRangeException>(() => ReadPaths.Resolve((ReadPath)42));
    }

    private sealed class TruncateOnFirstReport(string file, long length) : IProgress<TensorProgress>
    {
        public bool Truncated { get; private set; }

        public void Report(TensorProgress value)
        {
            if (Truncated) return;
            using (var f = new FileStream(file, FileMode.Open, FileAccess.Write, FileShare.ReadWrite)) f.SetLength(length);
            Truncated = true;
        }
    }
}
