using System.Runtime.InteropServices;

namespace CryptoTensors.Gpu.Loading.Native;

/// <summary>
/// A thread-safe pool of native pinned buffers (the shim's <c>ct_pool</c>). Disposing an acquired
/// <see cref="PinnedHostBuffer"/> returns it; up to <see cref="MaxCachedBytes"/> of returned buffers stay mapped, faulted
/// in, locked and registered, so a later <see cref="Acquire"/> of a similar size (the cached buffer may be at most twice
/// the request) reuses them without paying first-touch again. Reused contents are unspecified.
/// Disposing the pool frees the cached buffers once every acquired buffer has been disposed.
/// </summary>
public sealed unsafe class PinnedMemoryPool : IDisposable
{
    private readonly PoolHandle _handle;
    private volatile bool _disposed; // acquired buffers keep _handle open after Dispose

    /// <summary>Creates a pool that keeps at most <paramref name="maxCachedBytes"/> of released buffers.</summary>
    /// <exception cref="DllNotFoundException">The native shim is not available.</exception>
    public PinnedMemoryPool(long maxCachedBytes, HostAllocationFlags flags = HostAllocationFlags.Default)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(maxCachedBytes);
        NativeMethods.EnsureAvailable();
        nint pool;
        var status = NativeMethods.PoolCreate((nuint)maxCachedBytes, (uint)flags, &pool);
        if (status != 0)
            throw NativeMethods.Failure(status, "Creating a pinned memory pool");
        _handle = new PoolHandle(pool);
        MaxCachedBytes = maxCachedBytes;
        Flags = flags;
    }

    /// <summary>Most bytes (page-rounded) of released buffers the pool keeps for reuse.</summary>
    public long MaxCachedBytes { get; }

    /// <summary>How the pool allocates new buffers.</summary>
    public HostAllocationFlags Flags { get; }

    /// <summary>A buffer of <paramref name="length"/> bytes: a cached one when one fits, else a new allocation.
    /// Dispose it to return it.</summary>
    /// <exception cref="ObjectDisposedException">The pool was disposed.</exception>
    /// <exception cref="InsufficientMemoryException">A new mapping failed.</exception>
    public PinnedHostBuffer Acquire(long length)
    {
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(length);
        var pool = AddRef();
        NativeMethods.HostBuffer native;
        var status = NativeMethods.PoolAcquire(pool, (nuint)length, &native);
        if (status != 0)
        {
            var failure = NativeMethods.Failure(status, $"Acquiring {length} bytes from the pinned memory pool");
            _handle.DangerousRelease();
            throw failure;
        }
        // The buffer releases the reference (and the memory, to the pool) when it is disposed.
        return PinnedHostBuffer.FromPool(native, _handle);
    }

    /// <summary>Current counters of the pool.</summary>
    /// <exception cref="ObjectDisposedException">The pool was disposed.</exception>
    public PinnedMemoryPoolStatistics GetStatistics()
    {
        NativeMethods.PoolStatistics stats;
        var pool = AddRef();
        try
        {
            var status = NativeMethods.PoolStats(pool, &stats);
            if (status != 0)
                throw NativeMethods.Failure(status, "Reading pool statistics");
        }
        finally
        {
            _handle.DangerousRelease();
        }
        return new PinnedMemoryPoolStatistics(
            (long)stats.BytesCached, (long)stats.BytesInUse, (long)stats.BuffersCached, (long)stats.BuffersInUse,
            (long)stats.Hits, (long)stats.Misses, (long)stats.Evictions);
    }

    /// <summary>Frees every cached (released) buffer now.</summary>
    /// <exception cref="ObjectDisposedException">The pool was disposed.</exception>
    public void Trim()
    {
        var pool = AddRef();
        try
        {
            var status = NativeMethods.PoolTrim(pool);
            if (status != 0)
                throw NativeMethods.Failure(status, "Trimming the pinned memory pool");
        }
        finally
        {
            _handle.DangerousRelease();
        }
    }

    /// <summary>Disposes the pool; its native state is destroyed once every acquired buffer has been disposed too.</summary>
    public void Dispose()
    {
        _disposed = true;
        _handle.Dispose();
    }

    /// <summary>Keeps the native pool alive until the matching <see cref="SafeHandle.DangerousRelease"/>.</summary>
    private nint AddRef()
    {
        ObjectDisposedException.ThrowIf(_disposed || _handle.IsClosed, this);
        var added = false;
        _handle.DangerousAddRef(ref added);
        return _handle.DangerousGetHandle();
    }

    private sealed class PoolHandle : SafeHandle
    {
        public PoolHandle(nint pool)
            : base(IntPtr.Zero, ownsHandle: true) => SetHandle(pool);

        public override bool IsInvalid => handle == IntPtr.Zero;

        // Runs only when the pool is disposed and no acquired buffer still holds a reference.
        protected override bool ReleaseHandle() => NativeMethods.PoolDestroy(handle) == 0;
    }
}

/// <summary>Counters of a <see cref="PinnedMemoryPool"/>.</summary>
/// <param name="BytesCached">Mapped bytes of released buffers kept for reuse.</param>
/// <param name="BytesInUse">Mapped bytes of acquired buffers.</param>
/// <param name="BuffersCached">Number of released buffers kept for reuse.</param>
/// <param name="BuffersInUse">Number of acquired buffers.</param>
/// <param name="Hits">Acquires served by a cached buffer.</param>
/// <param name="Misses">Acquires that allocated.</param>
/// <param name="Evictions">Buffers freed because the cache was full, or by <see cref="PinnedMemoryPool.Trim"/>.</param>
public readonly record struct PinnedMemoryPoolStatistics(
    long BytesCached, long BytesInUse, long BuffersCached, long BuffersInUse, long Hits, long Misses, long Evictions)
{
    /// <summary>All bytes the pool holds: <see cref="BytesCached"/> plus <see cref="BytesInUse"/>.</summary>
    public long BytesHeld => BytesCached + BytesInUse;
}
