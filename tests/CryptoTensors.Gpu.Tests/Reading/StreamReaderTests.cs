using System.Security.Cryptography;
using System.Text.Json;
using CryptoTensors.Gpu.Format;
using CryptoTensors.Gpu.Keys;
using CryptoTensors.Gpu.Reading;
using CryptoTensors.Gpu.Tests.Vectors;
using CryptoTensors.Gpu.Writing;

namespace CryptoTensors.Gpu.Tests.Reading;

public class StreamReaderTests
{
    /// <summary>A stream that cannot seek and returns few bytes per read, like a network body.</summary>
    internal sealed class TrickleStream(byte[] data, int maxRead = 7) : Stream
    {
        private int _pos;
        public override bool CanRead => true;
        public override bool CanSeek => false;
        public override bool CanWrite => false;
        public override long Length => throw new NotSupportedException();
        public override long Position { get => throw new NotSupportedException(); set => throw new NotSupportedException(); }
        public override int Read(byte[] buffer, int offset, int count)
        {
            var n = Math.Min(Math.Min(count, maxRead), data.Length - _pos);
            Array.Copy(data, _pos, buffer, offset, n);
            _pos += n;
            return n;
        }
        public override void Flush() { }
        public override long Seek(long offset, SeekOrigin origin) => throw new NotSupportedException();
        public override void SetLength(long value) => throw new NotSupportedException();
        public override void Write(byte[] buffer, int offset, int count) => throw new NotSupportedException();
    }

    internal static async Task<Dictionary<string, string>> HashAll(CryptoTensorsStreamReader r)
    {
        var hashes = new Dictionary<string, IncrementalHash>();
        await r.ReadAllAsync((t, offset, data) =>
        {
            if (!hashes.TryGetValue(t.Name, out var h)) hashes[t.Name] = h = IncrementalHash.CreateHash(HashAlgorithmName.SHA256);
            h.AppendData(data.Span);
            return ValueTask.CompletedTask;
        });
        var empty = Convert.ToHexStringLower(SHA256.HashData([]));
        return r.Tensors.ToDictionary(t => t.Name, t => hashes.TryGetValue(t.Name, out var h) ? Convert.ToHexStringLower(h.GetHashAndReset()) : empty);
    }

    [TestCaseSource(typeof(VectorSuiteTests), nameof(VectorSuiteTests.Vectors))]
    public async Task StreamingAgreesWithEveryVector(string name)
    {
        var e = VectorSuiteTests.Load(name);
        using var master = e.KeyPath("enc") is { } ep ? Jwk.LoadMasterKey(ep) : null;
        var options = new ReaderOptions { MasterKey = master, VerificationKey = e.KeyPath("sign") is { } sp ? Jwk.LoadVerificationKey(sp) : null, Keys = new() };
        var stream = new TrickleStream(File.ReadAllBytes(e.File), 977);
        if (e.Expect == "ok")
        {
            using var r = await CryptoTensorsStreamReader.OpenAsync(stream, "model.safetensors", options);
            var got = await HashAll(r);
            foreach (var t in e.Tensors) Assert.That(got[t.GetProperty("name").GetString()!], Is.EqualTo(t.GetProperty("sha256").GetString()));
            return;
        }
        var ex = Assert.ThrowsAsync(Is.InstanceOf<CryptoTensorsException>(), async () =>
        {
            using var r = await CryptoTensorsStreamReader.OpenAsync(stream, "model.safetensors", options);
            await HashAll(r);
        }) as CryptoTensorsException;
        Assert.That(ex!.Kind, Is.EqualTo(e.Kind), ex.Message);
    }

    [TestCase(1, 64)]
    [TestCase(2, 64)]
    [TestCase(2, 5)]
    public async Task StreamsDeliverAuthenticatedPiecesInFileOrder(int version, int chunk)
    {
        using var tmp = new TempDir();
        using var m = MasterKey.Generate();
        using var s = SigningKey.Generate();
        var tensors = TestModels.EveryDtype();
        tensors.Add(TestModels.Tensor("big", Dtype.U8, [3000], 9));
        tensors.Add(TestModels.Tensor("empty.plain", Dtype.I32, [2, 0], 10));
        CryptoTensorsWriter.Write(tmp.File("m"), tensors, new WriterOptions { MasterKey = m, SigningKey = s, FormatVersion = version, ChunkSize = chunk, EncryptOnly = ["big", "t.f32", "empty"] });
        using var r = await CryptoTensorsStreamReader.OpenAsync(new TrickleStream(File.ReadAllBytes(tmp.File("m"))), "m", TestModels.Keys(m, s));
        var want = TestModels.Plain(tensors);
        var got = new Dictionary<string, List<byte>>();
        var order = new List<string>();
        await r.ReadAllAsync((t, offset, data) =>
        {
            if (!got.TryGetValue(t.Name, out var l)) { got[t.Name] = l = []; order.Add(t.Name); }
            Assert.That(offset, Is.EqualTo(l.Count));
            l.AddRange(data.ToArray());
            return ValueTask.CompletedTask;
        });
        foreach (var (name, bytes) in got) Assert.That(bytes.ToArray(), Is.EqualTo(want[name]), name);
        Assert.That(order, Is.EqualTo(r.Tensors.Select(t => t.Name).ToList()), "every tensor, empty ones included, in file order");
    }

    [Test]
    public async Task TruncatedOrExtendedStreamsAreRefused()
    {
        using var tmp = new TempDir();
        using var m = MasterKey.Generate();
        using var s = SigningKey.Generate();
        CryptoTensorsWriter.Write(tmp.File("m"), TestModels.EveryDtype(), new WriterOptions { MasterKey = m, SigningKey = s, ChunkSize = 8 });
        var bytes = File.ReadAllBytes(tmp.File("m"));
        foreach (var data in new[] { bytes[..^3], [.. bytes, 1, 2], bytes[..50], bytes[..5] })
        {
            var ex = Assert.ThrowsAsync(Is.InstanceOf<MalformedFileException>(), async () =>
            {
                using var r = await CryptoTensorsStreamReader.OpenAsync(new TrickleStream(data, 1000), "m", TestModels.Keys(m, s));
                await HashAll(r);
            });
            Assert.That(ex, Is.Not.Null);
        }
    }

    [Test]
    public void CliVerifyReadsStandardInput()
    {
        var e = VectorSuiteTests.Load("v2-aesgcm-signed");
        var o = new StringWriter();
        var err = new StringWriter();
        var code = CryptoTensors.Cli.CliApp.Run(["verify", "-", "--key", e.KeyPath("enc")!, "--verify-key", e.KeyPath("sign")!, "--json"], o, err,
            new TrickleStream(File.ReadAllBytes(e.File), 4096));
        Assert.That(code, Is.Zero, err.ToString());
        using var doc = JsonDocument.Parse(o.ToString());
        var got = doc.RootElement.GetProperty("tensors").EnumerateArray().ToDictionary(t => t.GetProperty("name").GetString()!, t => t.GetProperty("sha256").GetString());
        foreach (var t in e.Tensors) Assert.That(got[t.GetProperty("name").GetString()!], Is.EqualTo(t.GetProperty("sha256").GetString()));
        var bad = VectorSuiteTests.Load("tamper-ciphertext-v2");
        code = CryptoTensors.Cli.CliApp.Run(["verify", "-", "--key", bad.KeyPath("enc")!, "--verify-key", bad.KeyPath("sign")!], new StringWriter(), new StringWriter(),
            new TrickleStream(File.ReadAllBytes(bad.File), 4096));
        Assert.That(code, Is.EqualTo(9));
    }
}
