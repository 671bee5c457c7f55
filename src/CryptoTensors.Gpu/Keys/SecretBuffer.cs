using System.Security.Cryptography;

namespace CryptoTensors.Gpu.Keys;

/// <summary>
/// Key bytes in a pinned array (the GC never moves or copies it) that is zeroed on dispose.
/// </summary>
internal sealed class SecretBuffer : IDisposable
{
    private readonly byte[] _bytes;
    private bool _disposed;

    public SecretBuffer(int length) => _bytes = GC.AllocateArray<byte>(length, pinned: true);

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
        CryptographicOperations.ZeroMemory(_bytes);
        _disposed = true;
    }

    public override string ToString() => $"SecretBuffer({_bytes.Length} bytes)";
}
