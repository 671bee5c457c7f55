using CryptoTensors.Gpu.Format;
using CryptoTensors.Gpu.Keys;
using CryptoTensors.Gpu.Reading;
using CryptoTensors.Gpu.Writing;

namespace CryptoTensors.Gpu.Tests.Reading;

public class SliceTests
{
    private static (TempDir Tmp, MasterKey M, SigningKey S, byte[] Plain) Make(int version, long chunk = 10, int length = 95)
    {
        var tmp = new TempDir();
        var m = MasterKey.Generate();
        var s = SigningKey.Generate();
        var plain = TestModels.Bytes(length, 42);
        CryptoTensorsWriter.Write(tmp.File("m"), [TensorSource.FromMemory("w", Dtype.U8, [(ulong)length], plain), TestModels.Tensor("p", Dtype.U8, [30], 3)],
            new WriterOptions { MasterKey = m, SigningKey = s, FormatVersion = version, ChunkSize = chunk, EncryptOnly = ["w"] });
        return (tmp, m, s, plain);
    }

    [TestCase(1, 0, 95)]
    [TestCase(2, 0, 95)]
    [TestCase(2, 0, 0)]
    [TestCase(2, 3, 4)]
    [TestCase(2, 10, 10)]
    [TestCase(2, 9, 12)]
    [TestCase(2, 19, 61)]
    [TestCase(2, 90, 5)]
    [TestCase(1, 33, 20)]
    public void RangesMatchTheWholeTensor(int version, int offset, int length)
    {
        var (tmp, m, s, plain) = Make(version);
        using (tmp) using (m) using (s)
        {
            using var r = CryptoTensorsReader.Open(tmp.File("m"), TestModels.Keys(m, s));
            var dest = new byte[length];
            r.ReadRange("w", offset, dest);
            Assert.That(dest, Is.EqualTo(plain.AsSpan(offset, length).ToArray()));
        }
    }

    [Test]
    public void SliceConcatenatesRangesAndPlainTensorsWorkToo()
    {
        var (tmp, m, s, plain) = Make(2);
        using (tmp) using (m) using (s)
        {
            using var r = CryptoTensorsReader.Open(tmp.File("m"), TestModels.Keys(m, s));
            var dest = new byte[15];
            r.ReadSlice("w", [(5, 5), (50, 10)], dest);
            Assert.That(dest, Is.EqualTo(plain[5..10].Concat(plain[50..60]).ToArray()));
            var p = new byte[4];
            r.ReadRange("p", 26, p);
            Assert.That(p, Is.EqualTo(r.ReadTensor("p")[26..]));
            Assert.Throws<MalformedFileException>(() => r.ReadRange("w", 90, new byte[6]));
            Assert.Throws<MalformedFileException>(() => r.ReadSlice("w", [(0, 3)], new byte[4]));
        }
    }

    [Test]
    public void OnlyCoveringChunksAreAuthenticated()
    {
        var (tmp, m, s, plain) = Make(2);
        using (tmp) using (m) using (s)
        {
            long dataStart;
            using (var r0 = CryptoTensorsReader.Open(tmp.File("m"), TestModels.Keys(m, s))) dataStart = r0.Header.DataStart + (long)r0.Header.Tensors.First(t => t.Name == "w").Begin;
            var bytes = File.ReadAllBytes(tmp.File("m"));
            bytes[dataStart + 75] ^= 1; // chunk 7
            File.WriteAllBytes(tmp.File("m"), bytes);
            using var r = CryptoTensorsReader.Open(tmp.File("m"), TestModels.Keys(m, s));
            var ok = new byte[30];
            r.ReadRange("w", 20, ok);
            Assert.That(ok, Is.EqualTo(plain[20..50]));
            var bad = new byte[10];
            bad.AsSpan().Fill(0xAA);
            var ex = Assert.Throws<DecryptionException>(() => r.ReadRange("w", 68, bad));
            Assert.That(ex!.Chunk, Is.EqualTo(7));
            Assert.That(bad, Is.All.EqualTo(0));
        }
    }
}
