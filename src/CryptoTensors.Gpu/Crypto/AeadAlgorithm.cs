namespace CryptoTensors.Gpu.Crypto;

/// <summary>The AEAD algorithms of the format. One algorithm per file: the master key's.</summary>
public enum AeadAlgorithm
{
    /// <summary>AES-256-GCM (the default): 32-byte keys.</summary>
    Aes256Gcm,
    /// <summary>AES-128-GCM: 16-byte keys.</summary>
    Aes128Gcm,
    /// <summary>ChaCha20-Poly1305 (RFC 8439): 32-byte keys.</summary>
    ChaCha20Poly1305,
}

/// <summary>Names and sizes of <see cref="AeadAlgorithm"/>s.</summary>
public static class AeadAlgorithms
{
    /// <summary>Nonce length of every algorithm.</summary>
    public const int NonceSize = 12;

    /// <summary>Tag length of every algorithm.</summary>
    public const int TagSize = 16;

    /// <summary>Key length in bytes.</summary>
    public static int KeySize(this AeadAlgorithm alg) => alg == AeadAlgorithm.Aes128Gcm ? 16 : 32;

    /// <summary>The canonical name written by default (<c>aes256gcm</c>, <c>aes128gcm</c>, <c>chacha20poly1305</c>).</summary>
    public static string CanonicalName(this AeadAlgorithm alg) => alg switch
    {
        AeadAlgorithm.Aes256Gcm => "aes256gcm",
        AeadAlgorithm.Aes128Gcm => "aes128gcm",
        AeadAlgorithm.ChaCha20Poly1305 => "chacha20poly1305",
        _ => throw new ArgumentOutOfRangeException(nameof(alg)),
    };

    /// <summary>
    /// Parses an algorithm name as the reference does: every '-' removed, case ignored
    /// (<c>AES-256-GCM</c> = <c>aes256gcm</c>). JOSE names are not accepted here (see <see cref="TryParseJose"/>).
    /// </summary>
    public static bool TryParse(string? name, out AeadAlgorithm alg)
    {
        alg = default;
        if (string.IsNullOrEmpty(name)) return false;
        var n = name.Replace("-", "", StringComparison.Ordinal).ToLowerInvariant();
        switch (n)
        {
            case "aes256gcm": alg = AeadAlgorithm.Aes256Gcm; return true;
            case "aes128gcm": alg = AeadAlgorithm.Aes128Gcm; return true;
            case "chacha20poly1305": alg = AeadAlgorithm.ChaCha20Poly1305; return true;
            default: return false;
        }
    }

    /// <summary>JOSE (RFC 7518 / draft) content-encryption names accepted on standard JWK input.</summary>
    public static bool TryParseJose(string? name, out AeadAlgorithm alg)
    {
        alg = default;
        switch (name)
        {
            case "A256GCM": alg = AeadAlgorithm.Aes256Gcm; return true;
            case "A128GCM": alg = AeadAlgorithm.Aes128Gcm; return true;
            case "C20P": alg = AeadAlgorithm.ChaCha20Poly1305; return true;
            default: return false;
        }
    }
}
