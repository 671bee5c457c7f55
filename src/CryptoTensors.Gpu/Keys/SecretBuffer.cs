using System.Security.Cryptography;

namespace CryptoTensors.Gpu.Keys;

/// <summary>
/// Key bytes in a pinned array (the GC never moves or copies it) that is zeroed on dispose.
/// </summary>
internal sealed class SecretBuffer : IDisposable
{
    private readonly byte[] _bytes;
    private bool _disposed;

    public SecretBuffer(int length)
    {
        _bytes = GC.AllocateArray<byte>(length, pinned: true);
        Observer.Value?.Created(this);
    }

    /// <summary>
    /// Tests only: told of every buffer created in this async flow (thread-pool work it starts included) and of each
    /// one's bytes just before they are zeroed, so a test can obtain the data keys a reader or writer unwraps or
    /// generates, look for them in output, and check they are zeroed once it is disposed.
    /// </summary>
    internal static readonly AsyncLocal<ISecretBufferObserver?> Observer = new();

    /// <summary>Tests only: the bytes, readable after <see cref="Dispose"/> (to check they were zeroed).</summary>
    internal ReadOnlySpan<byte> BytesForTests => _bytes;

    /// <summary>Whether <see cref="Dispose"/> ran.</summary>
    internal bool IsDisposed => Volatile.Read(ref _disposed);

    public static SecretBuffer CopyOf(ReadOnlySpan<byte> source)
    {
        var s = new SecretBuffer(source.Length);
        source.CopyTo(s._bytes);
        return s;
    }

    public static SecretBuffer Random(int length)
    {
        var s = new SecretBuffer(length);
        RandomNumberGenerator.Fill(s._bytes);
        return s;
    }

    public int Length => _bytes.Length;

    public Span<byte> Span
    {
        get
        {
            ObjectDisposedException.ThrowIf(_disposed, this);
            return _bytes;
        }
    }

    public Memory<byte> Memory
    {
        get
        {
            ObjectDisposedException.ThrowIf(_disposed, this);
            return _bytes;
        }
    }

    public void Dispose()
    {
        if (!Volatile.Read(ref _disposed)) Observer.Value?.Zeroing(this, _bytes);
        // Marked first: a concurrent Span getter then fails instead of handing out bytes being zeroed.
        Volatile.Write(ref _disposed, true);
        CryptographicOperations.ZeroMemory(_bytes);
    }

    public override string ToString() => $"SecretBuffer({_bytes.Length} bytes)";
}

/// <summary>Tests only: sees secret buffers created and their bytes before zeroing (<see cref="SecretBuffer.Observer"/>).</summary>
internal interface ISecretBufferObserver
{
    /// <summary>A buffer was created (still empty).</summary>
    void Created(SecretBuffer buffer);

    /// <summary>A buffer is about to be zeroed; <paramref name="bytes"/> are its key bytes.</summary>
    void Zeroing(SecretBuffer buffer, ReadOnlySpan<byte> bytes);
}
