using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;
using CryptoTensors.Gpu.Interop.DLPack;

namespace CryptoTensors.Gpu.Tests.Interop;

/// <summary>The C# structs match dlpack.h 1.1 byte for byte (x86-64 / aarch64 LP64).</summary>
public unsafe class DLPackLayoutTests
{
    [Test]
    public void StructSizesMatchTheHeader()
    {
        Assert.Multiple(() =>
        {
            Assert.That(Marshal.SizeOf<DLPackVersion>(), Is.EqualTo(8));
            Assert.That(Marshal.SizeOf<DLDevice>(), Is.EqualTo(8));
            Assert.That(Marshal.SizeOf<DLDataType>(), Is.EqualTo(4));
            Assert.That(Marshal.SizeOf<DLTensor>(), Is.EqualTo(48));
            Assert.That(Marshal.SizeOf<DLManagedTensorVersioned>(), Is.EqualTo(80));
            Assert.That(sizeof(DLPackVersion), Is.EqualTo(8));
            Assert.That(sizeof(DLDevice), Is.EqualTo(8));
            Assert.That(sizeof(DLDataType), Is.EqualTo(4));
            Assert.That(sizeof(DLTensor), Is.EqualTo(48));
            Assert.That(sizeof(DLManagedTensorVersioned), Is.EqualTo(80));
            Assert.That(sizeof(DLDeviceType), Is.EqualTo(4), "a C enum is an int");
            Assert.That(sizeof(DLDataTypeCode), Is.EqualTo(1), "stored as uint8_t code");
            Assert.That(sizeof(DLPackFlags), Is.EqualTo(8), "uint64_t flags");
        });
    }

    [TestCase(nameof(DLTensor.Data), 0)]
    [TestCase(nameof(DLTensor.Device), 8)]
    [TestCase(nameof(DLTensor.NDim), 16)]
    [TestCase(nameof(DLTensor.DType), 20)]
    [TestCase(nameof(DLTensor.Shape), 24)]
    [TestCase(nameof(DLTensor.Strides), 32)]
    [TestCase(nameof(DLTensor.ByteOffset), 40)]
    public void DLTensorFieldOffsets(string field, int offset)
        => Assert.That((int)Marshal.OffsetOf<DLTensor>(field), Is.EqualTo(offset));

    [TestCase(nameof(DLManagedTensorVersioned.Version), 0)]
    [TestCase(nameof(DLManagedTensorVersioned.ManagerContext), 8)]
    [TestCase(nameof(DLManagedTensorVersioned.Deleter), 16)]
    [TestCase(nameof(DLManagedTensorVersioned.Flags), 24)]
    [TestCase(nameof(DLManagedTensorVersioned.Tensor), 32)]
    public void DLManagedTensorVersionedFieldOffsets(string field, int offset)
        => Assert.That((int)Marshal.OffsetOf<DLManagedTensorVersioned>(field), Is.EqualTo(offset));

    [Test]
    public void FieldOffsetsAgreeWithTheCompiledLayout()
    {
        var m = default(DLManagedTensorVersioned);
        var b = (byte*)&m;
        long[] offsets =
        [
            (byte*)&m.Flags - b, (byte*)&m.Tensor.Data - b, (byte*)&m.Tensor.Device - b, (byte*)&m.Tensor.NDim - b,
            (byte*)&m.Tensor.DType - b, (byte*)&m.Tensor.Shape - b, (byte*)&m.Tensor.Strides - b, (byte*)&m.Tensor.ByteOffset - b,
        ];
        Assert.That(offsets, Is.EqualTo(new long[] { 24, 32, 40, 48, 52, 56, 64, 72 }));
    }

    [Test]
    public void SmallStructsLayTheirFieldsOutInHeaderOrder()
    {
        var type = new DLDataType((DLDataTypeCode)0x11, 0x22, 0x4433);
        Assert.That(Bytes(type), Is.EqualTo(new byte[] { 0x11, 0x22, 0x33, 0x44 }), "code, bits, lanes");
        var device = new DLDevice(DLDeviceType.CudaHost, 0x01020304);
        Assert.That(Bytes(device), Is.EqualTo(new byte[] { 3, 0, 0, 0, 4, 3, 2, 1 }), "device_type, device_id");
        var version = new DLPackVersion(1, 2);
        Assert.That(Bytes(version), Is.EqualTo(new byte[] { 1, 0, 0, 0, 2, 0, 0, 0 }), "major, minor");
    }

    private static byte[] Bytes<T>(T value) where T : unmanaged
        => new ReadOnlySpan<byte>(Unsafe.AsPointer(ref value), sizeof(T)).ToArray();

    [Test]
    public void DeviceTypeCodesAreTheHeaders()
    {
        var expected = new Dictionary<DLDeviceType, int>
        {
            [DLDeviceType.Cpu] = 1, [DLDeviceType.Cuda] = 2, [DLDeviceType.CudaHost] = 3, [DLDeviceType.OpenCL] = 4,
            [DLDeviceType.Vulkan] = 7, [DLDeviceType.Metal] = 8, [DLDeviceType.Vpi] = 9, [DLDeviceType.Rocm] = 10,
            [DLDeviceType.RocmHost] = 11, [DLDeviceType.ExtDev] = 12, [DLDeviceType.CudaManaged] = 13,
            [DLDeviceType.OneApi] = 14, [DLDeviceType.WebGpu] = 15, [DLDeviceType.Hexagon] = 16, [DLDeviceType.Maia] = 17,
            [DLDeviceType.Trn] = 18,
        };
        Assert.That(Enum.GetValues<DLDeviceType>(), Is.EquivalentTo(expected.Keys));
        foreach (var (type, code) in expected) Assert.That((int)type, Is.EqualTo(code), type.ToString());
    }

    [Test]
    public void DataTypeCodesAreTheHeaders()
    {
        // kDLInt .. kDLFloat4_e2m1fn, in header order: each is its position.
        DLDataTypeCode[] inHeaderOrder =
        [
            DLDataTypeCode.Int, DLDataTypeCode.UInt, DLDataTypeCode.Float, DLDataTypeCode.OpaqueHandle, DLDataTypeCode.Bfloat,
            DLDataTypeCode.Complex, DLDataTypeCode.Bool, DLDataTypeCode.Float8E3M4, DLDataTypeCode.Float8E4M3,
            DLDataTypeCode.Float8E4M3B11Fnuz, DLDataTypeCode.Float8E4M3Fn, DLDataTypeCode.Float8E4M3Fnuz,
            DLDataTypeCode.Float8E5M2, DLDataTypeCode.Float8E5M2Fnuz, DLDataTypeCode.Float8E8M0Fnu,
            DLDataTypeCode.Float6E2M3Fn, DLDataTypeCode.Float6E3M2Fn, DLDataTypeCode.Float4E2M1Fn,
        ];
        Assert.That(Enum.GetValues<DLDataTypeCode>(), Has.Length.EqualTo(18));
        for (var i = 0; i < inHeaderOrder.Length; i++) Assert.That((int)inHeaderOrder[i], Is.EqualTo(i), inHeaderOrder[i].ToString());
    }

    [Test]
    public void FlagBitsAndVersionAreTheHeaders()
    {
        Assert.That((ulong)DLPackFlags.ReadOnly, Is.EqualTo(1UL));
        Assert.That((ulong)DLPackFlags.IsCopied, Is.EqualTo(2UL));
        Assert.That((ulong)DLPackFlags.IsSubbyteTypePadded, Is.EqualTo(4UL));
        Assert.That(DLPackVersion.Current, Is.EqualTo(new DLPackVersion(1, 1)));
    }
}
