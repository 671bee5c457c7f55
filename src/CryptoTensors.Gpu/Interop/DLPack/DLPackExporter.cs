using System.Collections.Concurrent;
using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;
using CryptoTensors.Gpu.Format;
using CryptoTensors.Gpu.Loading.Native;
using CryptoTensors.Gpu.Reading;

namespace CryptoTensors.Gpu.Interop.DLPack;

/// <summary>
/// Lends memory to DLPack consumers (PyTorch's <c>from_dlpack</c> through a <c>dltensor_versioned</c> capsule, CuPy,
/// JAX, native code) as <see cref="DLManagedTensorVersioned"/>s, without copying it.
/// </summary>
/// <remarks>
/// Each export is one native allocation holding the <see cref="DLManagedTensorVersioned"/>, its shape and its strides;
/// its <c>manager_ctx</c> points at that allocation, which also holds a GC handle to the owner that keeps the memory
/// valid. The deleter (an <c>[UnmanagedCallersOnly]</c> cdecl function) disposes the owner, frees the handle and the
/// allocation. It acts once per export: a second call with the same pointer is ignored without touching the freed
/// memory (the exporter keeps the set of live exports), so a consumer bug cannot free twice.
/// </remarks>
public static unsafe class DLPackExporter
{
    /// <summary>The fixed part of an export's allocation; the shape and then the strides (<c>int64_t[ndim]</c> each) follow.</summary>
    [StructLayout(LayoutKind.Sequential)]
    private struct ExportBlock
    {
        public DLManagedTensorVersioned Managed;
        public nint Owner; // GCHandle<IDisposable>, or 0 without an owner
    }

    private static readonly ConcurrentDictionary<nint, byte> LiveExports = new();

    /// <summary>
    /// Describes <paramref name="data"/> as a C-contiguous tensor and hands the description to the caller.
    /// </summary>
    /// <param name="data">The first byte. Ignored (exported as <c>NULL</c>, as DLPack asks) when the shape has no elements.</param>
    /// <param name="device">Where <paramref name="data"/> lives (<see cref="DLDevice.Cpu"/>, <see cref="DLDevice.CudaHost"/>,
    /// <see cref="DLDevice.Cuda"/>, ...).</param>
    /// <param name="dtype">The element type, mapped by <see cref="DLPackDtypes.ToDLDataType"/>.</param>
    /// <param name="shape">Extents in elements (empty for a scalar); the exported strides are the C-contiguous ones, in
    /// elements, written out explicitly.</param>
    /// <param name="readOnly">Sets <see cref="DLPackFlags.ReadOnly"/>: consumers must not write.</param>
    /// <param name="owner">What keeps <paramref name="data"/> valid (e.g. a lease on the buffer). It stays reachable until
    /// the deleter runs, which disposes it (exceptions from its <c>Dispose</c> are swallowed: they cannot cross into the
    /// consumer's native frame). When this method throws, the owner is left to the caller.</param>
    /// <returns>A <c>DLManagedTensorVersioned*</c> the caller now owns: it must be passed to its own deleter exactly once,
    /// by the caller (<see cref="InvokeDeleter"/>) or by a consumer it is handed to (e.g. wrapped in a PyCapsule named
    /// <c>dltensor_versioned</c>, whose consumer renames it and calls the deleter when done). Until then the memory and
    /// <paramref name="owner"/> stay alive; if it is never deleted, both leak.</returns>
    /// <exception cref="ArgumentOutOfRangeException">A negative extent.</exception>
    /// <exception cref="ArgumentException"><paramref name="data"/> is zero but the shape has elements.</exception>
    /// <exception cref="MalformedFileException"><see cref="ErrorCode.ValidationOverflow"/>: the element count or a stride
    /// does not fit 64 bits; <see cref="ErrorCode.UnknownDtype"/>: <paramref name="dtype"/> is not defined.</exception>
    public static IntPtr Export(IntPtr data, DLDevice device, Dtype dtype, ReadOnlySpan<long> shape, bool readOnly, IDisposable? owner)
        => ExportNamed(data, device, dtype, shape, readOnly, owner, tensor: null);

    /// <summary>Calls the deleter of an export the caller still owns (one it did not hand to a consumer). Zero is ignored.</summary>
    public static void InvokeDeleter(IntPtr managedTensor)
    {
        var managed = (DLManagedTensorVersioned*)managedTensor;
        if (managed is not null && managed->Deleter is not null) managed->Deleter(managed);
    }

    /// <summary>
    /// Exports a loaded tensor held in <paramref name="memory"/>: the export holds a lease on that handle (the memory
    /// outlives its owner's dispose until the deleter runs). <paramref name="address"/> is read after the lease is
    /// taken, so a disposed owner refuses the export.
    /// </summary>
    internal static IntPtr ExportTensor(TensorDescriptor tensor, SafeHandle memory, Func<IntPtr> address, DLDevice device, bool readOnly)
    {
        var shape = new long[tensor.Shape.Count];
        for (var i = 0; i < shape.Length; i++)
        {
            shape[i] = tensor.Shape[i] <= long.MaxValue ? (long)tensor.Shape[i]
                : throw Errors.Create(ErrorCode.ValidationOverflow, $"extent {tensor.Shape[i]} does not fit DLPack's int64_t", tensor: tensor.Name);
        }
        var lease = new SafeHandleLease(memory);
        try
        {
            return ExportNamed(address(), device, tensor.Dtype, shape, readOnly, lease, tensor.Name);
        }
        catch
        {
            lease.Dispose();
            throw;
        }
    }

    /// <summary><see cref="Export(IntPtr, DLDevice, Dtype, ReadOnlySpan{long}, bool, IDisposable?)"/>, naming
    /// <paramref name="tensor"/> in its errors.</summary>
    internal static IntPtr ExportNamed(IntPtr data, DLDevice device, Dtype dtype, ReadOnlySpan<long> shape, bool readOnly, IDisposable? owner, string? tensor)
    {
        var type = dtype.ToDLDataType();
        var ndim = shape.Length;
        var size = (nuint)sizeof(ExportBlock) + (nuint)ndim * 2 * sizeof(long);
        var block = (ExportBlock*)NativeMemory.AllocZeroed(size);
        var shapeCopy = (long*)(block + 1);
        var strides = shapeCopy + ndim;
        try
        {
            long elements = 1;
            for (var i = ndim - 1; i >= 0; i--)
            {
                ArgumentOutOfRangeException.ThrowIfNegative(shape[i], nameof(shape));
                shapeCopy[i] = shape[i];
                strides[i] = elements;
                if (!TryMultiply(elements, shape[i], out elements))
                    throw Errors.Create(ErrorCode.ValidationOverflow, $"shape [{string.Join(", ", shape.ToArray())}] has more elements or a larger stride than 64 bits hold", tensor: tensor);
            }
            if (elements > 0 && data == IntPtr.Zero)
                throw new ArgumentException("The data pointer is null but the shape has elements.", nameof(data));

            block->Managed = new DLManagedTensorVersioned
            {
                Version = DLPackVersion.Current,
                ManagerContext = block,
                Deleter = &Delete,
                Flags = readOnly ? DLPackFlags.ReadOnly : DLPackFlags.None,
                Tensor = new DLTensor
                {
                    Data = elements == 0 ? null : (void*)data,
                    Device = device,
                    NDim = ndim,
                    DType = type,
                    Shape = ndim == 0 ? null : shapeCopy,
                    Strides = ndim == 0 ? null : strides,
                    ByteOffset = 0,
                },
            };
            block->Owner = owner is null ? 0 : GCHandle<IDisposable>.ToIntPtr(new GCHandle<IDisposable>(owner));
        }
        catch
        {
            NativeMemory.Free(block);
            throw;
        }
        LiveExports.TryAdd((nint)block, 0);
        return (IntPtr)block;
    }

    /// <summary>Whether <paramref name="managedTensor"/> was exported here and not deleted yet (a test hook).</summary>
    internal static bool IsLive(IntPtr managedTensor) => LiveExports.ContainsKey(managedTensor);

    /// <summary>The deleter of every export: disposes the owner, frees the GC handle and the allocation, once.</summary>
    [UnmanagedCallersOnly(CallConvs = [typeof(CallConvCdecl)])]
    private static void Delete(DLManagedTensorVersioned* self)
    {
        if (self is null || !LiveExports.TryRemove((nint)self, out _)) return;
        var block = (ExportBlock*)self->ManagerContext;
        IDisposable? owner = null;
        if (block->Owner != 0)
        {
            var handle = GCHandle<IDisposable>.FromIntPtr(block->Owner);
            owner = handle.Target;
            handle.Dispose();
        }
        NativeMemory.Free(block);
        try
        {
            owner?.Dispose();
        }
        catch (Exception)
        {
            // An exception must not unwind into the consumer's native frame; the export itself is already gone.
        }
    }

    /// <summary>Multiplies two non-negative numbers; false when the product exceeds <see cref="long.MaxValue"/>.</summary>
    private static bool TryMultiply(long a, long b, out long product)
    {
        var high = Math.BigMul(a, b, out product);
        return high == 0 && product >= 0;
    }
}
