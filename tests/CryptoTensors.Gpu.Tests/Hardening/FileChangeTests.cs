using CryptoTensors.Gpu.Format;
using CryptoTensors.Gpu.Keys;
using CryptoTensors.Gpu.Loading;
using CryptoTensors.Gpu.Loading.Native;
using CryptoTensors.Gpu.Reading;
using CryptoTensors.Gpu.Writing;

namespace CryptoTensors.Gpu.Tests.Hardening;

/// <summary>
/// Files that change while being read (issue 18 item 3), beyond truncation (ModelLoaderTests.AFileTruncatedWhileLoading*):
/// replaced by a rename, overwritten in place, grown — during a whole-model load on both read paths, under the reader's
/// ReadTensor/ReadRange, and under the streaming reader. Each yields a typed error or the old, consistent content; never
/// changed bytes returned as good.
/// </summary>
[NonParallelizable]
public class FileChangeTests
{
    private enum Kind { Plain, V1, V2 }

    private sealed class Fixture : IDisposable
    {
        public TempDir Tmp { get; } = new();
        public MasterKey Master { get; } = MasterKey.Generate();
        public SigningKey Signer { get; } = SigningKey.Generate();
        public required Kind Kind { get; init; }
        public string File => Tmp.File("m");
        public Dictionary<string, byte[]> Want { get; private set; } = [];

        public void Write(string path, int seed)
        {
            var tensors = Enumerable.Range(0, 6).Select(i => TestModels.Tensor($"w{i}", Dtype.U8, [64 << 10], seed + i)).ToList();
            CryptoTensorsWriter.Write(path, tensors, Kind == Kind.Plain ? new WriterOptions()
                : new WriterOptions { MasterKey = Master, SigningKey = Signer, FormatVersion = Kind == Kind.V1 ? 1 : 2, ChunkSize = 16 << 10 });
            // Dated an hour back, as a file that has sat on disk: a later write then moves its modification time for sure.
            System.IO.File.SetLastWriteTimeUtc(path, DateTime.UtcNow.AddHours(-1));
            if (path == File) Want = TestModels.Plain(tensors);
        }

        public CryptoTensorsReader Open() => CryptoTensorsReader.Open(File, Kind == Kind.Plain ? new ReaderOptions { Keys = new() } : TestModels.Keys(Master, Signer));

        /// <summary>Another process's writer: the data section overwritten in place with other bytes (same length).</summary>
        public void OverwriteInPlace(long dataStart)
        {
            using var f = new FileStream(File, FileMode.Open, FileAccess.Write, FileShare.ReadWrite);
            f.Position = dataStart;
            f.Write(TestModels.Bytes((int)(f.Length - dataStart), 4242));
        }

        public void Append()
        {
            using var f = new FileStream(File, FileMode.Append, FileAccess.Write, FileShare.ReadWrite);
            f.Write(new byte[8192]);
        }

        /// <summary>Another file (other tensor bytes, same layout) renamed over the path.</summary>
        public void ReplaceByRename()
        {
            var other = Tmp.File("other");
            Write(other, 900);
            System.IO.File.Move(other, File, overwrite: true);
        }

        public void Dispose()
        {
            Master.Dispose();
            Signer.Dispose();
            Tmp.Dispose();
        }
    }

    public enum Change { ReplacedByRename, OverwrittenInPlace, Grown }

    private static IEnumerable<TestCaseData> LoadCases()
    {
        foreach (var path in new[] { ReadPath.MemoryMapped, ReadPath.PositionalRead })
        foreach (var kind in new[] { Kind.Plain, Kind.V1, Kind.V2 })
        foreach (var change in Enum.GetValues<Change>())
            yield return new TestCaseData(path, (int)kind, change).SetName($"ChangedWhileLoading_{path}_{kind}_{change}");
    }

    /// <summary>
    /// The change happens after the first work item of a one-worker load. A rename leaves the open file as it was: the
    /// old bytes load. An overwrite is caught by the tags (encrypted) or by the file's stamp (plain) and reported as
    /// <see cref="ErrorCode.FileChanged"/> with every destination zeroed. Growth leaves encrypted tensors authentic (they
    /// load); a plain load refuses it (nothing tells appended bytes from rewritten ones).
    /// </summary>
    [TestCaseSource(nameof(LoadCases))]
    public void ALoadOfAFileChangedUnderItIsTheOldContentOrATypedError(ReadPath path, int kindValue, Change change)
    {
        if (path == ReadPath.MemoryMapped && !PinnedHostBuffer.NativeShimAvailable) Assert.Ignore("native shim not loadable: " + PinnedHostBuffer.NativeShimLoadError);
        var kind = (Kind)kindValue;
        using var fx = new Fixture { Kind = kind };
        fx.Write(fx.File, 1);
        using var r = fx.Open();
        var buffers = r.Tensors.ToDictionary(t => t.Name, t => GC.AllocateArray<byte>((int)t.ByteLength, pinned: true));
        var changed = false;
        var progress = new OnFirstReport(() =>
        {
            switch (change)
            {
                case Change.ReplacedByRename: fx.ReplaceByRename(); break;
                case Change.OverwrittenInPlace: fx.OverwriteInPlace(r.Header.DataStart); break;
                case Change.Grown: fx.Append(); break;
            }
            changed = true;
        });
        void Load() => ModelLoader.LoadInto(r, t => Dest(buffers[t.Name]),
            new LoadOptions { ReadPath = path, MaxDegreeOfParallelism = 1, PlainBlockSize = 16 << 10, Progress = progress });

        var keepsOldContent = change == Change.ReplacedByRename || (change == Change.Grown && kind != Kind.Plain);
        if (keepsOldContent)
        {
            Load();
            Assert.That(changed, Is.True);
            foreach (var (name, bytes) in fx.Want) Assert.That(buffers[name], Is.EqualTo(bytes), name);
            return;
        }
        var ex = Assert.Throws<MalformedFileException>(Load);
        Assert.That(changed, Is.True);
        Assert.That(ex!.Code, Is.EqualTo(ErrorCode.FileChanged), ex.Message);
        Assert.That(ex.Tensor, Is.Not.Null);
        Assert.That(buffers.Values.SelectMany(b => b), Is.All.EqualTo(0), "a failed load returns nothing");
    }

    private static IEnumerable<TestCaseData> ReaderCases()
    {
        foreach (var kind in new[] { Kind.Plain, Kind.V1, Kind.V2 })
        foreach (var change in Enum.GetValues<Change>())
            yield return new TestCaseData((int)kind, change).SetName($"ChangedUnderTheReader_{kind}_{change}");
    }

    /// <summary>ReadTensor and ReadRange after the file changed under an open reader: same outcomes as the loads.</summary>
    [TestCaseSource(nameof(ReaderCases))]
    public void ReadTensorAndReadRangeOfAChangedFile(int kindValue, Change change)
    {
        var kind = (Kind)kindValue;
        using var fx = new Fixture { Kind = kind };
        fx.Write(fx.File, 1);
        using var r = fx.Open();
        switch (change)
        {
            case Change.ReplacedByRename: fx.ReplaceByRename(); break;
            case Change.OverwrittenInPlace: fx.OverwriteInPlace(r.Header.DataStart); break;
            case Change.Grown: fx.Append(); break;
        }
        var keepsOldContent = change == Change.ReplacedByRename || (change == Change.Grown && kind != Kind.Plain);
        var whole = new byte[fx.Want["w3"].Length];
        var range = new byte[5000];
        if (keepsOldContent)
        {
            r.ReadTensor("w3", whole);
            r.ReadRange("w3", 20_000, range);
            Assert.That(whole, Is.EqualTo(fx.Want["w3"]));
            Assert.That(range, Is.EqualTo(fx.Want["w3"].AsSpan(20_000, 5000).ToArray()));
            return;
        }
        var a = Assert.Throws<MalformedFileException>(() => r.ReadTensor("w3", whole));
        var b = Assert.Throws<MalformedFileException>(() => r.ReadRange("w3", 20_000, range));
        var c = Assert.ThrowsAsync<MalformedFileException>(async () => await r.ReadTensorAsync("w3", whole));
        foreach (var e in new[] { a!, b!, c! })
        {
            Assert.That(e.Code, Is.EqualTo(ErrorCode.FileChanged), e.Message);
            Assert.That(e.Tensor, Is.EqualTo("w3"));
        }
        Assert.That(whole, Is.All.Zero);
        Assert.That(range, Is.All.Zero);
    }

    /// <summary>A file cut under an open reader: IncompleteBuffer from ReadTensor and ReadRange (the loads: ModelLoaderTests).</summary>
    [TestCase(0)]
    [TestCase(2)]
    public void ReadTensorAndReadRangeOfATruncatedFile(int kindValue)
    {
        using var fx = new Fixture { Kind = (Kind)kindValue };
        fx.Write(fx.File, 1);
        using var r = fx.Open();
        using (var f = new FileStream(fx.File, FileMode.Open, FileAccess.Write, FileShare.ReadWrite)) f.SetLength(r.FileLength - 70_000);
        var whole = new byte[fx.Want["w5"].Length];
        Assert.That(Assert.Throws<MalformedFileException>(() => r.ReadTensor("w5", whole))!.Code, Is.EqualTo(ErrorCode.IncompleteBuffer));
        Assert.That(Assert.Throws<MalformedFileException>(() => r.ReadRange("w5", 0, whole.AsSpan(0, 10)))!.Code, Is.EqualTo(ErrorCode.IncompleteBuffer));
        if (fx.Kind == Kind.Plain)
            Assert.That(Assert.Throws<MalformedFileException>(() => r.ReadTensor("w0"))!.Code, Is.EqualTo(ErrorCode.IncompleteBuffer),
                "a plain tensor before the cut is refused too: nothing tells its bytes apart from rewritten ones");
        else Assert.That(r.ReadTensor("w0"), Is.EqualTo(fx.Want["w0"]), "an encrypted tensor before the cut still reads: its tags authenticate it");
    }

    /// <summary>
    /// The streaming reader over a file that changes as it is read: the stream has no identity to check, so truncation is
    /// IncompleteBuffer, an overwrite of encrypted tensors fails their tags (DecryptionException), and a rename over the
    /// path leaves the open file as it was. Plain tensors from a stream are not authenticated (docs/SECURITY.md).
    /// </summary>
    [TestCase(Change.ReplacedByRename)]
    [TestCase(Change.OverwrittenInPlace)]
    [TestCase(null)]
    public void TheStreamingReaderOfAChangingFile(Change? change)
    {
        using var fx = new Fixture { Kind = Kind.V2 };
        fx.Write(fx.File, 1);
        using var stream = new FileStream(fx.File, FileMode.Open, FileAccess.Read, FileShare.ReadWrite | FileShare.Delete, bufferSize: 1);
        long dataStart;
        using (var r = fx.Open()) dataStart = r.Header.DataStart;
        using var sr = CryptoTensorsStreamReader.OpenAsync(stream, "m", TestModels.Keys(fx.Master, fx.Signer)).GetAwaiter().GetResult();
        var got = fx.Want.ToDictionary(kv => kv.Key, kv => new byte[kv.Value.Length]);
        var first = true;
        Task Read() => sr.ReadAllAsync((t, offset, bytes) =>
        {
            bytes.Span.CopyTo(got[t.Name].AsSpan((int)offset));
            if (!first) return ValueTask.CompletedTask;
            first = false;
            switch (change)
            {
                case Change.ReplacedByRename: fx.ReplaceByRename(); break;
                case Change.OverwrittenInPlace: fx.OverwriteInPlace(dataStart); break;
                default:
                    using (var f = new FileStream(fx.File, FileMode.Open, FileAccess.Write, FileShare.ReadWrite)) f.SetLength(dataStart + 100_000);
                    break;
            }
            return ValueTask.CompletedTask;
        });
        switch (change)
        {
            case Change.ReplacedByRename:
                Read().GetAwaiter().GetResult();
                foreach (var (name, bytes) in fx.Want) Assert.That(got[name], Is.EqualTo(bytes), name);
                break;
            case Change.OverwrittenInPlace:
                Assert.ThrowsAsync<DecryptionException>(Read);
                break;
            default:
                Assert.That(Assert.ThrowsAsync<MalformedFileException>(Read)!.Code, Is.EqualTo(ErrorCode.IncompleteBuffer));
                break;
        }
    }

    private static unsafe TensorDestination Dest(byte[] pinned)
        => new((IntPtr)System.Runtime.CompilerServices.Unsafe.AsPointer(ref System.Runtime.InteropServices.MemoryMarshal.GetArrayDataReference(pinned)), pinned.Length);

    private sealed class OnFirstReport(Action action) : IProgress<TensorProgress>
    {
        private int _done;

        public void Report(TensorProgress value)
        {
            if (Interlocked.Exchange(ref _done, 1) == 0) action();
        }
    }
}
