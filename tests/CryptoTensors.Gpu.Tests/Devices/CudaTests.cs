using System.Security.Cryptography;
using CryptoTensors.Gpu.Crypto;
using CryptoTensors.Gpu.Devices;
using CryptoTensors.Gpu.Devices.Cuda;
using CryptoTensors.Gpu.Devices.Staging;
using CryptoTensors.Gpu.Keys;
using CryptoTensors.Gpu.Reading;
using CryptoTensors.Gpu.Workloads;
using CryptoTensors.Gpu.Writing;

namespace CryptoTensors.Gpu.Tests.Devices;

/// <summary>
/// The CUDA driver path. On machines without a driver or device the API must throw one clear exception; the
/// round trips run only where a device exists and are reported as skipped, with the driver's reason, elsewhere.
/// </summary>
[NonParallelizable]
public class CudaTests
{
    private static void RequireDevice()
    {
        if (!CudaDevice.IsAvailable(out var reason)) Assert.Ignore($"needs a CUDA GPU: {reason}");
    }

    [Test]
    public void WithoutADriverOrDeviceTheApiThrowsOneClearException()
    {
        if (CudaDevice.IsAvailable(out _)) Assert.Ignore("this machine has a CUDA device: the no-device behaviour cannot be observed here");
        var ex = Assert.Throws<CudaUnavailableException>(() => CudaDevice.Open());
        Assert.That(ex!.Message, Does.StartWith(ex.Reason == CudaUnavailableReason.DriverNotFound ? "CUDA driver not found" : "no CUDA device"));
        Assert.That(CudaDevice.IsAvailable(out var reason), Is.False);
        Assert.That(reason, Is.EqualTo(ex.Message));
    }

    [Test]
    public void ADeviceOpensWithItsPrimaryContextAndMemoryRoundTrips()
    {
        RequireDevice();
        using var device = CudaDevice.Open();
        Assert.That(device.Name, Is.Not.Empty);
        Assert.That(device.TotalMemory, Is.GreaterThan(0));
        using var buffer = device.Allocate(1 << 20);
        var data = RandomNumberGenerator.GetBytes(1 << 20);
        buffer.CopyFromHost(0, data);
        var back = new byte[data.Length];
        buffer.CopyToHost(0, back);
        Assert.That(back, Is.EqualTo(data));
        buffer.Clear(100, 1000);
        buffer.CopyToHost(0, back);
        Assert.That(back.AsSpan(100, 1000).ToArray(), Is.All.EqualTo(0));
        var ex = Assert.Throws<CudaException>(() => device.Allocate(long.MaxValue / 2));
        Assert.That(ex!.ErrorName, Is.EqualTo("CUDA_ERROR_OUT_OF_MEMORY"));
        Assert.That(ex.Message, Does.Contain("cuMemAlloc_v2").And.Contain("CUDA_ERROR_OUT_OF_MEMORY"));
    }

    [TestCase(2, 2)]
    [TestCase(1, 1)]
    public void AnEncryptedModelLoadsToTheDeviceWithTheBytesOfTheCpuPath(int version, int streams)
    {
        RequireDevice();
        using var tmp = new TempDir();
        using var master = MasterKey.Generate(AeadAlgorithm.Aes256Gcm);
        using var signer = SigningKey.Generate();
        var tensors = DemoWorkloads.Tiny();
        CryptoTensorsWriter.Write(tmp.File("m"), tensors, new WriterOptions { MasterKey = master, SigningKey = signer, FormatVersion = version, ChunkSize = 1 << 16 });
        using var r = CryptoTensorsReader.Open(tmp.File("m"), TestModels.Keys(master, signer));
        using var device = CudaDevice.Open();
        using var model = DeviceLoader.Load(r, device, new DeviceLoadOptions { Streams = streams, Slots = 3, SlotBytes = 1 << 16 });
        foreach (var t in r.Tensors)
        {
            var back = new byte[t.ByteLength];
            model.CopyToHost(t.Name, back);
            Assert.That(SHA256.HashData(back), Is.EqualTo(SHA256.HashData(r.ReadTensor(t.Name))), t.Name);
            Assert.That(model.DevicePointerOf(t.Name) % 256, Is.Zero);
        }
        Assert.That(model.Staging.RingBytes, Is.EqualTo(3L << 16));

        // DLPack hand-off of device memory: kDLCUDA, the tensor's own address, valid until the deleter runs.
        var name = r.Tensors.OrderByDescending(x => x.ByteLength).First().Name;
        var export = model.ToDLPack(name);
        unsafe
        {
            var m = (Gpu.Interop.DLPack.DLManagedTensorVersioned*)export;
            Assert.That(m->Tensor.Device, Is.EqualTo(Gpu.Interop.DLPack.DLDevice.Cuda(device.Ordinal)));
            Assert.That((ulong)(nint)m->Tensor.Data, Is.EqualTo(model.DevicePointerOf(name)));
        }
        Gpu.Interop.DLPack.DLPackExporter.InvokeDeleter(export);
    }

    [Test]
    public void ReadIntoDeviceMemoryOnTheCallersStreamAndATamperedFileLeavesZeros()
    {
        RequireDevice();
        using var tmp = new TempDir();
        using var master = MasterKey.Generate(AeadAlgorithm.Aes256Gcm);
        using var signer = SigningKey.Generate();
        var tensors = DemoWorkloads.Tiny();
        CryptoTensorsWriter.Write(tmp.File("m"), tensors, new WriterOptions { MasterKey = master, SigningKey = signer, ChunkSize = 4096 });
        using var r = CryptoTensorsReader.Open(tmp.File("m"), TestModels.Keys(master, signer));
        using var device = CudaDevice.Open();
        using var stream = device.CreateStream();
        using var ring = StagingRing.Allocate(2, 4096);
        var t = r.Tensors.OrderByDescending(x => x.ByteLength).First();
        using var buffer = device.Allocate(t.ByteLength);
        r.ReadInto(t.Name, (IntPtr)buffer.DevicePointer, t.ByteLength, stream, ring);
        var back = new byte[t.ByteLength];
        buffer.CopyToHost(0, back);
        Assert.That(back, Is.EqualTo(r.ReadTensor(t.Name)));

        r.Header.TryGetTensor(t.Name, out var info);
        var at = r.Header.DataStart + (long)info.Begin + 5000;
        using (var f = new FileStream(tmp.File("m"), FileMode.Open, FileAccess.ReadWrite, FileShare.ReadWrite))
        {
            f.Position = at;
            var b = f.ReadByte();
            f.Position = at;
            f.WriteByte((byte)(b ^ 0x40));
        }
        var ex = Assert.Throws<DecryptionException>(() => r.ReadInto(t.Name, (IntPtr)buffer.DevicePointer, t.ByteLength, stream, ring));
        Assert.That(ex!.Tensor, Is.EqualTo(t.Name));
        buffer.CopyToHost(0, back);
        Assert.That(back, Is.All.EqualTo(0), "a refused load leaves zeros on the device");
    }
}
