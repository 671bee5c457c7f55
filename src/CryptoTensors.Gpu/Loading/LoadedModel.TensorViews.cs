using System.Numerics.Tensors;
using CryptoTensors.Gpu.Format;

namespace CryptoTensors.Gpu.Loading;

public sealed partial class LoadedModel
{
    /// <summary>
    /// A writable <see cref="TensorSpan{T}"/> over a tensor's bytes in <see cref="Buffer"/>: no copy, lengths = the
    /// tensor's shape, C-contiguous. Like <see cref="GetSpan"/>, it must not be used after the model is disposed.
    /// </summary>
    /// <remarks>
    /// <typeparamref name="T"/> only needs the dtype's element size, so any same-sized reading is allowed: <see cref="Half"/>
    /// or <see cref="ushort"/> for F16, <see cref="ushort"/> for BF16 (.NET 10 has no bfloat16 type), <see cref="byte"/>
    /// for BOOL and the FP8 types, a pair of <see cref="float"/>s (or <see cref="ulong"/>) for C64. Views reach beyond
    /// 2^31 elements (the pointer constructors take native-sized lengths). A tensor span has no rank 0: a scalar is a
    /// one-element rank-1 view. Sub-byte dtypes (F4, F6_*) have no element type; use <see cref="GetSpan"/> or
    /// <see cref="PointerOf"/> for their packed bytes, or <see cref="ToDLPack"/>.
    /// </remarks>
    /// <exception cref="MalformedFileException"><see cref="ErrorCode.TensorNotFound"/>: not loaded;
    /// <see cref="ErrorCode.ElementSizeMismatch"/>: <typeparamref name="T"/> is not the size of the dtype's elements;
    /// <see cref="ErrorCode.ValidationOverflow"/>: an extent does not fit a native integer.</exception>
    /// <exception cref="ObjectDisposedException">The model was disposed.</exception>
    public TensorSpan<T> AsTensorSpan<T>(string name) where T : unmanaged
    {
        var (data, elements, lengths) = ViewOf<T>(name);
        unsafe { return new TensorSpan<T>((T*)data, elements, lengths, []); }
    }

    /// <summary>A read-only <see cref="ReadOnlyTensorSpan{T}"/> over a tensor's bytes; see <see cref="AsTensorSpan{T}"/>.</summary>
    /// <exception cref="MalformedFileException"><see cref="ErrorCode.TensorNotFound"/>, <see cref="ErrorCode.ElementSizeMismatch"/>
    /// or <see cref="ErrorCode.ValidationOverflow"/>, as for <see cref="AsTensorSpan{T}"/>.</exception>
    /// <exception cref="ObjectDisposedException">The model was disposed.</exception>
    public ReadOnlyTensorSpan<T> AsReadOnlyTensorSpan<T>(string name) where T : unmanaged
    {
        var (data, elements, lengths) = ViewOf<T>(name);
        unsafe { return new ReadOnlyTensorSpan<T>((T*)data, elements, lengths, []); }
    }

    /// <summary>Checks <typeparamref name="T"/> against the tensor's dtype; the view's start, element count and lengths.</summary>
    private unsafe (IntPtr Data, nint Elements, nint[] Lengths) ViewOf<T>(string name) where T : unmanaged
    {
        var tensor = DescriptorOf(name);
        var bits = tensor.Dtype.BitSize();
        if (bits != sizeof(T) * 8)
        {
            var dtype = tensor.Dtype.Name();
            var why = bits % 8 != 0
                ? $"{dtype} elements are {bits} bits, not whole bytes: no element type fits (use the packed bytes or DLPack)"
                : $"{dtype} elements are {bits / 8} bytes, {typeof(T).Name} is {sizeof(T)}";
            throw Errors.Create(ErrorCode.ElementSizeMismatch, why, tensor: name);
        }

        // TensorSpan has no rank 0: a scalar becomes a one-element vector. Strides are left to TensorSpan (C order).
        var lengths = new nint[Math.Max(tensor.Shape.Count, 1)];
        lengths[0] = 1;
        for (var i = 0; i < tensor.Shape.Count; i++)
        {
            lengths[i] = tensor.Shape[i] <= (ulong)nint.MaxValue ? (nint)tensor.Shape[i]
                : throw Errors.Create(ErrorCode.ValidationOverflow, $"extent {tensor.Shape[i]} does not fit a native integer", tensor: name);
        }
        var elements = (nint)(tensor.ByteLength / sizeof(T));
        return (PointerOf(name), elements, lengths);
    }
}
