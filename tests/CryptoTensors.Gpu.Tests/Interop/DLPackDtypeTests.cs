using CryptoTensors.Gpu.Format;
using CryptoTensors.Gpu.Interop.DLPack;

namespace CryptoTensors.Gpu.Tests.Interop;

public class DLPackDtypeTests
{
    [TestCase(Dtype.BOOL, DLDataTypeCode.Bool, 8)]
    [TestCase(Dtype.F4, DLDataTypeCode.Float4E2M1Fn, 4)]
    [TestCase(Dtype.F6_E2M3, DLDataTypeCode.Float6E2M3Fn, 6)]
    [TestCase(Dtype.F6_E3M2, DLDataTypeCode.Float6E3M2Fn, 6)]
    [TestCase(Dtype.U8, DLDataTypeCode.UInt, 8)]
    [TestCase(Dtype.I8, DLDataTypeCode.Int, 8)]
    [TestCase(Dtype.F8_E5M2, DLDataTypeCode.Float8E5M2, 8)]
    [TestCase(Dtype.F8_E4M3, DLDataTypeCode.Float8E4M3Fn, 8)]
    [TestCase(Dtype.F8_E8M0, DLDataTypeCode.Float8E8M0Fnu, 8)]
    [TestCase(Dtype.I16, DLDataTypeCode.Int, 16)]
    [TestCase(Dtype.U16, DLDataTypeCode.UInt, 16)]
    [TestCase(Dtype.F16, DLDataTypeCode.Float, 16)]
    [TestCase(Dtype.BF16, DLDataTypeCode.Bfloat, 16)]
    [TestCase(Dtype.I32, DLDataTypeCode.Int, 32)]
    [TestCase(Dtype.U32, DLDataTypeCode.UInt, 32)]
    [TestCase(Dtype.F32, DLDataTypeCode.Float, 32)]
    [TestCase(Dtype.C64, DLDataTypeCode.Complex, 64)]
    [TestCase(Dtype.F64, DLDataTypeCode.Float, 64)]
    [TestCase(Dtype.I64, DLDataTypeCode.Int, 64)]
    [TestCase(Dtype.U64, DLDataTypeCode.UInt, 64)]
    public void EveryDtypeHasItsDLPackType(Dtype dtype, DLDataTypeCode code, int bits)
    {
        Assert.That(dtype.ToDLDataType(), Is.EqualTo(new DLDataType(code, (byte)bits, 1)));
        Assert.That(bits, Is.EqualTo(dtype.BitSize()), "DLPack bits are the safetensors element bits");
    }

    [Test]
    public void TheTableCoversAllTwentyDtypesWithDistinctTypes()
    {
        Assert.That(Dtypes.All, Has.Count.EqualTo(20));
        var types = Dtypes.All.Select(d => d.ToDLDataType()).ToList();
        Assert.That(types, Is.Unique);
        Assert.That(types.Select(t => t.Lanes), Is.All.EqualTo(1));
    }

    [Test]
    public void AnUndefinedDtypeIsATypedRefusal()
    {
        var ex = Assert.Throws<MalformedFileException>(() => ((Dtype)99).ToDLDataType());
        Assert.That(ex!.Code, Is.EqualTo(ErrorCode.UnknownDtype));
    }
}
