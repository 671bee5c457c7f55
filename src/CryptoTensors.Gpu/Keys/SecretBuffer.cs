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
        CreatedHook.Value?.Invoke(this);
    }

    /// <summary>
    /// Tests only: called with every buffer created in this async flow (thread-pool work it starts included), so a test
    /// can obtain the data keys a reader or writer unwraps or generates and check they are zeroed once it is disposed.
    /// </summary>
    internal static readonly AsyncLocal<Action<SecretBuffer>?> CreatedHook = new();

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
        // Marked first: a concurrent Span getter then fails instead of handing out bytes being zeroed.
        Volatile.Write(ref _disposed, true);
        CryptographicOperations.ZeroMemory(_bytes);
    }

    public override string ToString() => $"SecretBuffer({_bytes.Length} bytes)";
}
