namespace CryptoTensors.Gpu.Loading.Native;

/// <summary>How <see cref="PinnedHostBuffer.Allocate"/> and <see cref="PinnedMemoryPool"/> prepare host memory
/// (the <c>CT_HOST_*</c> flags of native/include/ctshim.h).</summary>
[Flags]
public enum HostAllocationFlags : uint
{
    /// <summary>Map only; pages are faulted in on first use.</summary>
    None = 0,
    /// <summary>Let the kernel fault the range in at map time (<c>MAP_POPULATE</c>).</summary>
    Populate = 0x01,
    /// <summary>Write one byte per page after the huge page advice (skipped when <see cref="Lock"/> already faulted it in).</summary>
    Touch = 0x02,
    /// <summary><c>mlock</c> the range when <c>RLIMIT_MEMLOCK</c> allows; a refusal is reported by
    /// <see cref="PinnedHostBuffer.LockError"/>, not thrown.</summary>
    Lock = 0x04,
    /// <summary><c>madvise(MADV_HUGEPAGE)</c>; ranges of 2 MiB or more start on a 2 MiB boundary.</summary>
    HugePage = 0x08,
    /// <summary><c>cuMemHostRegister</c> the range (in device 0's primary context, portable) when the CUDA driver and a
    /// device are usable; failure is reported by <see cref="PinnedHostBuffer.IsCudaRegistered"/>, not thrown. The only
    /// flag that touches CUDA: it loads the driver, calls <c>cuInit</c> and holds a reference on the primary context
    /// while the range is registered (the caller's current context is left as it was). Ask for it only for memory that
    /// is copied to a GPU.</summary>
    CudaRegister = 0x10,
    /// <summary><see cref="Touch"/>, <see cref="Lock"/> and <see cref="HugePage"/>: no CUDA (add <see cref="CudaRegister"/> to register).</summary>
    Default = Touch | Lock | HugePage,
}
