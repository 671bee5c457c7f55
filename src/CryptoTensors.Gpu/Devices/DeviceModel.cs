using CryptoTensors.Gpu.Devices.Cuda;
using CryptoTensors.Gpu.Reading;

namespace CryptoTensors.Gpu.Devices;

/// <summary>Tensors loaded into one device allocation at 256-byte-aligned offsets. Dispose frees the device memory.</summary>
public sealed class DeviceModel : IDisposable
{
    private readonly Dictionary<string, (long Offset, long Length)> _layout;

    internal DeviceModel(CudaDeviceBuffer buffer, IReadOnlyList<TensorDescriptor> tensors, Dictionary<string, (long Offset, long Length)> layout, StagingStatistics staging)
    {
        Buffer = buffer;
        Tensors = tensors;
        _layout = layout;
        Staging = staging;
    }

    /// <summary>The device allocation holding every tensor.</summary>
    public CudaDeviceBuffer Buffer { get; }

    /// <summary>The tensors, in load order.</summary>
    public IReadOnlyList<TensorDescriptor> Tensors { get; }

    /// <summary>What the load used on the host.</summary>
    public StagingStatistics Staging { get; }

    /// <summary>Offset of a tensor in <see cref="Buffer"/>.</summary>
    public long OffsetOf(string name) => Layout(name).Offset;

    /// <summary>Device address of a tensor's first byte.</summary>
    public ulong DevicePointerOf(string name) => Buffer.DevicePointer + (ulong)Layout(name).Offset;

    /// <summary>Copies a tensor back to host memory (for checks; synchronous).</summary>
    public void CopyToHost(string name, Span<byte> destination)
    {
        var (offset, length) = Layout(name);
        if (destination.Length != length)
            throw Errors.Create(ErrorCode.DestinationSize, $"destination is {destination.Length} bytes, tensor is {length}", tensor: name);
        Buffer.CopyToHost(offset, destination);
    }

    /// <summary>
    /// Lends one tensor to a DLPack consumer as <c>kDLCUDA</c> memory of this device, without copying (see
    /// <see cref="Interop.DLPack.DLPackExporter.Export"/> for the ownership contract). The export holds a reference on
    /// the device allocation: it stays valid after this model is disposed, until the export's deleter runs.
    /// </summary>
    /// <param name="name">The tensor.</param>
    /// <param name="readOnly">Marks the export read-only.</param>
    /// <returns>A <c>DLManagedTensorVersioned*</c>, owned by the caller until handed to a consumer.</returns>
    public IntPtr ToDLPack(string name, bool readOnly = false)
    {
        var tensor = Tensors.FirstOrDefault(t => t.Name == name) ?? throw Errors.Create(ErrorCode.TensorNotFound, "tensor not loaded", tensor: name);
        return Interop.DLPack.DLPackExporter.ExportTensor(tensor, Buffer, () => unchecked((IntPtr)(nint)DevicePointerOf(name)),
            Interop.DLPack.DLDevice.Cuda(Buffer.Device.Ordinal), readOnly);
    }

    private (long Offset, long Length) Layout(string name)
        => _layout.TryGetValue(name, out var l) ? l : throw Errors.Create(ErrorCode.TensorNotFound, "tensor not loaded", tensor: name);

    /// <summary>Frees the device memory.</summary>
    public void Dispose() => Buffer.Dispose();
}
