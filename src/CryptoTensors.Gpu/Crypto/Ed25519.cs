using NSec.Cryptography;

namespace CryptoTensors.Gpu.Crypto;

/// <summary>
/// Ed25519 (RFC 8032, pure) through NSec (libsodium). Private keys are 32-byte seeds (JWK <c>d</c>), public keys
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
    {
        if (publicKey.Length != PublicKeySize || signature.Length != SignatureSize) return false;
        if (!PublicKey.TryImport(Algorithm, publicKey, KeyBlobFormat.RawPublicKey, out var pk) || pk is null) return false;
        return Algorithm.Verify(pk, message, signature);
    }
}
