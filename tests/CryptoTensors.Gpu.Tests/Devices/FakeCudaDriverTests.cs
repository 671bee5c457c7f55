using System.Diagnostics;
using CryptoTensors.Gpu.Crypto;
using CryptoTensors.Gpu.Devices;
using CryptoTensors.Gpu.Devices.Cuda;
using CryptoTensors.Gpu.Devices.Staging;
using CryptoTensors.Gpu.Keys;
using CryptoTensors.Gpu.Loading;
using CryptoTensors.Gpu.Loading.Native;
using CryptoTensors.Gpu.Reading;
using CryptoTensors.Gpu.Workloads;
using CryptoTensors.Gpu.Writing;

namespace CryptoTensors.Gpu.Tests.Devices;

/// <summary>
/// What only the fake driver can show: its counters (a host load makes no CUDA call at all), its failure injection
/// (a sticky error during a failed load) and bugs planted in a copy engine, which it must catch. Skipped, with the
/// reason, where the process runs on a real driver.
/// </summary>
[NonParallelizable]
[TestFixtureSource(typeof(CudaTestDriver), nameof(CudaTestDriver.Fixtures))]
public unsafe class FakeCudaDriverTests
{
    private sealed class Model : IDisposable
    {
        private readonly TempDir _dir = new();
        private readonly MasterKey _master = MasterKey.Generate(AeadAlgorithm.Aes256Gcm);
        private readonly SigningKey _signer = SigningKey.Generate();

        public Model(int chunk = 4096)
        {
            Path = _dir.File("m");
            var tensors = DemoWorkloads.Tiny().ToList();
            CryptoTensorsWriter.Write(Path, tensors, new WriterOptions { MasterKey = _master, SigningKey = _signer, ChunkSize = chunk });
        }

        public string Path { get; }

        public CryptoTensorsReader Open() => CryptoTensorsReader.Open(Path, TestModels.Keys(_master, _signer));

        public void Dispose()
        {
            _master.Dispose();
            _signer.Dispose();
            _dir.Dispose();
        }
    }

    [TearDown]
    public void Reset()
    {
        if (CudaTestDriver.IsFake && CudaDevice.IsAvailable(out _)) FakeCuda.Instance.ResetSticky();
    }

    private static nint CurrentContext()
    {
        nint c;
        CudaNativeMethods.Check(CudaNativeMethods.Driver.cuCtxGetCurrent(&c), "cuCtxGetCurrent");
        return c;
    }

    [Test]
    public void AHostLoadMakesNoCudaCallUnlessAskedToRegister()
    {
        var fake = CudaTestDriver.RequireFake();
        using var m = new Model();
        using var r = m.Open();
        var before = fake.Read();
        using (var model = ModelLoader.Load(r))
            Assert.That(model.Buffer.IsCudaRegistered, Is.False);
        using (var pool = new PinnedMemoryPool(1 << 20))
        using (var pooled = ModelLoader.Load(r, pool))
            Assert.That(pooled.Buffer.IsCudaRegistered, Is.False);
        var t = r.Tensors[0];
        var host = new byte[t.ByteLength];
        fixed (byte* p = host)
            r.ReadInto(t.Name, (IntPtr)p, host.Length);
        r.ReadTensor(t.Name);
        using (StagingRing.Allocate(2, 4096, cudaRegister: false)) { }
        Assert.That(fake.Read().Calls, Is.EqualTo(before.Calls), "a host load called the CUDA driver");

        // Asked for: registered in the primary context, the thread's current context left alone, all undone on dispose.
        CudaNativeMethods.Check(CudaNativeMethods.Driver.cuCtxSetCurrent(0), "cuCtxSetCurrent");
        before = fake.Read();
        var sw = Stopwatch.StartNew();
        using (var model = ModelLoader.Load(r, options: new LoadOptions { RegisterWithCuda = true }))
        {
            var loadMs = sw.Elapsed.TotalMilliseconds;
            Assert.That(model.Buffer.IsCudaRegistered, Is.True);
            var during = fake.Read();
            Assert.That(during.RegisterCalls - before.RegisterCalls, Is.EqualTo(1));
            Assert.That(during.RegistrationsLive - before.RegistrationsLive, Is.EqualTo(1));
            Assert.That(during.PrimaryRefcount - before.PrimaryRefcount, Is.EqualTo(1), "a registration holds the primary context");
            Assert.That(CurrentContext(), Is.EqualTo(IntPtr.Zero), "the primary context is not left current on the caller's thread");
            TestContext.Out.WriteLine($"load with RegisterWithCuda on the fake driver: {loadMs:F2} ms (meaningless here; ctensors bench --device reports cuda_register_ms on a GPU)");
        }
        var after = fake.Read();
        Assert.That((after.RegistrationsLive, after.PrimaryRefcount), Is.EqualTo((before.RegistrationsLive, before.PrimaryRefcount)));
        Assert.That(CurrentContext(), Is.EqualTo(IntPtr.Zero));
    }

    [Test]
    public void AfterAStickyErrorTheLoadStillThrowsItsDecryptionError()
    {
        var fake = CudaTestDriver.RequireFake();
        using var m = new Model();
        string tensor;
        using (var r0 = m.Open())
        {
            tensor = r0.Tensors.OrderByDescending(x => x.ByteLength).First().Name;
            r0.Header.TryGetTensor(tensor, out var info);
            using var f = new FileStream(m.Path, FileMode.Open, FileAccess.ReadWrite);
            f.Position = r0.Header.DataStart + (long)info.Begin + 9000;
            var b = f.ReadByte();
            f.Position -= 1;
            f.WriteByte((byte)(b ^ 1));
        }
        using var r = m.Open();
        using var device = CudaDevice.Open();
        // The first synchronization after the loop fails and poisons the context, as an illegal address in a copy would.
        fake.Inject("cuStreamSynchronize", 1, 700, sticky: true);
        var ex = Assert.Throws<DecryptionException>(() => DeviceLoader.Load(r, device, new DeviceLoadOptions { MaxDegreeOfParallelism = 1, Slots = 2, SlotBytes = 4096 }));
        Assert.That(ex!.Tensor, Is.EqualTo(tensor));
        Assert.That(fake.Read().StickyError, Is.EqualTo(700UL));
        var cleanup = ex.Data[DeviceLoader.CleanupErrorsKey] as AggregateException;
        Assert.That(cleanup, Is.Not.Null, "the clean-up's failures are attached to the first error");
        Assert.That(cleanup!.InnerExceptions, Is.Not.Empty.And.All.InstanceOf<CudaException>());
        Assert.That(cleanup.InnerExceptions.Cast<CudaException>().Select(e => e.ErrorName), Is.All.EqualTo("CUDA_ERROR_ILLEGAL_ADDRESS"));
        Assert.That(cleanup.InnerExceptions.Cast<CudaException>().Select(e => e.Function), Does.Contain("cuStreamSynchronize").And.Contain("cuMemsetD8_v2"));
    }

    /// <summary>Delegates to a real <see cref="CudaCopyEngine"/> except where a bug is planted.</summary>
    private sealed class PlantedBug(CudaCopyEngine inner, bool noContextInWorkers, bool skipSlotWait) : IDeviceCopyEngine
    {
        public string Name => "planted-bug";
        public void Attach(StagingRing ring) => inner.Attach(ring);

        public void EnterWorker()
        {
            // Planted: a worker that never makes the context current (a fresh thread has none; pool threads may keep one
            // from earlier work, so it is cleared here to stand for a fresh thread).
            if (noContextInWorkers) CudaNativeMethods.Check(CudaNativeMethods.Driver.cuCtxSetCurrent(0), "cuCtxSetCurrent");
            else inner.EnterWorker();
        }

        public void CopyAsync(int slot, long length, ulong destination) => inner.CopyAsync(slot, length, destination);

        public void WaitForSlot(int slot)
        {
            if (!skipSlotWait) inner.WaitForSlot(slot); // planted: a slot refilled while its last copy may still be queued
        }

        public void Synchronize() => inner.Synchronize();
        public void Clear(ulong destination, long length) => inner.Clear(destination, length);
        public void Detach() => inner.Detach();
    }

    [Test]
    public void APlantedWorkerWithoutTheContextCurrentIsCaught()
    {
        var fake = CudaTestDriver.RequireFake();
        using var m = new Model();
        using var r = m.Open();
        using var device = CudaDevice.Open();
        using var buffer = device.Allocate(r.Tensors.Sum(t => (t.ByteLength + 255) / 256 * 256));
        var layout = new Dictionary<string, ulong>();
        var offset = 0L;
        foreach (var t in r.Tensors)
        {
            layout[t.Name] = buffer.DevicePointer + (ulong)offset;
            offset += (t.ByteLength + 255) / 256 * 256;
        }
        var before = fake.Read();
        using var inner = new CudaCopyEngine(device, 2);
        var ex = Assert.Throws<CudaException>(() => DeviceLoader.LoadInto(r, t => layout[t.Name], new PlantedBug(inner, noContextInWorkers: true, skipSlotWait: false),
            new DeviceLoadOptions { MaxDegreeOfParallelism = 2, Slots = 2, SlotBytes = 4096 }));
        Assert.That(ex!.ErrorName, Is.EqualTo("CUDA_ERROR_INVALID_CONTEXT"));
        Assert.That(fake.Read().ContextErrors, Is.GreaterThan(before.ContextErrors));
        Assert.That(fake.LastComplaint(), Does.Contain("no context is current"));

        // The same load through the engine as written passes.
        DeviceLoader.LoadInto(r, t => layout[t.Name], new PlantedBug(inner, noContextInWorkers: false, skipSlotWait: false),
            new DeviceLoadOptions { MaxDegreeOfParallelism = 2, Slots = 2, SlotBytes = 4096 });
    }

    [Test]
    public void APlantedSlotReusedBeforeItsCopyFinishedIsCaught()
    {
        var fake = CudaTestDriver.RequireFake();
        using var m = new Model();
        using var r = m.Open();
        using var device = CudaDevice.Open();
        var size = r.Tensors.Sum(t => (t.ByteLength + 255) / 256 * 256);
        using var buffer = device.Allocate(size);
        var layout = new Dictionary<string, ulong>();
        var offset = 0L;
        foreach (var t in r.Tensors)
        {
            layout[t.Name] = buffer.DevicePointer + (ulong)offset;
            offset += (t.ByteLength + 255) / 256 * 256;
        }
        var options = new DeviceLoadOptions { MaxDegreeOfParallelism = 1, Slots = 2, SlotBytes = 4096, Streams = 1 };
        var delay = fake.SetDelayMicroseconds(2000); // copies run late: a slot refilled before its copy ran is certain to be seen
        try
        {
            using var inner = new CudaCopyEngine(device, 1);
            var before = fake.Read().Hazards;
            DeviceLoader.LoadInto(r, t => layout[t.Name], new PlantedBug(inner, noContextInWorkers: false, skipSlotWait: false), options);
            Assert.That(fake.Read().Hazards, Is.EqualTo(before), "the engine as written waits for each slot's copy");

            DeviceLoader.LoadInto(r, t => layout[t.Name], new PlantedBug(inner, noContextInWorkers: false, skipSlotWait: true), options);
            Assert.That(fake.Read().Hazards, Is.GreaterThan(before), "the fake saw a page-locked slot rewritten before its copy ran");
            Assert.That(fake.LastComplaint(), Does.Contain("was rewritten before its queued copy ran"));
        }
        finally
        {
            fake.SetDelayMicroseconds(delay);
        }
    }
}
