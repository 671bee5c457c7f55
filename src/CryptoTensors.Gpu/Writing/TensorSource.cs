using CryptoTensors.Gpu.Format;
using CryptoTensors.Gpu.Reading;

namespace CryptoTensors.Gpu.Writing;

/// <summary>
/// A tensor to write: name, dtype, shape and a way to read its plaintext bytes by range, so a writer can stream
/// any size through a bounded buffer.
/// </summary>
public abstract class TensorSource
{
    /// <summary>Creates a source.</summary>
    protected TensorSource(string name, Dtype dtype, IReadOnlyList<ulong> shape)
    {
        Name = name;
        Dtype = dtype;
        Shape = shape.ToArray();
        var err = dtype.TryByteSize(Shape.ToArray(), out var bytes);
        if (err is not null) throw Errors.Create(err.Value, $"shape {SafetensorsHeader.FormatShape(Shape)} is not valid for {dtype.Name()}", tensor: name, field: "shape");
        if (bytes > long.MaxValue) throw Errors.Create(ErrorCode.ValidationOverflow, "tensor too large", tensor: name);
        ByteLength = (long)bytes;
    }

    /// <summary>Tensor name.</summary>
    public string Name { get; }

    /// <summary>Element type.</summary>
    public Dtype Dtype { get; }

    /// <summary>Shape.</summary>
    public IReadOnlyList<ulong> Shape { get; }

    /// <summary>Plaintext byte length (shape × dtype size).</summary>
    public long ByteLength { get; }

    /// <summary>
    /// Fills <paramref name="destination"/> with the plaintext bytes starting at <paramref name="offset"/>. The writer
    /// calls it from several threads at once for distinct ranges: implementations must be thread-safe.
    /// </summary>
    public abstract void Read(long offset, Span<byte> destination);

    /// <summary>A tensor whose bytes are in memory (not copied; must stay unchanged until written).</summary>
    public static TensorSource FromMemory(string name, Dtype dtype, IReadOnlyList<ulong> shape, ReadOnlyMemory<byte> data)
        => new MemorySource(name, dtype, shape, data);

    /// <summary>A tensor of an open file, read by range (v2 chunks decrypted and authenticated per range; a v1 tensor decrypted once).</summary>
    public static TensorSource FromReader(CryptoTensorsReader reader, string name)
    {
        var d = reader.GetTensor(name);
        return new ReaderSource(reader, d);
    }

    private sealed class MemorySource : TensorSource
    {
        private readonly ReadOnlyMemory<byte> _data;

        public MemorySource(string name, Dtype dtype, IReadOnlyList<ulong> shape, ReadOnlyMemory<byte> data) : base(name, dtype, shape)
        {
            if (data.Length != ByteLength)
                throw Errors.Create(ErrorCode.TensorInvalidInfo, $"data is {data.Length} bytes but {dtype.Name()}{SafetensorsHeader.FormatShape(Shape)} needs {ByteLength}", tensor: name);
            _data = data;
        }

        public override void Read(long offset, Span<byte> destination) => _data.Span.Slice((int)offset, destination.Length).CopyTo(destination);
    }

    private sealed class ReaderSource(CryptoTensorsReader reader, TensorDescriptor d) : TensorSource(d.Name, d.Dtype, d.Shape)
    {
        private readonly Lock _gate = new();
        private byte[]? _wholeV1;
        private long _served;

        public override void Read(long offset, Span<byte> destination)
        {
            // Plain ranges and v2 chunks are read (and authenticated) by range; a v1 tensor has one tag, so it is
            // decrypted once and served from memory until every byte has been handed out.
            if (!d.IsEncrypted || reader.CryptoKeys?.ChunkSize is not null)
            {
                reader.ReadRange(Name, offset, destination);
                return;
            }
            lock (_gate)
            {
                _wholeV1 ??= reader.ReadTensor(Name);
                _wholeV1.AsSpan((int)offset, destination.Length).CopyTo(destination);
                _served += destination.Length;
                if (_served >= _wholeV1.Length)
                {
                    Array.Clear(_wholeV1);
                    _wholeV1 = null;
                    _served = 0;
                }
            }
        }
    }
}
