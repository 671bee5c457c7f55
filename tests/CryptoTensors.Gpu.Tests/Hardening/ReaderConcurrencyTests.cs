using System.Collections.Concurrent;
using CryptoTensors.Gpu.Crypto;
using CryptoTensors.Gpu.Format;
using CryptoTensors.Gpu.Keys;
using CryptoTensors.Gpu.Loading;
using CryptoTensors.Gpu.Loading.Native;
using CryptoTensors.Gpu.Reading;
using CryptoTensors.Gpu.Writing;

namespace CryptoTensors.Gpu.Tests.Hardening;

/// <summary>
/// One open reader shared by many threads (issue 18 item 5): every read gives the bytes of a single-threaded read, and
/// Dispose racing reads never frees what a read uses (keys, file handle, mappings): reads in flight complete with
/// the right bytes, later ones throw <see cref="ObjectDisposedException"/>, nothing else (no DecryptionException from
/// zeroed keys, no crash), and the data keys end zeroed.
/// </summary>
[NonParallelizable]
public class ReaderConcurrencyTests
{
    private static (string File, Dictionary<string, byte[]> Plain) Model(TempDir tmp, MasterKey master, SigningKey signer, int version)
    {
        var tensors = Enumerable.Range(0, 12).Select(i => TestModels.Tensor($"w{i:D2}", Dtype.U8, [(ulong)(3000 + 1537 * i)], i)).ToList();
        var file = tmp.File("m");
        CryptoTensorsWriter.Write(file, tensors, new WriterOptions
        {
            MasterKey = master, SigningKey = signer, FormatVersion = version, ChunkSize = 1024,
            // Partly encrypted: plain tensors exercise the positional/mapped copy path as well.
            EncryptOnly = tensors.Where((_, i) => i % 4 != 3).Select(t => t.Name).ToList(),
        });
        return (file, TestModels.Plain(tensors));
    }

    private static ReadPath[] Paths() => PinnedHostBuffer.NativeShimAvailable ? [ReadPath.MemoryMapped, ReadPath.PositionalRead] : [ReadPath.PositionalRead];

    /// <summary>One random operation on the reader, checked against the plaintext.</summary>
    private static void RandomRead(CryptoTensorsReader r, Dictionary<string, byte[]> want, Random rng)
    {
        var names = want.Keys.ToArray();
        var name = names[rng.Next(names.Length)];
        var full = want[name];
        switch (rng.Next(5))
        {
            case 0:
                Same(r.ReadTensor(name), full, name);
                break;
            case 1:
            {
                var offset = rng.Next(full.Length);
                var buffer = new byte[rng.Next(full.Length - offset + 1)];
                r.ReadRange(name, offset, buffer);
                Same(buffer, full.AsSpan(offset, buffer.Length).ToArray(), name);
                break;
            }
            case 2:
            {
                var ranges = new List<(long, long)>();
                var expect = new List<byte>();
                for (var k = 0; k < 3; k++)
                {
                    var o = rng.Next(full.Length);
                    var l = rng.Next(Math.Min(2500, full.Length - o) + 1);
                    ranges.Add((o, l));
                    expect.AddRange(full.AsSpan(o, l).ToArray());
                }
                var buffer = new byte[expect.Count];
                r.ReadSlice(name, ranges, buffer);
                Same(buffer, expect.ToArray(), name);
                break;
            }
            default:
            {
                var subset = names.Where(_ => rng.Next(3) == 0).DefaultIfEmpty(name).ToList();
                var paths = Paths();
                using var model = ModelLoader.Load(r, options: new LoadOptions { Tensors = subset, ReadPath = paths[rng.Next(paths.Length)], MaxDegreeOfParallelism = 2 });
                foreach (var n in subset) Same(model.GetSpan(n).ToArray(), want[n], n);
                break;
            }
        }
    }

    /// <summary>Thrown from worker threads (not an NUnit assertion, which belongs to the test's thread).</summary>
    private static void Same(byte[] got, byte[] want, string name)
    {
        if (!got.AsSpan().SequenceEqual(want)) throw new InvalidOperationException($"wrong bytes for {name}");
    }

    [TestCase(1)]
    [TestCase(2)]
    public void SixteenThreadsReadTheBytesOfASingleThreadedRead(int version)
    {
        using var tmp = new TempDir();
        using var master = MasterKey.Generate();
        using var signer = SigningKey.Generate();
        var (file, want) = Model(tmp, master, signer, version);
        using var r = CryptoTensorsReader.Open(file, TestModels.Keys(master, signer));
        // The single-threaded read is the reference the threads are held to.
        foreach (var t in r.Tensors) Assert.That(r.ReadTensor(t.Name), Is.EqualTo(want[t.Name]));
        var failures = new ConcurrentQueue<Exception>();
        var threads = Enumerable.Range(0, 16).Select(i => new Thread(() =>
        {
            var rng = new Random(1000 + i);
            try
            {
                for (var k = 0; k < 60; k++) RandomRead(r, want, rng);
            }
            catch (Exception e)
            {
                failures.Enqueue(e);
            }
        })).ToList();
        threads.ForEach(t => t.Start());
        threads.ForEach(t => t.Join());
        Assert.That(failures, Is.Empty, string.Join("\n", failures.Take(3)));
    }

    /// <summary>
    /// Dispose from another thread at a random moment while 8 threads read: every operation either returns the right
    /// bytes or throws ObjectDisposedException, and once all have returned the data keys are zero. 150 iterations.
    /// </summary>
    [Test]
    public void DisposeRacingReadsOnlyEverYieldsRightBytesOrObjectDisposed()
    {
        using var tmp = new TempDir();
        using var master = MasterKey.Generate();
        using var signer = SigningKey.Generate();
        var (file, want) = Model(tmp, master, signer, 2);
        var failures = new ConcurrentQueue<string>();
        long completed = 0, refused = 0;
        for (var iteration = 0; iteration < 150; iteration++)
        {
            using var recorder = new SecretRecorder();
            var r = CryptoTensorsReader.Open(file, TestModels.Keys(master, signer));
            using var go = new Barrier(9);
            var threads = Enumerable.Range(0, 8).Select(i => new Thread(() =>
            {
                var rng = new Random(iteration * 31 + i);
                go.SignalAndWait();
                try
                {
                    for (var k = 0; k < 50; k++)
                    {
                        RandomRead(r, want, rng);
                        Interlocked.Increment(ref completed);
                    }
                }
                catch (ObjectDisposedException)
                {
                    Interlocked.Increment(ref refused);
                }
                catch (Exception e)
                {
                    failures.Enqueue($"iteration {iteration}: {e.GetType().Name}: {e.Message}");
                }
            })).ToList();
            threads.ForEach(t => t.Start());
            go.SignalAndWait();
            Thread.SpinWait(new Random(iteration).Next(200_000));
            r.Dispose();
            threads.ForEach(t => t.Join());
            Assert.That(() => r.ReadTensor("w00"), Throws.InstanceOf<ObjectDisposedException>());
            Assert.That(recorder.CreatedBuffers, Is.Not.Empty, "the reader's data keys were seen");
            Assert.That(recorder.Leaks(), Is.Empty, $"iteration {iteration}: data keys zeroed once every read returned");
        }
        Assert.That(failures, Is.Empty, string.Join("\n", failures.Take(5)));
        TestContext.Out.WriteLine($"{completed} reads completed, {refused} refused with ObjectDisposedException");
        Assert.That(refused, Is.GreaterThan(0), "some reads met the disposed reader");
    }

    /// <summary>The keys and handle live exactly as long as the last lease: Dispose with a read in flight zeroes nothing yet.</summary>
    [Test]
    public void TheLastLeaseNotDisposeReleasesTheKeys()
    {
        using var tmp = new TempDir();
        using var master = MasterKey.Generate();
        using var signer = SigningKey.Generate();
        var (file, want) = Model(tmp, master, signer, 2);
        using var recorder = new SecretRecorder();
        var r = CryptoTensorsReader.Open(file, TestModels.Keys(master, signer));
        var deks = recorder.CreatedBuffers.Single();
        var lease = r.Lease();
        r.Dispose();
        r.Dispose();
        Assert.That(deks.IsDisposed, Is.False, "a read in flight keeps the data keys");
        Assert.That(r.FileHandle.IsClosed, Is.False, "and the file");
        Assert.Throws<ObjectDisposedException>(() => r.ReadTensor("w00", new byte[want["w00"].Length]));
        Assert.Throws<ObjectDisposedException>(() => ModelLoader.Load(r));
        lease.Dispose();
        Assert.That(deks.IsDisposed, Is.True);
        Assert.That(deks.BytesForTests.ToArray(), Is.All.Zero);
        Assert.That(r.FileHandle.IsClosed, Is.True);
    }

    [Test]
    public async Task AsyncReadsHoldTheirLeaseAcrossAwaits()
    {
        using var tmp = new TempDir();
        using var master = MasterKey.Generate();
        using var signer = SigningKey.Generate();
        var (file, want) = Model(tmp, master, signer, 2);
        var r = CryptoTensorsReader.Open(file, TestModels.Keys(master, signer));
        var tasks = want.Keys.Select(async n =>
        {
            var b = new byte[want[n].Length];
            try
            {
                await r.ReadTensorAsync(n, b);
                return b.SequenceEqual(want[n]) ? "ok" : "wrong bytes " + n;
            }
            catch (ObjectDisposedException)
            {
                return "ok";
            }
        }).ToList();
        r.Dispose();
        Assert.That(await Task.WhenAll(tasks), Is.All.EqualTo("ok"));
        Assert.ThrowsAsync<ObjectDisposedException>(async () => await r.ReadTensorAsync("w00", new byte[want["w00"].Length]));
    }
}
