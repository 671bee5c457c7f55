using System.Buffers;
using System.Runtime.InteropServices;

namespace CryptoTensors.Gpu.Loading.Native;

/// <summary>
/// Owns one block of page-aligned host memory: from the native shim (<see cref="Allocate"/>: mmap'd, pre-faulted, and
/// mlock'd when possible; CUDA-registered only when <see cref="HostAllocationFlags.CudaRegister"/> asks), from a <see cref="PinnedMemoryPool"/>, or from the managed fallback
/// (<see cref="AllocateManaged"/>). Disposing frees it or returns it to its pool. Spans and memories obtained from it
/// must not be used after disposal.
/// </summary>
public sealed unsafe class PinnedHostBuffer : SafeHandle
{
    private const int PageSize = 4096;

    private enum Origin { Native, Pooled, Managed }

    private NativeMethods.HostBuffer _native;
    private readonly Origin _origin;
    private readonly SafeHandle? _pool;
    private volatile bool _disposed; // a pin may keep the handle open after Dispose; the buffer still counts as disposed

    private PinnedHostBuffer(nint pointer, long length, Origin origin, in NativeMethods.HostBuffer native, SafeHandle? pool)
        : base(IntPtr.Zero, ownsHandle: true)
    {
        SetHandle(pointer);
        Length = length;
        _origin = origin;
        _native = native;
        _pool = pool;
    }

    /// <summary>Whether <c>libctshim.so</c> could be loaded. When <c>false</c>, <see cref="Allocate"/> and
    /// <see cref="PinnedMemoryPool"/> throw and callers should use <see cref="AllocateManaged"/>.</summary>
    public static bool NativeShimAvailable => NativeMethods.Available;

    /// <summary>Why the native shim could not be loaded (file names and loader messages), or <c>null</c> when it was.</summary>
    public static string? NativeShimLoadError => NativeMethods.LoadError;

    /// <summary>Whether the shim loaded and found a usable CUDA driver (<c>libcuda.so.1</c> or <c>CRYPTOTENSORS_CUDA_DRIVER</c>,
    /// <c>cuInit</c>, a device). Reading it loads the driver and calls <c>cuInit</c>: only for callers that want CUDA.</summary>
    public static bool CudaDriverAvailable => NativeMethods.Available && NativeMethods.CudaAvailable() != 0;

    /// <summary>Start of the buffer (page aligned).</summary>
    /// <exception cref="ObjectDisposedException">The buffer was disposed.</exception>
    public IntPtr Pointer
    {
        get
        {
            ObjectDisposedException.ThrowIf(IsDisposed, this);
            return handle;
        }
    }

    /// <summary>Usable length in bytes (as requested).</summary>
    public long Length { get; }

    /// <summary>Whether the pages are <c>mlock</c>ed.</summary>
    public bool IsLocked => _native.Locked != 0;

    /// <summary>The <c>errno</c> of a refused <c>mlock</c> (e.g. 12 ENOMEM for <c>RLIMIT_MEMLOCK</c>), 0 otherwise.</summary>
    public int LockError => _native.LockErrno;

    /// <summary>Whether the range is registered with the CUDA driver (<c>cuMemHostRegister</c>).</summary>
    public bool IsCudaRegistered => _native.CudaRegistered != 0;

    /// <summary>Whether the memory came from the native shim (directly or through a pool) rather than the managed fallback.</summary>
    public bool IsNative => _origin != Origin.Managed;

    /// <summary>Whether disposing returns the memory to a <see cref="PinnedMemoryPool"/>.</summary>
    public bool IsPooled => _origin == Origin.Pooled;

    /// <inheritdoc />
    public override bool IsInvalid => handle == IntPtr.Zero;

    private bool IsDisposed => _disposed || IsClosed;

    /// <summary>Allocates <paramref name="length"/> bytes through the native shim.</summary>
    /// <exception cref="DllNotFoundException">The shim is not available (<see cref="NativeShimAvailable"/> is false).</exception>
    /// <exception cref="InsufficientMemoryException">The mapping failed.</exception>
    public static PinnedHostBuffer Allocate(long length, HostAllocationFlags flags = HostAllocationFlags.Default)
    {
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(length);
        NativeMethods.EnsureAvailable();
        NativeMethods.HostBuffer native;
        var status = NativeMethods.HostAlloc((nuint)length, (uint)flags, &native);
        if (status != 0)
            throw NativeMethods.Failure(status, $"Allocating {length} bytes of host memory");
        return new PinnedHostBuffer(native.Ptr, length, Origin.Native, native, pool: null);
    }

    /// <summary>Managed fallback that needs no shim: page-aligned <see cref="NativeMemory.AlignedAlloc"/> with every page
    /// touched up front. Never locked or CUDA-registered.</summary>
    /// <exception cref="OutOfMemoryException">The allocation failed.</exception>
    public static PinnedHostBuffer AllocateManaged(long length)
    {
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(length);
        var pointer = (byte*)NativeMemory.AlignedAlloc((nuint)length, PageSize);
        for (long offset = 0; offset < length; offset += PageSize)
            pointer[offset] = 0;
        return new PinnedHostBuffer((nint)pointer, length, Origin.Managed, default, pool: null);
    }

    internal static PinnedHostBuffer FromPool(in NativeMethods.HostBuffer native, SafeHandle pool)
        => new((nint)native.Ptr, (long)native.Size, Origin.Pooled, native, pool);

    /// <summary>The whole buffer as a span.</summary>
    /// <exception cref="InvalidOperationException"><see cref="Length"/> exceeds <see cref="int.MaxValue"/>; use
    /// <see cref="AsSpan(long, int)"/>.</exception>
    public Span<byte> AsSpan()
        => Length <= int.MaxValue
            ? AsSpan(0, (int)Length)
            : throw new InvalidOperationException($"The buffer is {Length} bytes, more than a span can hold; take a range.");

    /// <summary><paramref name="length"/> bytes starting at <paramref name="offset"/> as a span.</summary>
    public Span<byte> AsSpan(long offset, int length)
    {
        ObjectDisposedException.ThrowIf(IsDisposed, this);
        CheckRange(offset, length);
        return new Span<byte>((byte*)handle + offset, length);
    }

    /// <summary>The whole buffer as a <see cref="Memory{T}"/>.</summary>
    /// <exception cref="InvalidOperationException"><see cref="Length"/> exceeds <see cref="int.MaxValue"/>.</exception>
    public Memory<byte> AsMemory()
        => Length <= int.MaxValue
            ? AsMemory(0, (int)Length)
            : throw new InvalidOperationException($"The buffer is {Length} bytes, more than a Memory<byte> can hold; take a range.");

    /// <summary><paramref name="length"/> bytes starting at <paramref name="offset"/> as a <see cref="Memory{T}"/>; pinning
    /// it keeps this buffer alive until the pin is released.</summary>
    public Memory<byte> AsMemory(long offset, int length)
    {
        ObjectDisposedException.ThrowIf(IsDisposed, this);
        CheckRange(offset, length);
        return new RangeManager(this, offset, length).Memory;
    }

    private void CheckRange(long offset, int length)
    {
        if (offset < 0 || length < 0 || offset > Length - length)
            throw new ArgumentOutOfRangeException(nameof(offset), $"Range [{offset}, +{length}) is outside the {Length}-byte buffer.");
    }

    /// <inheritdoc />
    protected override void Dispose(bool disposing)
    {
        _disposed = true;
        base.Dispose(disposing);
    }

    /// <inheritdoc />
    protected override bool ReleaseHandle()
    {
        switch (_origin)
        {
            case Origin.Managed:
                NativeMemory.AlignedFree((void*)handle);
                return true;
            case Origin.Native:
                fixed (NativeMethods.HostBuffer* native = &_native)
                    return NativeMethods.HostFree(native) == 0;
            default:
                int status;
                fixed (NativeMethods.HostBuffer* native = &_native)
                    status = NativeMethods.PoolRelease(_pool!.DangerousGetHandle(), native);
                _pool.DangerousRelease(); // taken by PinnedMemoryPool.Acquire
                return status == 0;
        }
    }

    private sealed class RangeManager(PinnedHostBuffer owner, long offset, int length) : MemoryManager<byte>
    {
        public override Span<byte> GetSpan() => owner.AsSpan(offset, length);

        public override MemoryHandle Pin(int elementIndex = 0)
        {
            ArgumentOutOfRangeException.ThrowIfNegative(elementIndex);
            ArgumentOutOfRangeException.ThrowIfGreaterThan(elementIndex, length);
            var added = false;
            owner.DangerousAddRef(ref added);
            return new MemoryHandle((byte*)owner.DangerousGetHandle() + offset + elementIndex, default, this);
        }

        public override void Unpin() => owner.DangerousRelease();

        protected override void Dispose(bool disposing)
        {
        }
    }
}
