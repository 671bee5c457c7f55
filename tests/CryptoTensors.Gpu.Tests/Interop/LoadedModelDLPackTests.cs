using CryptoTensors.Gpu.Format;
using CryptoTensors.Gpu.Interop.DLPack;
using CryptoTensors.Gpu.Loading;
using CryptoTensors.Gpu.Loading.Native;

namespace CryptoTensors.Gpu.Tests.Interop;

public unsafe class LoadedModelDLPackTests
{
    private EncryptedTestModel _file = null!;

    [OneTimeSetUp]
    public void Write() => _file = new EncryptedTestModel();

    [OneTimeTearDown]
    public void Remove() => _file.Dispose();

    private static DLManagedTensorVersioned* M(IntPtr export) => (DLManagedTensorVersioned*)export;

    private static byte[] DataOf(IntPtr export, long length)
        => length == 0 ? [] : new ReadOnlySpan<byte>(M(export)->Tensor.Data, checked((int)length)).ToArray();

    [Test]
    public void EveryTensorIsExportedOverTheDecryptedBytes()
    {
        using var model = ModelLoader.Load(_file.Reader);
        var device = model.Buffer.IsCudaRegistered ? DLDevice.CudaHost : DLDevice.Cpu;
        foreach (var t in model.Tensors)
        {
            var export = model.ToDLPack(t.Name);
            try
            {
                var m = M(export);
                var shape = t.Shape.Select(d => (long)d).ToArray();
                var strides = new long[shape.Length];
                for (long i = shape.Length - 1, s = 1; i >= 0; s *= shape[i], i--) strides[i] = s;
                Assert.Multiple(() =>
                {
                    Assert.That(m->Version, Is.EqualTo(DLPackVersion.Current), t.Name);
                    Assert.That(m->Flags, Is.EqualTo(DLPackFlags.None), t.Name);
                    Assert.That((IntPtr)m->Tensor.Data, Is.EqualTo(t.ByteLength == 0 ? IntPtr.Zero : model.PointerOf(t.Name)), t.Name);
                    Assert.That((long)m->Tensor.Data % 256, Is.Zero, t.Name);
                    Assert.That(m->Tensor.Device, Is.EqualTo(device), t.Name);
                    Assert.That(m->Tensor.DType, Is.EqualTo(t.Dtype.ToDLDataType()), t.Name);
                    Assert.That(m->Tensor.NDim, Is.EqualTo(shape.Length), t.Name);
                    Assert.That(shape.Length == 0 ? [] : new ReadOnlySpan<long>(m->Tensor.Shape, shape.Length).ToArray(), Is.EqualTo(shape), t.Name);
                    Assert.That(shape.Length == 0 ? [] : new ReadOnlySpan<long>(m->Tensor.Strides, shape.Length).ToArray(), Is.EqualTo(strides), t.Name);
                    Assert.That(m->Tensor.ByteOffset, Is.Zero, t.Name);
                    Assert.That(DataOf(export, t.ByteLength), Is.EqualTo(_file.Reader.ReadTensor(t.Name)), t.Name);
                });
            }
            finally
            {
                DLPackExporter.InvokeDeleter(export);
            }
        }
    }

    [Test]
    public void ReadOnlyAndDeviceChoicesAreHonoured()
    {
        using var model = ModelLoader.Load(_file.Reader);
        var export = model.ToDLPack("t.f32", readOnly: true, cudaHostWhenRegistered: false);
        Assert.That(M(export)->Flags, Is.EqualTo(DLPackFlags.ReadOnly));
        Assert.That(M(export)->Tensor.Device, Is.EqualTo(DLDevice.Cpu));
        DLPackExporter.InvokeDeleter(export);
    }

    [Test]
    public void ARegisteredBufferIsReportedAsCudaHost()
    {
        if (!PinnedHostBuffer.CudaDriverAvailable) Assert.Ignore("no CUDA driver: buffers are not registered");
        using var model = ModelLoader.Load(_file.Reader, options: new LoadOptions { RegisterWithCuda = true });
        if (!model.Buffer.IsCudaRegistered) Assert.Ignore("the buffer could not be registered with CUDA");
        var export = model.ToDLPack("t.f32");
        Assert.That(M(export)->Tensor.Device, Is.EqualTo(DLDevice.CudaHost));
        DLPackExporter.InvokeDeleter(export);
    }

    [Test]
    public void AnExportOutlivesTheDisposedModel()
    {
        var model = ModelLoader.Load(_file.Reader);
        var want = _file.Reader.ReadTensor("t.f64");
        var export = model.ToDLPack("t.f64");

        model.Dispose();
        Assert.That(model.Buffer.IsClosed, Is.False, "the export holds the buffer");
        Assert.That(DataOf(export, want.Length), Is.EqualTo(want), "the memory is still the tensor");
        Assert.Throws<ObjectDisposedException>(() => model.GetSpan("t.f64"));
        Assert.Throws<ObjectDisposedException>(() => model.ToDLPack("t.f64"), "no new export from a disposed model");

        DLPackExporter.InvokeDeleter(export);
        Assert.That(model.Buffer.IsClosed, "the last release returns the buffer");
        Assert.That(DLPackExporter.IsLive(export), Is.False);
    }

    [Test]
    public void TheBufferIsReturnedOnlyWhenTheModelAndEveryExportAreDone()
    {
        var model = ModelLoader.Load(_file.Reader);
        var first = model.ToDLPack("t.u8");
        var second = model.ToDLPack("cube");

        DLPackExporter.InvokeDeleter(first);
        Assert.That(model.Buffer.IsClosed, Is.False);
        Assert.That(model.GetSpan("cube").ToArray(), Is.EqualTo(_file.Reader.ReadTensor("cube")), "the model is still usable");

        model.Dispose();
        Assert.That(model.Buffer.IsClosed, Is.False, "the second export holds the buffer");
        DLPackExporter.InvokeDeleter(second);
        Assert.That(model.Buffer.IsClosed);

        DLPackExporter.InvokeDeleter(second); // a stray second delete changes nothing
        Assert.That(model.Buffer.IsClosed);
    }

    [Test]
    public void APooledBufferGoesBackToThePoolAfterTheLastExport()
    {
        if (!PinnedHostBuffer.NativeShimAvailable) Assert.Ignore("native shim not loadable: " + PinnedHostBuffer.NativeShimLoadError);
        using var pool = new PinnedMemoryPool(64 << 20);
        var model = ModelLoader.Load(_file.Reader, pool);
        var export = model.ToDLPack("t.bf16");
        model.Dispose();
        Assert.That(pool.GetStatistics().BuffersInUse, Is.EqualTo(1));
        DLPackExporter.InvokeDeleter(export);
        Assert.That(pool.GetStatistics().BuffersInUse, Is.Zero);
        Assert.That(pool.GetStatistics().BuffersCached, Is.EqualTo(1));
    }

    [Test]
    public void UnknownTensorsAreRefused()
    {
        using var model = ModelLoader.Load(_file.Reader, options: new LoadOptions { Tensors = ["t.f32"] });
        var ex = Assert.Throws<MalformedFileException>(() => model.ToDLPack("t.u8"));
        Assert.That(ex!.Code, Is.EqualTo(ErrorCode.TensorNotFound));
        Assert.That(ex.Tensor, Is.EqualTo("t.u8"));
    }

    [Test]
    public void AnExtentBeyondInt64IsATypedRefusal()
    {
        using var file = new EncryptedTestModel([TestModels.Tensor("huge", Dtype.F32, [1UL << 63, 0], 3)]);
        using var model = ModelLoader.Load(file.Reader, options: new LoadOptions { Tensors = ["huge"] });
        var ex = Assert.Throws<MalformedFileException>(() => model.ToDLPack("huge"));
        Assert.That(ex!.Code, Is.EqualTo(ErrorCode.ValidationOverflow));
        Assert.That(ex.Tensor, Is.EqualTo("huge"));
        var view = Assert.Throws<MalformedFileException>(() => model.AsReadOnlyTensorSpan<float>("huge"));
        Assert.That(view!.Code, Is.EqualTo(ErrorCode.ValidationOverflow));
        model.Dispose();
        Assert.That(model.Buffer.IsClosed, "a refused export holds nothing");
    }
}
