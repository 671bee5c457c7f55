using System.Runtime.CompilerServices;
using System.Security.Cryptography;

namespace CryptoTensors.Gpu.Crypto;

/// <summary>
/// One keyed AEAD instance: AES-GCM on the BCL's <see cref="AesGcm"/> or on the accelerated ipsec-mb backend (see
/// <see cref="AeadBackend"/>, chosen at construction), or the BCL's <see cref="ChaCha20Poly1305"/>. 12-byte nonces,
/// 16-byte tags, empty associated data as the format uses it (the primitive accepts associated data for tests).
/// Not thread-safe: use one instance per thread. Decryption works in place (same buffer for input and output).
/// </summary>
public sealed class AeadCipher : IDisposable
{
    private readonly IpsecMbAesGcm? _ipsec;
    private readonly AesGcm? _aes;
    private readonly ChaCha20Poly1305? _chacha;

    /// <summary>Creates a cipher for <paramref name="key"/> on <see cref="AeadBackends.Default"/>; the key length must be the algorithm's.</summary>
    public AeadCipher(AeadAlgorithm algorithm, ReadOnlySpan<byte> key) : this(algorithm, key, AeadBackends.Default) { }

    /// <summary>
    /// Creates a cipher for <paramref name="key"/> on <paramref name="backend"/> (AES-GCM only; ChaCha20-Poly1305
    /// always uses the BCL). The key is not copied into managed memory by the ipsec-mb backend, whose expanded key is
    /// zeroed on <see cref="Dispose"/>.
    /// </summary>
    /// <exception cref="CryptoTensorsException">A wrong key length, or <see cref="AeadBackend.IpsecMb"/> requested where it is unavailable.</exception>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public AeadCipher(AeadAlgorithm algorithm, ReadOnlySpan<byte> key, AeadBackend backend)
    {
        RequireKeySize(algorithm, key);
        Algorithm = algorithm;
        Backend = AeadBackends.Resolve(algorithm, backend);
        if (algorithm == AeadAlgorithm.ChaCha20Poly1305)
        {
            if (!ChaCha20Poly1305.IsSupported)
                throw Errors.Create(ErrorCode.UnsupportedAlgorithm, "ChaCha20-Poly1305 is not supported on this platform");
            _chacha = new ChaCha20Poly1305(key);
        }
        else if (Backend == AeadBackend.IpsecMb)
        {
            _ipsec = IpsecMbAesGcm.Create(key);
        }
        else
        {
            _aes = new AesGcm(key, AeadAlgorithms.TagSize);
        }
    }

    /// <summary>Refuses a key whose length is not <paramref name="algorithm"/>'s (<see cref="ErrorCode.InvalidKey"/>).</summary>
    private static void RequireKeySize(AeadAlgorithm algorithm, ReadOnlySpan<byte> key)
    {
        if (key.Length != algorithm.KeySize())
            throw Errors.Create(ErrorCode.InvalidKey, $"invalid key length: expected {algorithm.KeySize()} bytes for {algorithm.CanonicalName()}, got {key.Length}");
    }

    /// <summary>The algorithm.</summary>
    public AeadAlgorithm Algorithm { get; }

    /// <summary>The backend in use: <see cref="AeadBackend.Bcl"/> or <see cref="AeadBackend.IpsecMb"/>, never <see cref="AeadBackend.Auto"/>.</summary>
    public AeadBackend Backend { get; }

    /// <summary>Seals <paramref name="plaintext"/> into <paramref name="ciphertext"/> (same length) and <paramref name="tag"/>.</summary>
    public void Encrypt(ReadOnlySpan<byte> nonce, ReadOnlySpan<byte> plaintext, Span<byte> ciphertext, Span<byte> tag,
        ReadOnlySpan<byte> associatedData = default)
    {
        if (_ipsec is not null) _ipsec.Encrypt(nonce, plaintext, ciphertext, tag, associatedData);
        else if (_aes is not null) _aes.Encrypt(nonce, plaintext, ciphertext, tag, associatedData);
        else _chacha!.Encrypt(nonce, plaintext, ciphertext, tag, associatedData);
    }

    /// <summary>
    /// Opens <paramref name="ciphertext"/> into <paramref name="plaintext"/> (may be the same buffer). Returns false
    /// when the tag does not authenticate; <paramref name="plaintext"/> is then zeroed, never left holding
    /// ciphertext or unauthenticated plaintext.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public bool TryDecrypt(ReadOnlySpan<byte> nonce, ReadOnlySpan<byte> ciphertext, ReadOnlySpan<byte> tag, Span<byte> plaintext,
        ReadOnlySpan<byte> associatedData = default)
    {
        if (nonce.Length != AeadAlgorithms.NonceSize || tag.Length != AeadAlgorithms.TagSize)
        {
            plaintext.Clear();
            return false;
        }
        if (_ipsec is not null) return _ipsec.TryDecrypt(nonce, ciphertext, tag, plaintext, associatedData);
        try
        {
            if (_aes is not null) _aes.Decrypt(nonce, ciphertext, tag, plaintext, associatedData);
            else _chacha!.Decrypt(nonce, ciphertext, tag, plaintext, associatedData);
            return true;
        }
        catch (AuthenticationTagMismatchException)
        {
            plaintext.Clear();
            return false;
        }
    }

    /// <summary>
    /// Re-keys this instance for <paramref name="key"/> (same algorithm) where the backend can do so in place (ipsec-mb:
    /// no allocation, the old expanded key overwritten); false, with the instance unchanged, where it cannot (the BCL
    /// ciphers): the caller then creates a new instance.
    /// </summary>
    /// <exception cref="CryptoTensorsException">A wrong key length (the instance is then unchanged).</exception>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    internal bool TryRekey(ReadOnlySpan<byte> key)
    {
        if (_ipsec is null) return false;
        RequireKeySize(Algorithm, key);
        _ipsec.Rekey(key);
        return true;
    }

    /// <summary>Whether <see cref="DecryptFromMapping"/> is available: the accelerated backend decrypts straight from a guarded file mapping.</summary>
    internal bool DecryptsFromMapping => _ipsec is not null;

    /// <summary>
    /// Opens ciphertext at <paramref name="ciphertext"/> (inside a file mapping) into <paramref name="plaintext"/> under the
    /// shim's fault guard; see <see cref="IpsecMbAesGcm.OpenFromMapping"/> for the status codes.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    internal unsafe int DecryptFromMapping(ReadOnlySpan<byte> nonce, byte* ciphertext, ReadOnlySpan<byte> tag, Span<byte> plaintext)
        => _ipsec!.OpenFromMapping(nonce, ciphertext, tag, plaintext);

    /// <inheritdoc />
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public void Dispose()
    {
        _ipsec?.Dispose();
        _aes?.Dispose();
        _chacha?.Dispose();
    }
}
