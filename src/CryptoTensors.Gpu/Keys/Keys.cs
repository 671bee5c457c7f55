using CryptoTensors.Gpu.Crypto;

namespace CryptoTensors.Gpu.Keys;

/// <summary>
/// A symmetric master key (key-encryption key, JWK <c>kty: oct</c>). Its bytes live in a pinned buffer zeroed on
/// <see cref="Dispose"/> and never appear in <see cref="ToString"/>.
/// </summary>
public sealed class MasterKey : IDisposable
{
    private readonly SecretBuffer _key;

    internal MasterKey(SecretBuffer key, AeadAlgorithm algorithm, string alg, string? kid, string? jku)
    {
        if (key.Length != algorithm.KeySize())
        {
            key.Dispose();
            throw Errors.Create(ErrorCode.InvalidKey, $"invalid key length: expected {algorithm.KeySize()} bytes for {alg}, got {key.Length}", field: "k");
        }
        _key = key;
        Algorithm = algorithm;
        Alg = alg;
        Kid = kid;
        Jku = jku;
    }

    /// <summary>The algorithm used to wrap data keys and to encrypt data.</summary>
    public AeadAlgorithm Algorithm { get; }

    /// <summary>The <c>alg</c> string as given (written to the header as is, e.g. <c>AES-256-GCM</c>).</summary>
    public string Alg { get; }

    /// <summary>Key id, if any.</summary>
    public string? Kid { get; }

    /// <summary>Key location (JWK Set URL), if any.</summary>
    public string? Jku { get; }

    /// <summary>
    /// Where the key came from (<see cref="KeySources"/>: <c>file</c>, <c>env</c>, <c>direct</c>, <c>https</c>, or a
    /// custom provider's name), as the access policy sees it in <c>input.keys.source</c>. Set by the registry from the
    /// provider that answered; null for a key the caller built (a reader then reports <c>direct</c>).
    /// </summary>
    public string? Source { get; internal set; }

    internal ReadOnlySpan<byte> Bytes => _key.Span;

    /// <summary>Generates a random key.</summary>
    public static MasterKey Generate(AeadAlgorithm algorithm = AeadAlgorithm.Aes256Gcm, string? kid = null, string? jku = null)
        => new(SecretBuffer.Random(algorithm.KeySize()), algorithm, algorithm.CanonicalName(), kid, jku);

    /// <summary>Creates a key from raw bytes (copied into a pinned buffer).</summary>
    public static MasterKey FromBytes(ReadOnlySpan<byte> key, AeadAlgorithm algorithm, string? kid = null, string? jku = null, string? alg = null)
        => new(SecretBuffer.CopyOf(key), algorithm, alg ?? algorithm.CanonicalName(), kid, jku);

    /// <summary>A copy of this key with another kid/jku (for header descriptors).</summary>
    internal MasterKey WithBytesCopy() => new(SecretBuffer.CopyOf(Bytes), Algorithm, Alg, Kid, Jku) { Source = Source };

    /// <inheritdoc />
    public void Dispose() => _key.Dispose();

    /// <inheritdoc />
    public override string ToString() => $"MasterKey({Alg}{(Kid is null ? "" : ", kid=" + Kid)})";
}

/// <summary>The values of <see cref="MasterKey.Source"/> (<c>input.keys.source</c> of the access policy).</summary>
public static class KeySources
{
    /// <summary>A JWK file (<see cref="FileKeyProvider"/>, or a key file given on the command line).</summary>
    public const string File = "file";
    /// <summary>The <c>CRYPTOTENSOR_KEYS</c> environment variable (<see cref="EnvKeyProvider"/>).</summary>
    public const string Env = "env";
    /// <summary>A key the caller gave directly (<see cref="DirectKeyProvider"/> or <c>ReaderOptions.MasterKey</c>).</summary>
    public const string Direct = "direct";
    /// <summary>A key server (<see cref="HttpsKeyProvider"/>).</summary>
    public const string Https = "https";

    /// <summary>The source a provider's keys are reported with: one of the constants for the built-in providers, else its name.</summary>
    public static string Of(IKeyProvider provider) => provider switch
    {
        DirectKeyProvider d => d.SourceName,
        FileKeyProvider => File,
        EnvKeyProvider => Env,
        HttpsKeyProvider => Https,
        _ => provider.Name,
    };
}

/// <summary>An Ed25519 public key (JWK <c>kty: okp</c> with <c>x</c>).</summary>
public sealed class VerificationKey
{
    private readonly byte[] _publicKey;

    internal VerificationKey(ReadOnlySpan<byte> publicKey, string alg, string? kid, string? jku)
    {
        if (publicKey.Length != Ed25519.PublicKeySize)
            throw Errors.Create(ErrorCode.InvalidKey, $"invalid key length: Ed25519 public key must be 32 bytes, got {publicKey.Length}", field: "x");
        _publicKey = publicKey.ToArray();
        Alg = alg;
        Kid = kid;
        Jku = jku;
    }

    /// <summary>The <c>alg</c> string (<c>ed25519</c>).</summary>
    public string Alg { get; }

    /// <summary>Key id, if any.</summary>
    public string? Kid { get; }

    /// <summary>Key location, if any.</summary>
    public string? Jku { get; }

    /// <summary>The 32 public key bytes.</summary>
    public ReadOnlySpan<byte> PublicKey => _publicKey;

    /// <summary>Creates a key from its 32 raw bytes.</summary>
    public static VerificationKey FromBytes(ReadOnlySpan<byte> publicKey, string? kid = null, string? jku = null)
        => new(publicKey, "ed25519", kid, jku);

    /// <inheritdoc />
    public override string ToString() => $"VerificationKey(ed25519{(Kid is null ? "" : ", kid=" + Kid)})";
}

/// <summary>An Ed25519 key pair (JWK <c>kty: okp</c> with <c>x</c> and <c>d</c>); the seed is pinned and zeroed on dispose.</summary>
public sealed class SigningKey : IDisposable
{
    private readonly SecretBuffer _seed;

    internal SigningKey(SecretBuffer seed, ReadOnlySpan<byte> publicKey, string alg, string? kid, string? jku)
    {
        if (seed.Length != Ed25519.SeedSize)
        {
            seed.Dispose();
            throw Errors.Create(ErrorCode.InvalidKey, $"invalid key length: Ed25519 private key must be 32 bytes, got {seed.Length}", field: "d");
        }
        Span<byte> derived = stackalloc byte[Ed25519.PublicKeySize];
        Ed25519.DerivePublicKey(seed.Span, derived);
        if (!publicKey.IsEmpty && !publicKey.SequenceEqual(derived))
        {
            seed.Dispose();
            throw Errors.Create(ErrorCode.InvalidKey, "invalid key: Ed25519 public key x does not match private key d", field: "x");
        }
        _seed = seed;
        Public = new VerificationKey(derived, alg, kid, jku);
    }

    /// <summary>The matching public key.</summary>
    public VerificationKey Public { get; }

    /// <summary>The <c>alg</c> string.</summary>
    public string Alg => Public.Alg;

    /// <summary>Key id, if any.</summary>
    public string? Kid => Public.Kid;

    /// <summary>Key location, if any.</summary>
    public string? Jku => Public.Jku;

    internal ReadOnlySpan<byte> Seed => _seed.Span;

    /// <summary>Generates a random key pair.</summary>
    public static SigningKey Generate(string? kid = null, string? jku = null)
        => new(SecretBuffer.Random(Ed25519.SeedSize), default, "ed25519", kid, jku);

    /// <summary>Creates a key pair from a 32-byte seed.</summary>
    public static SigningKey FromSeed(ReadOnlySpan<byte> seed, string? kid = null, string? jku = null)
        => new(SecretBuffer.CopyOf(seed), default, "ed25519", kid, jku);

    internal void Sign(ReadOnlySpan<byte> message, Span<byte> signature) => Ed25519.Sign(Seed, message, signature);

    /// <inheritdoc />
    public void Dispose() => _seed.Dispose();

    /// <inheritdoc />
    public override string ToString() => $"SigningKey(ed25519{(Kid is null ? "" : ", kid=" + Kid)})";
}
