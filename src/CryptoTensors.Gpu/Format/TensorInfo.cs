namespace CryptoTensors.Gpu.Format;

/// <summary>One tensor entry of a safetensors header: name, dtype, shape and its byte range in the data section.</summary>
public sealed class TensorInfo
{
    internal TensorInfo(string name, Dtype dtype, ulong[] shape, ulong begin, ulong end)
    {
        Name = name;
        Dtype = dtype;
        ShapeU64 = shape;
        Begin = begin;
        End = end;
    }

    /// <summary>The tensor name.</summary>
    public string Name { get; }

    /// <summary>The element type.</summary>
    public Dtype Dtype { get; }

    internal ulong[] ShapeU64 { get; }

    /// <summary>Where the name lies, still escaped, in the header it was parsed from (not canonical when unknown).</summary>
    internal RawString RawName { get; init; }

    /// <summary>The shape (empty for a scalar).</summary>
    public IReadOnlyList<ulong> Shape => ShapeU64;

    /// <summary>Start of the tensor's bytes, relative to the data section.</summary>
    public ulong Begin { get; }

    /// <summary>End (exclusive) of the tensor's bytes, relative to the data section.</summary>
    public ulong End { get; }

    /// <summary>Byte length (ciphertext length equals plaintext length).</summary>
    public long ByteLength => (long)(End - Begin);

    /// <inheritdoc />
    public override string ToString() => $"{Name} {Dtype.Name()}[{string.Join(',', ShapeU64)}] @[{Begin},{End})";
}
