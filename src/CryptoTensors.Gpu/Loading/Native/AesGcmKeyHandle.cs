using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;

namespace CryptoTensors.Gpu.Loading.Native;

/// <summary>
/// Owns one <c>ctag_key</c> of <c>libctaesgcm.so</c>: the expanded AES key and GHASH key powers, in native memory
/// only. Releasing it zeroes that memory (<c>ctag_destroy</c>).
/// </summary>
internal sealed unsafe class AesGcmKeyHandle : SafeHandle
{
    /// <summary>An invalid handle; <see cref="Create"/> makes valid ones.</summary>
    internal AesGcmKeyHandle() : base(IntPtr.Zero, ownsHandle: true) { }

    /// <inheritdoc />
    public override bool IsInvalid => handle == IntPtr.Zero;

    /// <summary>Expands <paramref name="key"/> (16 or 32 bytes) in native memory; the key is read in place, never copied.</summary>
    /// <exception cref="InvalidOperationException">The library is unavailable or refused the key.</exception>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    internal static AesGcmKeyHandle Create(ReadOnlySpan<byte> key)
    {
        if (!AesGcmNativeMethods.Available)
            throw new InvalidOperationException($"{AesGcmNativeMethods.FileName} is unavailable: {AesGcmNativeMethods.LoadError}");
        var result = new AesGcmKeyHandle();
        nint context = 0;
        int status;
        fixed (byte* k = key)
            status = AesGcmNativeMethods.Create(k, (nuint)key.Length, &context);
        if (status != 0 || context == 0)
        {
            result.SetHandleAsInvalid();
            throw new InvalidOperationException($"ctag_create failed with status {status}");
        }
        result.SetHandle(context);
        return result;
    }

    /// <summary>
    /// Expands <paramref name="key"/> (16 or 32 bytes) into this context in place of its key, without allocating. Not
    /// concurrently with any other use of the handle. On failure the context holds no key and refuses every call.
    /// </summary>
    /// <exception cref="InvalidOperationException">The library refused the key.</exception>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    internal void Rekey(ReadOnlySpan<byte> key)
    {
        var added = false;
        try
        {
            DangerousAddRef(ref added);
            int status;
            fixed (byte* k = key)
                status = AesGcmNativeMethods.Rekey(handle, k, (nuint)key.Length);
            if (status != 0) throw new InvalidOperationException($"ctag_rekey failed with status {status}");
        }
        finally
        {
            if (added) DangerousRelease();
        }
    }

    /// <inheritdoc />
    protected override bool ReleaseHandle()
    {
        AesGcmNativeMethods.Destroy(handle);
        return true;
    }
}
