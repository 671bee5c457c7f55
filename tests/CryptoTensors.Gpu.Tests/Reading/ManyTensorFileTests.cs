using CryptoTensors.Gpu.Format;
using CryptoTensors.Gpu.Keys;
using CryptoTensors.Gpu.Reading;
using CryptoTensors.Gpu.Writing;

namespace CryptoTensors.Gpu.Tests.Reading;

/// <summary>
/// Tests on a signed, encrypted file of 200 small tensors, made fresh for each test: a header of about 60 KB, above every
/// size from which opening works on other cores (the <c>__encryption__</c> parse, the early signature check).
/// </summary>
public abstract class ManyTensorFileTests
{
    private protected TempDir Tmp { get; private set; } = null!;
    private protected MasterKey Master { get; private set; } = null!;
    private protected SigningKey Signer { get; private set; } = null!;
    private protected string FilePath { get; private set; } = null!;
    private protected List<TensorSource> Sources { get; private set; } = null!;

    [SetUp]
    public void CreateFile()
    {
        Tmp = new TempDir();
        Master = MasterKey.Generate();
        Signer = SigningKey.Generate();
        FilePath = Tmp.File("many.ct");
        Sources = Enumerable.Range(0, 200).Select(i => TestModels.Tensor($"lora.{i}.A", Dtype.F32, [4, 4], i)).ToList();
        CryptoTensorsWriter.Write(FilePath, Sources, new WriterOptions { MasterKey = Master, SigningKey = Signer });
    }

    [TearDown]
    public void DeleteFile()
    {
        Master.Dispose();
        Signer.Dispose();
        Tmp.Dispose();
    }

    private protected CryptoTensorsReader Open() => CryptoTensorsReader.Open(FilePath, TestModels.Keys(Master, Signer));

    /// <summary>The file's header bytes, padding included.</summary>
    private protected byte[] Header()
    {
        var file = File.ReadAllBytes(FilePath);
        return file.AsSpan(8, (int)BitConverter.ToUInt64(file, 0)).ToArray();
    }

    /// <summary>The file's header as text, without its padding.</summary>
    private protected string HeaderText() => System.Text.Encoding.UTF8.GetString(Header()).TrimEnd(' ');

    /// <summary>Writes the file again with <paramref name="header"/> (padded with spaces to a multiple of 8) in place of its header.</summary>
    private protected void ReplaceHeader(byte[] header)
    {
        var file = File.ReadAllBytes(FilePath);
        var data = file.AsSpan(8 + (int)BitConverter.ToUInt64(file, 0)).ToArray();
        var padded = header.Concat(Enumerable.Repeat((byte)' ', (8 - header.Length % 8) % 8)).ToArray();
        File.WriteAllBytes(FilePath, [.. BitConverter.GetBytes((ulong)padded.Length), .. padded, .. data]);
    }
}
