using CryptoTensors.Gpu.Format;
using CryptoTensors.Gpu.Keys;
using CryptoTensors.Gpu.Reading;
using CryptoTensors.Gpu.Writing;

namespace CryptoTensors.Gpu.Tests.Interop;

/// <summary>An encrypted, signed, chunked file with one tensor of every dtype (plus a scalar and an empty tensor), open for reading.</summary>
internal sealed class EncryptedTestModel : IDisposable
{
    private readonly TempDir _dir = new();
    private readonly MasterKey _master = MasterKey.Generate();
    private readonly SigningKey _signer = SigningKey.Generate();

    public EncryptedTestModel(IEnumerable<TensorSource>? extra = null)
    {
        Sources = TestModels.EveryDtype();
        Sources.Add(TestModels.Tensor("cube", Dtype.F32, [2, 3, 4], 7));
        if (extra is not null) Sources.AddRange(extra);
        CryptoTensorsWriter.Write(_dir.File("m"), Sources, new WriterOptions { MasterKey = _master, SigningKey = _signer, ChunkSize = 16 });
        Reader = CryptoTensorsReader.Open(_dir.File("m"), TestModels.Keys(_master, _signer));
    }

    public List<TensorSource> Sources { get; }

    public CryptoTensorsReader Reader { get; }

    public void Dispose()
    {
        Reader.Dispose();
        _master.Dispose();
        _signer.Dispose();
        _dir.Dispose();
    }
}
