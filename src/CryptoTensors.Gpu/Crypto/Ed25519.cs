using NSec.Cryptography;

namespace CryptoTensors.Gpu.Crypto;

/// <summary>Which library verifies Ed25519 signatures (<see cref="Ed25519.Verify(ReadOnlySpan{byte}, ReadOnlySpan{byte}, ReadOnlySpan{byte}, Ed25519Verifier)"/>).</summary>
internal enum Ed25519Verifier
{
    /// <summary>OpenSSL where <see cref="OpenSslEd25519.Available"/>, else libsodium.</summary>
    Auto,

    /// <summary>libsodium (NSec).</summary>
    Sodium,

    /// <summary>OpenSSL's libcrypto (<see cref="OpenSslEd25519"/>); an error where it is unavailable.</summary>
    OpenSsl,
}

/// <summary>
/// Ed25519 (RFC 8032, pure) through NSec (libsodium); verification through OpenSSL where it is available (faster
/// SHA-512 over large signed headers, see <see cref="OpenSslEd25519"/>); both pass the Wycheproof vectors. Private keys are 32-byte seeds (JWK <c>d</c>), public keys
/// 32 bytes (JWK <c>x</c>), signatures 64 bytes.
/// </summary>
internal static class Ed25519
{
    private static readonly SignatureAlgorithm Algorithm = SignatureAlgorithm.Ed25519;

    public const int PublicKeySize = 32;
    public const int SeedSize = 32;
    public const int SignatureSize = 64;

    public static void Sign(ReadOnlySpan<byte> seed, ReadOnlySpan<byte> message, Span<byte> signature)
    {
        using var key = Key.Import(Algorithm, seed, KeyBlobFormat.RawPrivateKey);
        Algorithm.Sign(key, message, signature);
    }

    public static void DerivePublicKey(ReadOnlySpan<byte> seed, Span<byte> publicKey)
    {
        using var key = Key.Import(Algorithm, seed, KeyBlobFormat.RawPrivateKey);
        if (!key.PublicKey.TryExport(KeyBlobFormat.RawPublicKey, publicKey, out var n) || n != PublicKeySize)
            throw new InvalidOperationException("Ed25519 public key export failed");
    }

    /// <summary>False for a bad signature and for malformed keys or signatures of the wrong length.</summary>
    public static bool Verify(ReadOnlySpan<byte> publicKey, ReadOnlySpan<byte> message, ReadOnlySpan<byte> signature)
        => Verify(publicKey, message, signature, Ed25519Verifier.Auto);

    /// <summary><see cref="Verify(ReadOnlySpan{byte}, ReadOnlySpan{byte}, ReadOnlySpan{byte})"/> with the library chosen (tests check each).</summary>
    public static bool Verify(ReadOnlySpan<byte> publicKey, ReadOnlySpan<byte> message, ReadOnlySpan<byte> signature, Ed25519Verifier verifier)
    {
        if (publicKey.Length != PublicKeySize || signature.Length != SignatureSize) return false;
        if (verifier == Ed25519Verifier.OpenSsl || (verifier == Ed25519Verifier.Auto && OpenSslEd25519.Available))
            return OpenSslEd25519.Verify(publicKey, message, signature);
        if (!PublicKey.TryImport(Algorithm, publicKey, KeyBlobFormat.RawPublicKey, out var pk) || pk is null) return false;
        return Algorithm.Verify(pk, message, signature);
    }
}
