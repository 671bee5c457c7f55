using System.Runtime.InteropServices;
using CryptoTensors.Gpu.Format;
using CryptoTensors.Gpu.Interop.DLPack;

namespace CryptoTensors.Gpu.Tests.Interop;

public unsafe class DLPackExporterTests
{
    /// <summary>Counts its disposals, as the owner of an export.</summary>
    internal sealed class CountingOwner(bool throwOnDispose = false) : IDisposable
    {
        private int _disposals;

        public int Disposals => Volatile.Read(ref _disposals);

        public void Dispose()
        {
            Interlocked.Increment(ref _disposals);
            if (throwOnDispose) throw new InvalidOperationException("owner failed");
        }
    }

    private void* _memory;

    [SetUp]
    public void Allocate() => _memory = NativeMemory.AlignedAlloc(4096, 256);

    [TearDown]
    public void Free() => NativeMemory.AlignedFree(_memory);

    [Test]
    public void TheExportDescribesTheMemoryField()
    {
        var owner = new CountingOwner();
        var export = DLPackExporter.Export((IntPtr)_memory, DLDevice.Cuda(1), Dtype.BF16, [2, 3, 4], readOnly: true, owner);
        var m = (DLManagedTensorVersioned*)export;
        try
        {
            Assert.Multiple(() =>
            {
                Assert.That(m->Version, Is.EqualTo(new DLPackVersion(1, 1)));
                Assert.That((IntPtr)m->ManagerContext, Is.EqualTo(export), "the allocation is its own manager context");
                Assert.That(m->Deleter is not null);
                Assert.That(m->Flags, Is.EqualTo(DLPackFlags.ReadOnly));
                Assert.That((IntPtr)m->Tensor.Data, Is.EqualTo((IntPtr)_memory));
                Assert.That(m->Tensor.Device, Is.EqualTo(new DLDevice(DLDeviceType.Cuda, 1)));
                Assert.That(m->Tensor.NDim, Is.EqualTo(3));
                Assert.That(m->Tensor.DType, Is.EqualTo(new DLDataType(DLDataTypeCode.Bfloat, 16, 1)));
                Assert.That(new ReadOnlySpan<long>(m->Tensor.Shape, 3).ToArray(), Is.EqualTo(new long[] { 2, 3, 4 }));
                Assert.That(new ReadOnlySpan<long>(m->Tensor.Strides, 3).ToArray(), Is.EqualTo(new long[] { 12, 4, 1 }));
                Assert.That(m->Tensor.ByteOffset, Is.Zero);
                // Shape and strides live in the same allocation, right after the struct and its owner handle.
                Assert.That((byte*)m->Tensor.Shape - (byte*)m, Is.InRange(sizeof(DLManagedTensorVersioned), 128));
                Assert.That(m->Tensor.Strides - m->Tensor.Shape, Is.EqualTo(3));
                Assert.That(owner.Disposals, Is.Zero);
                Assert.That(DLPackExporter.IsLive(export));
            });
        }
        finally
        {
            DLPackExporter.InvokeDeleter(export);
        }
    }

    [Test]
    public void TheDeleterRunsOnceThroughItsFunctionPointer()
    {
        var owner = new CountingOwner();
        var export = DLPackExporter.Export((IntPtr)_memory, DLDevice.Cpu, Dtype.F32, [16], readOnly: false, owner);
        var m = (DLManagedTensorVersioned*)export;
        Assert.That(m->Flags, Is.EqualTo(DLPackFlags.None));
        var deleter = m->Deleter;

        deleter(m);
        Assert.That(owner.Disposals, Is.EqualTo(1), "the owner is released");
        Assert.That(DLPackExporter.IsLive(export), Is.False, "the allocation is freed");

        deleter(m); // a consumer bug: ignored, the freed block is not read
        deleter(null);
        Assert.That(owner.Disposals, Is.EqualTo(1));
    }

    [Test]
    public void TheDeleterMayRunOnAnotherThread()
    {
        var owner = new CountingOwner();
        var export = DLPackExporter.Export((IntPtr)_memory, DLDevice.Cpu, Dtype.U8, [4096], readOnly: false, owner);
        var thread = new Thread(() => DLPackExporter.InvokeDeleter(export));
        thread.Start();
        thread.Join();
        Assert.That(owner.Disposals, Is.EqualTo(1));
        Assert.That(DLPackExporter.IsLive(export), Is.False);
    }

    [Test]
    public void ConcurrentDeletesReleaseOnce()
    {
        for (var round = 0; round < 50; round++)
        {
            var owner = new CountingOwner();
            var export = DLPackExporter.Export((IntPtr)_memory, DLDevice.Cpu, Dtype.U8, [8], readOnly: false, owner);
            var deleter = ((DLManagedTensorVersioned*)export)->Deleter;
            Parallel.For(0, 4, _ => deleter((DLManagedTensorVersioned*)export));
            Assert.That(owner.Disposals, Is.EqualTo(1));
        }
    }

    [Test]
    public void AnOwnerThatThrowsDoesNotEscapeTheDeleter()
    {
        var owner = new CountingOwner(throwOnDispose: true);
        var export = DLPackExporter.Export((IntPtr)_memory, DLDevice.Cpu, Dtype.U8, [1], readOnly: false, owner);
        DLPackExporter.InvokeDeleter(export);
        Assert.That(owner.Disposals, Is.EqualTo(1));
        Assert.That(DLPackExporter.IsLive(export), Is.False);
    }

    [Test]
    public void AScalarHasNoShapeOrStrides()
    {
        var export = DLPackExporter.Export((IntPtr)_memory, DLDevice.Cpu, Dtype.F64, [], readOnly: false, owner: null);
        var m = (DLManagedTensorVersioned*)export;
        Assert.That(m->Tensor.NDim, Is.Zero);
        Assert.That((IntPtr)m->Tensor.Shape, Is.EqualTo(IntPtr.Zero));
        Assert.That((IntPtr)m->Tensor.Strides, Is.EqualTo(IntPtr.Zero));
        Assert.That((IntPtr)m->Tensor.Data, Is.EqualTo((IntPtr)_memory));
        DLPackExporter.InvokeDeleter(export);
        Assert.That(DLPackExporter.IsLive(export), Is.False);
    }

    [Test]
    public void AnEmptyTensorHasNullDataAndStillItsStrides()
    {
        var export = DLPackExporter.Export((IntPtr)_memory, DLDevice.Cpu, Dtype.F32, [0, 4], readOnly: false, owner: null);
        var m = (DLManagedTensorVersioned*)export;
        Assert.That((IntPtr)m->Tensor.Data, Is.EqualTo(IntPtr.Zero), "DLPack asks for NULL data when there are no elements");
        Assert.That(new ReadOnlySpan<long>(m->Tensor.Strides, 2).ToArray(), Is.EqualTo(new long[] { 4, 1 }));
        DLPackExporter.InvokeDeleter(export);

        var empty = DLPackExporter.Export(IntPtr.Zero, DLDevice.Cpu, Dtype.F32, [3, 0], readOnly: false, owner: null);
        Assert.That(new ReadOnlySpan<long>(((DLManagedTensorVersioned*)empty)->Tensor.Strides, 2).ToArray(), Is.EqualTo(new long[] { 0, 1 }));
        DLPackExporter.InvokeDeleter(empty);
    }

    [Test]
    public void InvalidShapesAreRefusedAndTheOwnerStaysWithTheCaller()
    {
        var owner = new CountingOwner();
        Assert.Throws<ArgumentOutOfRangeException>(() => DLPackExporter.Export((IntPtr)_memory, DLDevice.Cpu, Dtype.U8, [2, -1], false, owner));
        Assert.Throws<ArgumentException>(() => DLPackExporter.Export(IntPtr.Zero, DLDevice.Cpu, Dtype.U8, [2], false, owner));
        var tooMany = Assert.Throws<MalformedFileException>(() => DLPackExporter.Export((IntPtr)_memory, DLDevice.Cpu, Dtype.U8, [1L << 40, 1L << 40], false, owner));
        Assert.That(tooMany!.Code, Is.EqualTo(ErrorCode.ValidationOverflow));
        var stride = Assert.Throws<MalformedFileException>(() => DLPackExporter.Export((IntPtr)_memory, DLDevice.Cpu, Dtype.U8, [0, 1L << 62, 4], false, owner));
        Assert.That(stride!.Code, Is.EqualTo(ErrorCode.ValidationOverflow), "no element, but the outer stride does not fit int64_t");
        var dtype = Assert.Throws<MalformedFileException>(() => DLPackExporter.Export((IntPtr)_memory, DLDevice.Cpu, (Dtype)77, [1], false, owner));
        Assert.That(dtype!.Code, Is.EqualTo(ErrorCode.UnknownDtype));
        Assert.That(owner.Disposals, Is.Zero);
    }

    [Test]
    public void InvokingTheDeleterOfNothingDoesNothing() => Assert.DoesNotThrow(() => DLPackExporter.InvokeDeleter(IntPtr.Zero));
}
