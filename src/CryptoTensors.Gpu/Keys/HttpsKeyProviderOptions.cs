using System.Net;
using System.Security.Cryptography;
using System.Security.Cryptography.X509Certificates;

namespace CryptoTensors.Gpu.Keys;

/// <summary>
/// Configuration of an <see cref="HttpsKeyProvider"/>: which key servers, which hosts may ever be contacted, how to
/// authenticate and whom to trust, and the bounds on every request. <see cref="ToString"/> never shows the token.
/// </summary>
public sealed class HttpsKeyProviderOptions
{
    /// <summary>
    /// Key server base URLs, tried in order for a lookup by kid alone (<c>GET {base}/keys/{kid}</c>). Each host must
    /// also be on <see cref="AllowedHosts"/>. A header's <c>jku</c>, when the reader follows it, is used instead.
    /// </summary>
    public IReadOnlyList<Uri> BaseUrls { get; init; } = [];

    /// <summary>
    /// The only hosts ever contacted: an exact host name or IP address (<c>keys.example.com</c>, <c>127.0.0.1</c>,
    /// <c>::1</c>), or <c>*.suffix</c> for any host below that domain (not the domain itself). Case-insensitive;
    /// ports are not part of an entry; a <c>*.suffix</c> entry never matches an IP address. Empty: nothing is ever contacted.
    /// </summary>
    public IReadOnlyList<string> AllowedHosts { get; init; } = [];

    /// <summary>The licence token sent as <c>Authorization: Bearer …</c>, or null. Never logged or put in a message.</summary>
    public string? LicenceToken { get; init; }

    /// <summary>A client certificate (with its private key) offered in the TLS handshake, or null.</summary>
    public X509Certificate2? ClientCertificate { get; init; }

    /// <summary>
    /// The only roots a key server's certificate may chain to (e.g. the CA file printed by <c>ctensors keyserver</c>),
    /// or null to trust the system's roots. The host name is checked either way.
    /// </summary>
    public X509Certificate2Collection? TrustedRoots { get; init; }

    /// <summary>
    /// Allow plain <c>http://</c> to loopback addresses (<c>127.0.0.0/8</c>, <c>::1</c>, <c>localhost</c>) only — for
    /// tests. Off: every URL must be <c>https://</c>.
    /// </summary>
    public bool AllowInsecureLoopback { get; init; }

    /// <summary>Time allowed to open the TCP connection (default 5 s).</summary>
    public TimeSpan ConnectTimeout { get; init; } = TimeSpan.FromSeconds(5);

    /// <summary>Time allowed for one attempt: connection, TLS, request and the whole response body (default 10 s).</summary>
    public TimeSpan ReadTimeout { get; init; } = TimeSpan.FromSeconds(10);

    /// <summary>The largest response body accepted (default 64 KiB); a larger one is refused without being read.</summary>
    public int MaxResponseBytes { get; init; } = 64 << 10;

    /// <summary>Attempts per server for failures that may pass (unreachable, timeout, 5xx, 429), default 3.</summary>
    public int MaxAttempts { get; init; } = 3;

    /// <summary>Delay before the first retry, doubled for each further one (default 200 ms; a <c>Retry-After</c> up to 5 s is honoured).</summary>
    public TimeSpan RetryDelay { get; init; } = TimeSpan.FromMilliseconds(200);

    /// <summary>
    /// Cache keys for as long as the server's <c>Cache-Control: max-age</c> allows (never with <c>no-store</c>,
    /// <c>no-cache</c> or no max-age), capped by <see cref="MaxCacheLifetime"/>. Default on.
    /// </summary>
    public bool CacheEnabled { get; init; } = true;

    /// <summary>The longest a key is cached whatever the server says (default 1 hour).</summary>
    public TimeSpan MaxCacheLifetime { get; init; } = TimeSpan.FromHours(1);

    /// <summary>The clock of the cache (default: the system clock).</summary>
    public TimeProvider TimeProvider { get; init; } = TimeProvider.System;

    /// <summary>The provider's priority in a <see cref="KeyRegistry"/> (default <see cref="KeyProviderPriority.Https"/>).</summary>
    public int Priority { get; init; } = KeyProviderPriority.Https;

    /// <summary>Reads a PEM file of one or more CA certificates for <see cref="TrustedRoots"/>.</summary>
    /// <exception cref="IOException">The file cannot be read.</exception>
    /// <exception cref="ArgumentException">The file holds no PEM certificate.</exception>
    public static X509Certificate2Collection LoadTrustedRoots(string pemFile)
    {
        var roots = new X509Certificate2Collection();
        try
        {
            roots.ImportFromPemFile(pemFile);
        }
        catch (CryptographicException e)
        {
            throw new ArgumentException($"'{pemFile}' is not a PEM certificate file: {e.Message}", nameof(pemFile), e);
        }
        if (roots.Count == 0) throw new ArgumentException($"'{pemFile}' holds no PEM certificate", nameof(pemFile));
        return roots;
    }

    /// <inheritdoc />
    public override string ToString()
        => $"HttpsKeyProviderOptions(bases=[{string.Join(", ", BaseUrls)}], allow=[{string.Join(", ", AllowedHosts)}], token={(LicenceToken is null ? "none" : "set")})";

    /// <summary>True when <paramref name="host"/> is a loopback name or address.</summary>
    internal static bool IsLoopback(string host)
    {
        var h = host.Trim('[', ']');
        if (string.Equals(h, "localhost", StringComparison.OrdinalIgnoreCase)) return true;
        return IPAddress.TryParse(h, out var ip) && IPAddress.IsLoopback(ip);
    }
}
