using System.Runtime.InteropServices;

namespace CryptoTensors.Gpu.Loading.Native;

/// <summary>
/// One reference on a <see cref="SafeHandle"/>: while the lease is held, disposing the handle's owner defers the
/// release of the handle (and of its memory) until the lease is disposed too.
/// </summary>
internal sealed class SafeHandleLease : IDisposable
{
    private readonly SafeHandle _handle;
    private int _released;

    /// <exception cref="ObjectDisposedException">The handle was already released.</exception>
    public SafeHandleLease(SafeHandle handle)
    {
        var added = false;
        handle.DangerousAddRef(ref added);
        _handle = handle;
    }

    /// <summary>Gives the reference back; later calls do nothing.</summary>
    public void Dispose()
    {
        if (Interlocked.Exchange(ref _released, 1) == 0) _handle.DangerousRelease();
    }
}
