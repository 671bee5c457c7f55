namespace CryptoTensors.Gpu.Crypto;

/// <summary>
/// The implementation behind an <see cref="AeadCipher"/> for AES-GCM. ChaCha20-Poly1305 always uses the BCL, whatever
/// is chosen here.
/// </summary>
public enum AeadBackend
{
    /// <summary>The accelerated backend when <see cref="AeadBackends.IpsecMbAvailable"/>, otherwise the BCL.</summary>
    Auto,
    /// <summary>.NET's <see cref="System.Security.Cryptography.AesGcm"/> (OpenSSL on Linux): the portable default.</summary>
    Bcl,
    /// <summary>
    /// Intel ipsec-mb's VAES/AVX-512 AES-GCM through <c>libctaesgcm.so</c>. Requesting it where it is unavailable
    /// is an error, never a silent fallback.
    /// </summary>
    IpsecMb,
}

/// <summary>
/// Chooses and describes <see cref="AeadBackend"/>s. The process-wide <see cref="Default"/> comes from the
/// <c>CRYPTOTENSORS_AEAD_BACKEND</c> environment variable (<c>auto</c>, <c>bcl</c> or <c>ipsec-mb</c>; unset means
/// <c>auto</c>) unless set in code.
/// </summary>
public static class AeadBackends
{
    /// <summary>The environment variable read by <see cref="Default"/>.</summary>
    public const string EnvironmentVariable = "CRYPTOTENSORS_AEAD_BACKEND";

    private static volatile int _default = -1; // -1: not set in code, read the environment
    private static readonly Lazy<(AeadBackend Backend, string? Error)> FromEnvironment = new(ReadEnvironment);

    /// <summary>
    /// The backend of ciphers created without an explicit one (for tests and benchmarks). Until set, the value of
    /// <c>CRYPTOTENSORS_AEAD_BACKEND</c> when first read.
    /// </summary>
    /// <exception cref="CryptoTensorsException">The environment variable holds an unknown name.</exception>
    public static AeadBackend Default
    {
        get
        {
            if (_default >= 0) return (AeadBackend)_default;
            var (backend, error) = FromEnvironment.Value;
            return error is null ? backend : throw Errors.Create(ErrorCode.UnsupportedAlgorithm, error);
        }
        set
        {
            if (!Enum.IsDefined(value)) throw new ArgumentOutOfRangeException(nameof(value));
            _default = (int)value;
        }
    }

    /// <summary>
    /// Whether the accelerated AES-GCM backend is usable here: <c>libctaesgcm.so</c> loads, the CPU has VAES, VPCLMULQDQ
    /// and AVX-512, and the start-up self-test passed. The first use loads the library and runs the self-test, once.
    /// </summary>
    public static bool IpsecMbAvailable => IpsecMbAesGcm.UnavailableReason is null;

    /// <summary>Why the accelerated backend is unusable (missing library, CPU, self-test), or <c>null</c> when it is usable.</summary>
    public static string? IpsecMbUnavailableReason => IpsecMbAesGcm.UnavailableReason;

    /// <summary>The accelerated backend's own description when usable (ipsec-mb version, code path), else <c>null</c>.</summary>
    public static string? IpsecMbDescription => IpsecMbAesGcm.Description;

    /// <summary>The concrete backend (<see cref="AeadBackend.Bcl"/> or <see cref="AeadBackend.IpsecMb"/>) that <see cref="Default"/> gives <paramref name="algorithm"/>.</summary>
    public static AeadBackend Resolve(AeadAlgorithm algorithm) => Resolve(algorithm, Default);

    /// <summary>The concrete backend that <paramref name="requested"/> gives <paramref name="algorithm"/>.</summary>
    /// <exception cref="CryptoTensorsException"><see cref="AeadBackend.IpsecMb"/> was requested for AES-GCM where it is unavailable (the message says why).</exception>
    public static AeadBackend Resolve(AeadAlgorithm algorithm, AeadBackend requested)
    {
        if (algorithm == AeadAlgorithm.ChaCha20Poly1305) return AeadBackend.Bcl;
        return requested switch
        {
            AeadBackend.Bcl => AeadBackend.Bcl,
            AeadBackend.Auto => IpsecMbAvailable ? AeadBackend.IpsecMb : AeadBackend.Bcl,
            AeadBackend.IpsecMb => IpsecMbUnavailableReason is { } reason
                ? throw Errors.Create(ErrorCode.UnsupportedAlgorithm, $"the ipsec-mb AES-GCM backend was requested but is unavailable: {reason}")
                : AeadBackend.IpsecMb,
            _ => throw new ArgumentOutOfRangeException(nameof(requested)),
        };
    }

    /// <summary>The name of a backend in logs and benchmark output: <c>auto</c>, <c>bcl</c>, <c>ipsec-mb-vaes</c>.</summary>
    public static string Name(this AeadBackend backend) => backend switch
    {
        AeadBackend.Auto => "auto",
        AeadBackend.Bcl => "bcl",
        AeadBackend.IpsecMb => "ipsec-mb-vaes",
        _ => throw new ArgumentOutOfRangeException(nameof(backend)),
    };

    /// <summary>The name of the backend that <see cref="Default"/> gives <paramref name="algorithm"/> (see <see cref="Name"/>).</summary>
    public static string ActiveName(AeadAlgorithm algorithm = AeadAlgorithm.Aes256Gcm) => Resolve(algorithm).Name();

    /// <summary>Parses <c>auto</c>, <c>bcl</c> or <c>ipsec-mb</c> (also <c>ipsecmb</c>, <c>ipsec-mb-vaes</c>), case ignored.</summary>
    public static bool TryParse(string? name, out AeadBackend backend)
    {
        switch (name?.Trim().ToLowerInvariant())
        {
            case "auto": backend = AeadBackend.Auto; return true;
            case "bcl": backend = AeadBackend.Bcl; return true;
            case "ipsec-mb" or "ipsecmb" or "ipsec-mb-vaes": backend = AeadBackend.IpsecMb; return true;
            default: backend = AeadBackend.Auto; return false;
        }
    }

    private static (AeadBackend, string?) ReadEnvironment()
    {
        var value = Environment.GetEnvironmentVariable(EnvironmentVariable);
        if (string.IsNullOrWhiteSpace(value)) return (AeadBackend.Auto, null);
        return TryParse(value, out var backend)
            ? (backend, null)
            : (AeadBackend.Auto, $"{EnvironmentVariable}='{value}' is not one of auto, bcl, ipsec-mb");
    }
}
