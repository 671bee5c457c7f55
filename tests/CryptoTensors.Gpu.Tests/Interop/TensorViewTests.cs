using System.Numerics.Tensors;
using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;
using CryptoTensors.Gpu.Format;
using CryptoTensors.Gpu.Loading;

namespace CryptoTensors.Gpu.Tests.Interop;

public unsafe class TensorViewTests
{
    /// <summary>A complex64 element: two floats.</summary>
    [StructLayout(LayoutKind.Sequential)]
    private readonly record struct Complex64(float Real, float Imaginary);

    private EncryptedTestModel _file = null!;
    private LoadedModel _model = null!;

    [OneTimeSetUp]
    public void Load()
    {
        _file = new EncryptedTestModel();
        _model = ModelLoader.Load(_file.Reader);
    }

    [OneTimeTearDown]
    public void Unload()
    {
        _model.Dispose();
        _file.Dispose();
    }

    [Test]
    public void ViewsOfEveryWholeByteDtypeEqualTheDecryptedBytes()
    {
        AssertViews<bool>("t.bool");
        AssertViews<byte>("t.u8");
        AssertViews<sbyte>("t.i8");
        AssertViews<byte>("t.f8_e5m2");
        AssertViews<byte>("t.f8_e4m3");
        AssertViews<byte>("t.f8_e8m0");
        AssertViews<short>("t.i16");
        AssertViews<ushort>("t.u16");
        AssertViews<Half>("t.f16");
        AssertViews<ushort>("t.bf16");
        AssertViews<int>("t.i32");
        AssertViews<uint>("t.u32");
        AssertViews<float>("t.f32");
        AssertViews<Complex64>("t.c64");
        AssertViews<double>("t.f64");
        AssertViews<long>("t.i64");
        AssertViews<ulong>("t.u64");
        AssertViews<float>("cube");
        AssertViews<double>("scalar");
        AssertViews<float>("empty");
    }

    private void AssertViews<T>(string name) where T : unmanaged
    {
        var tensor = _model.Tensors.Single(t => t.Name == name);
        var want = _file.Reader.ReadTensor(name);
        var lengths = tensor.Shape.Count == 0 ? new nint[] { 1 } : tensor.Shape.Select(d => (nint)d).ToArray();

        var view = _model.AsReadOnlyTensorSpan<T>(name);
        Assert.That(view.Lengths.ToArray(), Is.EqualTo(lengths), name);
        Assert.That((long)view.FlattenedLength, Is.EqualTo((long)(want.Length / sizeof(T))), name);
        var flat = new T[view.FlattenedLength];
        view.FlattenTo(flat);
        Assert.That(MemoryMarshal.AsBytes(flat.AsSpan()).ToArray(), Is.EqualTo(want), name);
        if (view.IsEmpty) return;
        Assert.That((IntPtr)Unsafe.AsPointer(ref Unsafe.AsRef(in view.GetPinnableReference())), Is.EqualTo(_model.PointerOf(name)), "no copy: " + name);

        var writable = _model.AsTensorSpan<T>(name);
        Assert.That(writable.Lengths.ToArray(), Is.EqualTo(lengths), name);
        Assert.That((IntPtr)Unsafe.AsPointer(ref writable.GetPinnableReference()), Is.EqualTo(_model.PointerOf(name)), "no copy: " + name);
    }

    [Test]
    public void IndexingFollowsTheShapeInCOrder()
    {
        var want = MemoryMarshal.Cast<byte, int>(_file.Reader.ReadTensor("cube")).ToArray();
        var view = _model.AsReadOnlyTensorSpan<int>("cube"); // F32 read as its bit patterns
        for (var i = 0; i < 2; i++)
        for (var j = 0; j < 3; j++)
        for (var k = 0; k < 4; k++)
            Assert.That(view[i, j, k], Is.EqualTo(want[(i * 3 + j) * 4 + k]), $"[{i},{j},{k}]");
    }

    [Test]
    public void WritesThroughAViewLandInTheBuffer()
    {
        using var model = ModelLoader.Load(_file.Reader, options: new LoadOptions { Tensors = ["t.u32"] });
        var view = model.AsTensorSpan<uint>("t.u32");
        view[2, 4] = 0xDEADBEEF;
        Assert.That(BitConverter.ToUInt32(model.GetSpan("t.u32").Slice((2 * 5 + 4) * 4, 4)), Is.EqualTo(0xDEADBEEF));
    }

    [TestCase("t.f32", typeof(double))]
    [TestCase("t.f32", typeof(Half))]
    [TestCase("t.bf16", typeof(float))]
    [TestCase("t.u8", typeof(short))]
    [TestCase("t.f4", typeof(byte))]
    [TestCase("t.f6_e2m3", typeof(byte))]
    public void AnElementTypeOfTheWrongSizeIsATypedRefusal(string name, Type type)
    {
        var ex = Assert.Throws<MalformedFileException>(() => Refuse(name, type));
        Assert.That(ex!.Code, Is.EqualTo(ErrorCode.ElementSizeMismatch));
        Assert.That(ex.Tensor, Is.EqualTo(name));
        Assert.That(ex.Kind, Is.EqualTo(ErrorKind.Malformed));
    }

    private void Refuse(string name, Type type)
    {
        if (type == typeof(double)) _model.AsReadOnlyTensorSpan<double>(name);
        else if (type == typeof(Half)) _model.AsTensorSpan<Half>(name);
        else if (type == typeof(float)) _model.AsReadOnlyTensorSpan<float>(name);
        else if (type == typeof(short)) _model.AsTensorSpan<short>(name);
        else _model.AsReadOnlyTensorSpan<byte>(name);
    }

    [Test]
    public void ViewsOfUnknownTensorsAndDisposedModelsAreRefused()
    {
        var ex = Assert.Throws<MalformedFileException>(() => _model.AsTensorSpan<float>("nope"));
        Assert.That(ex!.Code, Is.EqualTo(ErrorCode.TensorNotFound));

        var model = ModelLoader.Load(_file.Reader, options: new LoadOptions { Tensors = ["t.f32"] });
        model.Dispose();
        Assert.Throws<ObjectDisposedException>(() => model.AsReadOnlyTensorSpan<float>("t.f32"));
    }
}
