using System.Diagnostics;
using System.Security.Cryptography;
using System.Text.Json;
using CryptoTensors.Cli;
using CryptoTensors.Gpu.Crypto;
using CryptoTensors.Gpu.Devices;
using CryptoTensors.Gpu.Devices.Cuda;
using CryptoTensors.Gpu.Devices.Staging;
using CryptoTensors.Gpu.Format;
using CryptoTensors.Gpu.Keys;
using CryptoTensors.Gpu.Reading;
using CryptoTensors.Gpu.Workloads;
using CryptoTensors.Gpu.Writing;

namespace CryptoTensors.Gpu.Tests.Devices;

/// <summary>
/// The CUDA driver path, end to end: on a real driver where <c>libcuda.so.1</c> loads, else on the fake driver
/// (native/fakecuda; see <see cref="CudaTestDriver"/>); the fixture's name says which. With the fake, every test
/// also checks that nothing leaked (allocations, streams, events, host registrations) and that no page-locked slot
/// was rewritten before its copy ran.
/// </summary>
[NonParallelizable]
[TestFixtureSource(typeof(CudaTestDriver), nameof(CudaTestDriver.Fixtures))]
public class CudaTests
{
    private FakeCuda.Stats _before;

    [SetUp]
    public void Baseline()
    {
        if (CudaTestDriver.IsFake && CudaDevice.IsAvailable(out _)) _before = FakeCuda.Instance.Read();
    }

    [TearDown]
    public void NothingLeakedAndNoHazard()
    {
        if (!CudaTestDriver.IsFake || !CudaDevice.IsAvailable(out _)) return;
        var fake = FakeCuda.Instance;
        fake.ResetSticky();
        if (TestContext.CurrentContext.Result.Outcome.Status != NUnit.Framework.Interfaces.TestStatus.Passed) return;
        var after = fake.Read();
        Assert.Multiple(() =>
        {
            Assert.That(after.AllocationsLive, Is.EqualTo(_before.AllocationsLive), "device allocations leaked");
            Assert.That(after.StreamsLive, Is.EqualTo(_before.StreamsLive), "streams leaked");
            Assert.That(after.EventsLive, Is.EqualTo(_before.EventsLive), "events leaked");
            Assert.That(after.RegistrationsLive, Is.EqualTo(_before.RegistrationsLive), "host registrations leaked");
            Assert.That(after.Hazards, Is.EqualTo(_before.Hazards), "a page-locked source was rewritten before its copy ran: " + fake.LastComplaint());
        });
    }

    private sealed class Model : IDisposable
    {
        private readonly TempDir _dir = new();

        public Model(IReadOnlyList<TensorSource> tensors, int version, int chunk = 1 << 16)
        {
            Master = MasterKey.Generate(AeadAlgorithm.Aes256Gcm);
            Signer = SigningKey.Generate();
            Path = _dir.File("m");
            CryptoTensorsWriter.Write(Path, tensors, new WriterOptions { MasterKey = Master, SigningKey = Signer, FormatVersion = version, ChunkSize = chunk });
        }

        public MasterKey Master { get; }
        public SigningKey Signer { get; }
        public string Path { get; }

        public CryptoTensorsReader Open() => CryptoTensorsReader.Open(Path, TestModels.Keys(Master, Signer));

        public void Tamper(CryptoTensorsReader r, string tensor, long at)
        {
            r.Header.TryGetTensor(tensor, out var info);
            var offset = r.Header.DataStart + (long)info.Begin + at;
            using var f = new FileStream(Path, FileMode.Open, FileAccess.ReadWrite, FileShare.ReadWrite);
            f.Position = offset;
            var b = f.ReadByte();
            f.Position = offset;
            f.WriteByte((byte)(b ^ 0x40));
        }

        public void Dispose()
        {
            Master.Dispose();
            Signer.Dispose();
            _dir.Dispose();
        }
    }

    private static void AssertSameBytes(CryptoTensorsReader r, DeviceModel model)
    {
        foreach (var t in r.Tensors)
        {
            var back = new byte[t.ByteLength];
            model.CopyToHost(t.Name, back);
            Assert.That(SHA256.HashData(back), Is.EqualTo(SHA256.HashData(r.ReadTensor(t.Name))), t.Name);
            Assert.That(model.DevicePointerOf(t.Name) % 256, Is.Zero);
        }
    }

    /// <summary>Runs the ctensors CLI in a child process with <paramref name="environment"/> added.</summary>
    internal static (int Code, string Out, string Err) CtensorsProcess(IReadOnlyDictionary<string, string> environment, params string[] args)
    {
        var start = new ProcessStartInfo
        {
            FileName = Environment.GetEnvironmentVariable("DOTNET_HOST_PATH") is { Length: > 0 } h ? h : "dotnet",
            RedirectStandardOutput = true,
            RedirectStandardError = true,
            UseShellExecute = false,
        };
        start.ArgumentList.Add(typeof(CliApp).Assembly.Location);
        foreach (var a in args) start.ArgumentList.Add(a);
        foreach (var (k, v) in environment) start.Environment[k] = v;
        using var p = Process.Start(start)!;
        var stdout = p.StandardOutput.ReadToEndAsync();
        var stderr = p.StandardError.ReadToEndAsync();
        Assert.That(p.WaitForExit(TimeSpan.FromMinutes(2)), Is.True, "ctensors timed out");
        return (p.ExitCode, stdout.Result, stderr.Result);
    }

    [Test]
    public void WithoutADriverTheApiThrowsOneClearException()
    {
        // Its own process, pointed at a driver that does not exist: what a machine without CUDA sees.
        var r = CtensorsProcess(new Dictionary<string, string> { [CudaNativeMethods.DriverVariable] = "/nonexistent/libcuda.so.1" },
            "bench", "--workload", "tiny", "--device", "cuda:0", "--json");
        Assert.That(r.Code, Is.EqualTo(CliApp.UsageExitCode), r.Err);
        Assert.That(r.Err, Does.Contain("ctensors: error: CUDA driver not found: /nonexistent/libcuda.so.1 could not be loaded"));
        Assert.That(r.Out, Is.Empty);
        if (!CudaDevice.IsAvailable(out var reason))
        {
            var ex = Assert.Throws<CudaUnavailableException>(() => CudaDevice.Open());
            Assert.That(ex!.Message, Does.StartWith(ex.Reason == CudaUnavailableReason.DriverNotFound ? "CUDA driver not found" : "no CUDA device"));
            Assert.That(reason, Is.EqualTo(ex.Message));
        }
    }

    [Test]
    public void ADeviceOpensWithItsPrimaryContextAndMemoryRoundTrips()
    {
        CudaTestDriver.RequireDevice();
        using var device = CudaDevice.Open();
        Assert.That(device.Name, Is.Not.Empty);
        if (CudaTestDriver.IsFake) Assert.That(device.Name, Does.Contain("fake"));
        Assert.That(device.TotalMemory, Is.GreaterThan(0));
        Assert.That(CudaDevice.DriverVersion, Is.GreaterThan(0));
        using var buffer = device.Allocate(1 << 20);
        var data = RandomNumberGenerator.GetBytes(1 << 20);
        buffer.CopyFromHost(0, data);
        var back = new byte[data.Length];
        buffer.CopyToHost(0, back);
        Assert.That(back, Is.EqualTo(data));
        buffer.Clear(100, 1000);
        if (CudaTestDriver.IsFake)
            Assert.That(FakeCuda.Instance.Peek(buffer.DevicePointer + 100, 1000), Is.All.EqualTo(0), "Clear is synchronous: done when it returns");
        buffer.CopyToHost(0, back);
        Assert.That(back.AsSpan(100, 1000).ToArray(), Is.All.EqualTo(0));
        var ex = Assert.Throws<CudaException>(() => device.Allocate(long.MaxValue / 2));
        Assert.That(ex!.ErrorName, Is.EqualTo("CUDA_ERROR_OUT_OF_MEMORY"));
        Assert.That(ex.Message, Does.Contain("cuMemAlloc_v2").And.Contain("CUDA_ERROR_OUT_OF_MEMORY"));
    }

    [Test]
    public void TheElapsedTimeOfTwoRecordedEventsIsNotNegative()
    {
        CudaTestDriver.RequireDevice();
        using var device = CudaDevice.Open();
        using var stream = device.CreateStream();
        using var buffer = device.Allocate(1 << 16);
        using var start = CudaEvent.Create(device, timing: true);
        using var end = CudaEvent.Create(device, timing: true);
        start.Record(stream);
        buffer.Clear(0, 1 << 16);
        end.Record(stream);
        end.Synchronize();
        // The call succeeds and gives a real duration (the driver's argument order is (float* ms, start, end)): a
        // correctness check of the binding, not a speed assertion.
        var measured = end.ElapsedMillisecondsSince(start);
        Assert.That(float.IsFinite(measured) && measured >= 0f, Is.True, $"the event timing call gave {measured} ms");
    }

    [TestCase(2, 2)]
    [TestCase(1, 1)]
    public void AnEncryptedModelLoadsToTheDeviceWithTheBytesOfTheCpuPath(int version, int streams)
    {
        CudaTestDriver.RequireDevice();
        using var m = new Model(DemoWorkloads.Tiny(), version);
        using var r = m.Open();
        using var device = CudaDevice.Open();
        using var model = DeviceLoader.Load(r, device, new DeviceLoadOptions { Streams = streams, Slots = 3, SlotBytes = 1 << 16 });
        AssertSameBytes(r, model);
        Assert.That(model.Staging.RingBytes, Is.EqualTo(3L << 16));

        // DLPack hand-off of device memory: kDLCUDA, the tensor's own address, valid until the deleter runs.
        var name = r.Tensors.OrderByDescending(x => x.ByteLength).First().Name;
        var export = model.ToDLPack(name);
        unsafe
        {
            var d = (Gpu.Interop.DLPack.DLManagedTensorVersioned*)export;
            Assert.That(d->Tensor.Device, Is.EqualTo(Gpu.Interop.DLPack.DLDevice.Cuda(device.Ordinal)));
            Assert.That((ulong)(nint)d->Tensor.Data, Is.EqualTo(model.DevicePointerOf(name)));
        }
        Gpu.Interop.DLPack.DLPackExporter.InvokeDeleter(export);
    }

    /// <summary>A GPT-2-shaped model (names, dtypes and proportions of the real one) at a size a test can afford.</summary>
    private static List<TensorSource> Gpt2Like(int layers, int hidden, int vocab)
    {
        var seed = 0;
        TensorSource T(string name, params ulong[] shape) => TestModels.Tensor(name, Dtype.F32, shape, ++seed);
        var h = (ulong)hidden;
        var list = new List<TensorSource> { T("wte.weight", (ulong)vocab, h), T("wpe.weight", 256, h) };
        for (var i = 0; i < layers; i++)
        {
            var p = $"h.{i}.";
            list.AddRange([T(p + "ln_1.weight", h), T(p + "ln_1.bias", h), T(p + "attn.bias", 1, 1, 256, 256), T(p + "attn.c_attn.weight", h, 3 * h),
                T(p + "attn.c_attn.bias", 3 * h), T(p + "attn.c_proj.weight", h, h), T(p + "attn.c_proj.bias", h), T(p + "ln_2.weight", h), T(p + "ln_2.bias", h),
                T(p + "mlp.c_fc.weight", h, 4 * h), T(p + "mlp.c_fc.bias", 4 * h), T(p + "mlp.c_proj.weight", 4 * h, h), T(p + "mlp.c_proj.bias", h)]);
        }
        list.AddRange([T("ln_f.weight", h), T("ln_f.bias", h)]);
        return list;
    }

    private static IEnumerable<TestCaseData> LoadCases()
    {
        foreach (var workload in new[] { "tiny", "gpt2-small" })
            foreach (var version in new[] { 1, 2 })
                yield return new TestCaseData(workload, version).SetName($"DeviceLoad_{workload}_v{version}_ThreeSettingsSameBytes");
        yield return new TestCaseData("gpt2-medium", 2).SetName("DeviceLoad_gpt2-medium_v2_ThreeSettingsSameBytes");
    }

    [TestCaseSource(nameof(LoadCases))]
    public void DeviceLoadGivesTheSameBytesInEveryWorkerSlotStreamSetting(string workload, int version)
    {
        CudaTestDriver.RequireDevice();
        var tensors = workload switch
        {
            "tiny" => DemoWorkloads.Tiny().ToList(),
            "gpt2-small" => Gpt2Like(2, 64, 1000),
            _ => Gpt2Like(4, 256, 8192), // about 20 MB
        };
        using var m = new Model(tensors, version, chunk: 1 << 16);
        using var r = m.Open();
        using var device = CudaDevice.Open();
        var settings = new[]
        {
            new DeviceLoadOptions { MaxDegreeOfParallelism = 1, Slots = 1, SlotBytes = 1 << 16, Streams = 1 },
            new DeviceLoadOptions { MaxDegreeOfParallelism = 2, Slots = 3, SlotBytes = 1 << 16, Streams = 2 },
            new DeviceLoadOptions { MaxDegreeOfParallelism = 4, Slots = 8, SlotBytes = 1 << 17, Streams = 3 },
        };
        byte[]? first = null;
        foreach (var options in settings)
        {
            using var model = DeviceLoader.Load(r, device, options);
            var all = new byte[model.Buffer.Length];
            model.Buffer.CopyToHost(0, all);
            if (first is null)
            {
                AssertSameBytes(r, model);
                first = all;
            }
            else
            {
                Assert.That(all.AsSpan().SequenceEqual(first), Is.True, $"workers {options.MaxDegreeOfParallelism}, slots {options.Slots}, streams {options.Streams}");
            }
        }
    }

    [Test]
    public void ARingIsReusedAcrossDeviceLoads()
    {
        CudaTestDriver.RequireDevice();
        using var m = new Model(Gpt2Like(2, 64, 1000), 2, chunk: 4096);
        using var r = m.Open();
        using var device = CudaDevice.Open();
        using var ring = StagingRing.Allocate(3, 4096);
        var registered = CudaTestDriver.IsFake ? FakeCuda.Instance.Read().RegistrationsLive : 0;
        for (var i = 0; i < 3; i++)
        {
            using var model = DeviceLoader.Load(r, device, new DeviceLoadOptions { Ring = ring, MaxDegreeOfParallelism = 2 });
            Assert.That(model.Staging.RingBytes, Is.EqualTo(ring.Length));
            AssertSameBytes(r, model);
        }
        Assert.That(ring.Buffer.IsClosed, Is.False, "a caller's ring is not freed by the load");
        Assert.That(ring.Buffer.IsCudaRegistered, Is.True, "a device ring is registered once, when allocated");
        if (CudaTestDriver.IsFake)
            Assert.That(FakeCuda.Instance.Read().RegistrationsLive, Is.EqualTo(registered), "the loads neither registered the ring again nor unregistered it");
    }

    [Test]
    public void ReadIntoDeviceMemoryOnTheCallersStreamAndATamperedFileLeavesZeros()
    {
        CudaTestDriver.RequireDevice();
        using var m = new Model(DemoWorkloads.Tiny(), 2, chunk: 4096);
        using var r = m.Open();
        using var device = CudaDevice.Open();
        using var stream = device.CreateStream();
        using var ring = StagingRing.Allocate(2, 4096);
        var t = r.Tensors.OrderByDescending(x => x.ByteLength).First();
        using var buffer = device.Allocate(t.ByteLength);
        r.ReadInto(t.Name, (IntPtr)buffer.DevicePointer, t.ByteLength, stream, ring);
        var back = new byte[t.ByteLength];
        buffer.CopyToHost(0, back);
        Assert.That(back, Is.EqualTo(r.ReadTensor(t.Name)));

        // A file tampered before it is opened: an open reader would call the same edit a change under it (FileChanged).
        m.Tamper(r, t.Name, 5000);
        using var tampered = m.Open();
        var ex = Assert.Throws<DecryptionException>(() => tampered.ReadInto(t.Name, (IntPtr)buffer.DevicePointer, t.ByteLength, stream, ring));
        Assert.That(ex!.Tensor, Is.EqualTo(t.Name));
        if (CudaTestDriver.IsFake)
            Assert.That(FakeCuda.Instance.Peek(buffer.DevicePointer, (int)t.ByteLength), Is.All.EqualTo(0), "zeroed before the error is thrown, not later");
        buffer.CopyToHost(0, back);
        Assert.That(back, Is.All.EqualTo(0), "a refused load leaves zeros on the device");
    }

    [Test]
    public void TruncationAndCancellationOnTheDevicePathAreErrorsThatLeaveZeros()
    {
        CudaTestDriver.RequireDevice();
        using var m = new Model(Gpt2Like(2, 64, 1000), 2, chunk: 4096);
        using var r = m.Open();
        using var device = CudaDevice.Open();
        using var ring = StagingRing.Allocate(2, 4096);
        var tensor = r.Tensors.OrderByDescending(x => x.ByteLength).First();
        using var buffer = device.Allocate(tensor.ByteLength);
        using var stream = device.CreateStream();

        using (var cts = new CancellationTokenSource())
        {
            cts.Cancel();
            Assert.Catch<OperationCanceledException>(() => r.ReadInto(tensor.Name, (IntPtr)buffer.DevicePointer, tensor.ByteLength, stream, ring, cts.Token));
        }
        var back = new byte[tensor.ByteLength];
        buffer.CopyToHost(0, back);
        Assert.That(back, Is.All.EqualTo(0), "a cancelled load leaves zeros");

        using (var f = new FileStream(m.Path, FileMode.Open, FileAccess.Write, FileShare.ReadWrite))
            f.SetLength(r.Header.DataStart + 10);
        var ex = Assert.Throws<MalformedFileException>(() => DeviceLoader.Load(r, device, new DeviceLoadOptions { Ring = ring }).Dispose());
        Assert.That(ex!.Code, Is.EqualTo(ErrorCode.IncompleteBuffer));
    }

    [Test]
    public void BenchOnTheDeviceRunsTheTinyWorkload()
    {
        CudaTestDriver.RequireDevice();
        var r = Cli.CliTests.Ctensors("bench", "--workload", "tiny", "--device", "cuda:0", "--json", "--repeat", "1");
        Assert.That(r.Code, Is.Zero, r.Err);
        using var doc = JsonDocument.Parse(r.Out.Trim());
        var root = doc.RootElement;
        Assert.That(root.GetProperty("workload").GetString(), Is.EqualTo("tiny"));
        Assert.That(root.GetProperty("encrypted_to_device_gbps").GetDouble(), Is.GreaterThan(0));
        Assert.That(root.GetProperty("plain_to_device_gbps").GetDouble(), Is.GreaterThan(0));
        Assert.That(root.GetProperty("cuda_register_ms").GetDouble(), Is.GreaterThanOrEqualTo(0));
        TestContext.Out.WriteLine($"{CudaTestDriver.Label}: {r.Out.Trim()}");
    }
}
