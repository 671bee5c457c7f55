using CryptoTensors.Gpu.Interop.DLPack;
using CryptoTensors.Gpu.Loading.Native;
using CryptoTensors.Gpu.Reading;

namespace CryptoTensors.Gpu.Loading;

public sealed partial class LoadedModel
{
    private Dictionary<string, TensorDescriptor>? _descriptors;

    /// <summary>
    /// Lends one tensor to a DLPack consumer, without copying: a <c>DLManagedTensorVersioned*</c> over the tensor's
    /// bytes in <see cref="Buffer"/> (see <see cref="DLPackExporter.Export"/> for the ownership contract and
    /// <see cref="DLPackDtypes.ToDLDataType"/> for the dtypes, sub-byte ones included). Shape and strides are the
    /// tensor's, C-contiguous, in elements; <c>byte_offset</c> is 0 and the data pointer is 256-byte aligned.
    /// </summary>
    /// <remarks>
    /// Each export holds a reference on <see cref="Buffer"/>: the memory stays valid, even after this model is
    /// disposed, until the export's deleter runs, and the buffer goes back to its pool only when the model is disposed
    /// and every export is deleted. The memory is shared, not copied: writes through one export are seen by every other
    /// export, span and view of the tensor.
    /// </remarks>
    /// <param name="name">The tensor.</param>
    /// <param name="readOnly">Marks the export read-only (<see cref="DLPackFlags.ReadOnly"/>).</param>
    /// <param name="cudaHostWhenRegistered">Reports a CUDA-registered buffer (<see cref="PinnedHostBuffer.IsCudaRegistered"/>)
    /// as <see cref="DLDeviceType.CudaHost"/>; false always reports <see cref="DLDeviceType.Cpu"/>, which consumers that
    /// do not accept <c>kDLCUDAHost</c> (PyTorch's <c>from_dlpack</c>) need.</param>
    /// <returns>The export, owned by the caller until handed to a consumer.</returns>
    /// <exception cref="MalformedFileException"><see cref="ErrorCode.TensorNotFound"/>: not loaded;
    /// <see cref="ErrorCode.ValidationOverflow"/>: an extent above <see cref="long.MaxValue"/>.</exception>
    /// <exception cref="ObjectDisposedException">The model was disposed.</exception>
    public IntPtr ToDLPack(string name, bool readOnly = false, bool cudaHostWhenRegistered = true)
    {
        var tensor = DescriptorOf(name);
        var offset = OffsetOf(name);
        // Buffer.Pointer throws once the model is disposed, even while other exports hold the buffer.
        return DLPackExporter.ExportTensor(tensor, Buffer, () => Buffer.Pointer + (nint)offset,
            cudaHostWhenRegistered && Buffer.IsCudaRegistered ? DLDevice.CudaHost : DLDevice.Cpu, readOnly);
    }

    /// <summary>The descriptor of a loaded tensor.</summary>
    private TensorDescriptor DescriptorOf(string name)
    {
        var descriptors = LazyInitializer.EnsureInitialized(ref _descriptors, () => Tensors.ToDictionary(t => t.Name, StringComparer.Ordinal));
        return descriptors.TryGetValue(name, out var t) ? t : throw Errors.Create(ErrorCode.TensorNotFound, "tensor not loaded", tensor: name);
    }
}
