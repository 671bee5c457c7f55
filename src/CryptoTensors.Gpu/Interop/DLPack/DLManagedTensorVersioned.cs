using System.Runtime.InteropServices;

namespace CryptoTensors.Gpu.Interop.DLPack;

/// <summary>
/// <c>DLManagedTensorVersioned</c> of <c>dlpack.h</c> (80 bytes on 64-bit platforms): a <see cref="DLTensor"/> lent by
/// a producer. The consumer calls <see cref="Deleter"/> exactly once, with this struct's address, when it no longer
/// needs the tensor; that frees this struct too.
/// </summary>
[StructLayout(LayoutKind.Sequential)]
public unsafe struct DLManagedTensorVersioned
{
    /// <summary><c>version</c>: the layout this struct follows; only <see cref="Deleter"/> is safe to use on a major mismatch.</summary>
    public DLPackVersion Version;

    /// <summary><c>manager_ctx</c>: the producer's bookkeeping; opaque to consumers.</summary>
    public void* ManagerContext;

    /// <summary><c>deleter</c>: releases the producer's resources and this struct; may be <c>NULL</c>.</summary>
    public delegate* unmanaged[Cdecl]<DLManagedTensorVersioned*, void> Deleter;

    /// <summary><c>flags</c>.</summary>
    public DLPackFlags Flags;

    /// <summary><c>dl_tensor</c>: the tensor itself.</summary>
    public DLTensor Tensor;
}
