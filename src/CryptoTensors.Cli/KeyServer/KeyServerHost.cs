using System.Net;
using System.Security.Cryptography;
using System.Security.Cryptography.X509Certificates;
using System.Text;
using System.Text.Json;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Hosting;
using Microsoft.AspNetCore.Hosting.Server;
using Microsoft.AspNetCore.Hosting.Server.Features;
using Microsoft.AspNetCore.Http;
using Microsoft.AspNetCore.Server.Kestrel.Https;
using Microsoft.Extensions.DependencyInjection;

namespace CryptoTensors.Cli.KeyServer;

/// <summary>How a key server runs (the options of <c>ctensors keyserver</c>).</summary>
internal sealed record KeyServerSettings
{
    /// <summary>Directory of <c>*.jwk</c> files: master keys (mode 0600) and Ed25519 public keys.</summary>
    public required string KeysDirectory { get; init; }

    /// <summary>The licence file (mode 0600).</summary>
    public required string TokensFile { get; init; }

    /// <summary>TLS certificate (PEM); written, self-signed, with <see cref="TlsKey"/> when neither exists.</summary>
    public required string TlsCert { get; init; }

    /// <summary>TLS private key (PEM, mode 0600).</summary>
    public required string TlsKey { get; init; }

    /// <summary>The address and port to listen on (port 0: any free port).</summary>
    public required IPEndPoint Listen { get; init; }

    /// <summary>The append-only audit log (JSON lines).</summary>
    public required string AuditLog { get; init; }

    /// <summary>The longest a client may cache a key (<c>Cache-Control: max-age</c>), also bounded by the licence's expiry.</summary>
    public int MaxAgeSeconds { get; init; } = 300;

    /// <summary>Requests per minute per licence (and per client address without a valid token), as a token bucket.</summary>
    public int RatePerMinute { get; init; } = 120;

    /// <summary>The clock of expiry checks.</summary>
    public TimeProvider Clock { get; init; } = TimeProvider.System;
}

/// <summary>
/// The key server: Kestrel on one HTTPS endpoint answering <c>GET /keys/{kid}</c> (a JWK Set) and <c>GET /keys</c>
/// (the kids a licence opens) to holders of a licence token; see the README's "Remote keys". Nothing but the audit log
/// records requests, and neither carries key bytes or tokens (a licence is named by its id, an unknown token by the
/// first 8 hex digits of its SHA-256).
/// </summary>
internal sealed class KeyServerHost : IAsyncDisposable
{
    private readonly WebApplication _app;
    private readonly KeyStore _keys;
    private readonly LicenceStore _licences;
    private readonly AuditLog _audit;
    private readonly RateLimiter _rate;
    private readonly KeyServerSettings _settings;
    private readonly TextWriter _log;
    private string? _reportedBroken;

    private KeyServerHost(WebApplication app, KeyStore keys, LicenceStore licences, AuditLog audit, KeyServerSettings settings, TextWriter log, Uri url)
    {
        _app = app;
        _keys = keys;
        _licences = licences;
        _audit = audit;
        _settings = settings;
        _log = log;
        _rate = new RateLimiter(settings.RatePerMinute, settings.Clock);
        Url = url;
    }

    /// <summary>The address clients use (<c>https://ip:port</c>).</summary>
    public Uri Url { get; }

    /// <summary>True when the TLS certificate was generated at this start.</summary>
    public bool CreatedCertificate { get; private init; }

    /// <summary>
    /// Loads keys, licences and the certificate (creating a self-signed one when none exists), starts listening and
    /// returns; progress lines go to <paramref name="log"/>.
    /// </summary>
    public static async Task<KeyServerHost> StartAsync(KeyServerSettings settings, TextWriter log, CancellationToken cancellationToken)
    {
        var keys = KeyStore.Load(settings.KeysDirectory);
        try
        {
            foreach (var s in keys.Skipped) log.WriteLine("keyserver: skipped " + s);
            var licences = new LicenceStore(settings.TokensFile);
            var (cert, created) = TlsCertificates.LoadOrCreate(settings.TlsCert, settings.TlsKey, settings.Listen.Address);
            var audit = new AuditLog(settings.AuditLog);
            var builder = WebApplication.CreateEmptyBuilder(new WebApplicationOptions());
            builder.WebHost.UseKestrelCore().ConfigureKestrel(k =>
            {
                k.AddServerHeader = false;
                k.Limits.MaxRequestBodySize = 1024;
                k.Limits.MaxRequestHeadersTotalSize = 16 << 10;
                k.Limits.MaxRequestHeaderCount = 32;
                k.Limits.MaxRequestLineSize = 4096;
                k.Limits.MaxConcurrentConnections = 1024;
                k.Limits.RequestHeadersTimeout = TimeSpan.FromSeconds(10);
                k.Limits.KeepAliveTimeout = TimeSpan.FromSeconds(30);
                k.Listen(settings.Listen, listen => listen.UseHttps(cert, https =>
                {
                    https.ClientCertificateMode = ClientCertificateMode.AllowCertificate;
                    https.AllowAnyClientCertificate();
                }));
            });
            var app = builder.Build();
            KeyServerHost? host = null;
            app.Run(ctx => host!.HandleAsync(ctx));
            await app.StartAsync(cancellationToken).ConfigureAwait(false);
            var bound = app.Services.GetRequiredService<IServer>().Features.Get<IServerAddressesFeature>()!.Addresses.First();
            var port = new Uri(bound).Port;
            var ip = settings.Listen.Address;
            var url = new Uri($"https://{(ip.AddressFamily == System.Net.Sockets.AddressFamily.InterNetworkV6 ? $"[{ip}]" : ip.ToString())}:{port}");
            host = new KeyServerHost(app, keys, licences, audit, settings, log, url) { CreatedCertificate = created };
            log.WriteLine($"keyserver: serving {keys.MasterCount} master keys and {keys.PublicCount} public keys from '{settings.KeysDirectory}' to {licences.Count} licences in '{settings.TokensFile}'");
            log.WriteLine($"keyserver: TLS certificate '{settings.TlsCert}'{(created ? " (self-signed, written now)" : "")}; clients trust it with --key-ca '{settings.TlsCert}'"
                + $" (SHA-256 {Convert.ToHexString(SHA256.HashData(cert.RawData))})");
            log.WriteLine($"keyserver: audit log '{settings.AuditLog}'");
            log.WriteLine($"keyserver: listening on {url}");
            return host;
        }
        catch
        {
            keys.Dispose();
            throw;
        }
    }

    /// <summary>Stops accepting, lets requests in flight finish (at most 5 s), then releases keys (zeroed) and files.</summary>
    public async Task StopAsync()
    {
        using var grace = new CancellationTokenSource(TimeSpan.FromSeconds(5));
        await _app.StopAsync(grace.Token).ConfigureAwait(false);
        await _app.DisposeAsync().ConfigureAwait(false);
        _keys.Dispose();
        _audit.Dispose();
    }

    /// <inheritdoc />
    public async ValueTask DisposeAsync() => await StopAsync().ConfigureAwait(false);

    private async Task HandleAsync(HttpContext ctx)
    {
        var request = ctx.Request;
        var response = ctx.Response;
        response.Headers.CacheControl = "no-store";
        var remote = ctx.Connection.RemoteIpAddress?.ToString() ?? "?";
        var path = request.Path.Value ?? "";
        string? kid = null;
        var list = path is "/keys" or "/keys/";
        if (!list)
        {
            if (!path.StartsWith("/keys/", StringComparison.Ordinal) || path.IndexOf('/', 6) >= 0)
            {
                await RefuseAsync(ctx, 404, "no such endpoint (GET /keys/{kid})", remote, null, null, null).ConfigureAwait(false);
                return;
            }
            kid = path[6..];
        }
        if (!HttpMethods.IsGet(request.Method))
        {
            response.Headers.Allow = "GET";
            await RefuseAsync(ctx, 405, "only GET is served", remote, null, null, kid).ConfigureAwait(false);
            return;
        }
        if (kid is not null && !PrivateFiles.ServableKid().IsMatch(kid))
        {
            await RefuseAsync(ctx, 400, "malformed kid", remote, null, null, null).ConfigureAwait(false);
            return;
        }
        var auth = request.Headers.Authorization.ToString();
        if (!auth.StartsWith("Bearer ", StringComparison.OrdinalIgnoreCase) || auth.Length <= 7)
        {
            if (!_rate.TryTake("ip:" + remote)) { await TooManyAsync(ctx, remote, null, kid).ConfigureAwait(false); return; }
            response.Headers.WWWAuthenticate = "Bearer";
            await RefuseAsync(ctx, 401, "a licence token is required (Authorization: Bearer …)", remote, null, null, kid).ConfigureAwait(false);
            return;
        }
        var token = auth[7..].Trim();
        var (licence, broken) = _licences.Find(token);
        if (broken is not null)
        {
            if (broken != _reportedBroken) _log.WriteLine("keyserver: refusing every request until the licence file is fixed: " + (_reportedBroken = broken));
            await RefuseAsync(ctx, 503, "the licence file is unavailable", remote, null, null, kid).ConfigureAwait(false);
            return;
        }
        _reportedBroken = null;
        if (licence is null)
        {
            if (!_rate.TryTake("ip:" + remote)) { await TooManyAsync(ctx, remote, null, kid).ConfigureAwait(false); return; }
            response.Headers.WWWAuthenticate = "Bearer error=\"invalid_token\"";
            var hashPrefix = Convert.ToHexStringLower(SHA256.HashData(Encoding.UTF8.GetBytes(token)))[..8];
            await RefuseAsync(ctx, 401, "unknown licence token", remote, null, hashPrefix, kid).ConfigureAwait(false);
            return;
        }
        if (!_rate.TryTake("licence:" + licence.Id)) { await TooManyAsync(ctx, remote, licence.Id, kid).ConfigureAwait(false); return; }
        if (licence.Revoked)
        {
            await RefuseAsync(ctx, 410, "the licence was revoked", remote, licence.Id, null, kid).ConfigureAwait(false);
            return;
        }
        var now = _settings.Clock.GetUtcNow();
        if (licence.Expires is { } expires && expires <= now)
        {
            await RefuseAsync(ctx, 403, "the licence expired", remote, licence.Id, null, kid).ConfigureAwait(false);
            return;
        }
        if (licence.ClientCertSha256 is { } pinned)
        {
            var cert = ctx.Connection.ClientCertificate ?? await ctx.Connection.GetClientCertificateAsync(ctx.RequestAborted).ConfigureAwait(false);
            if (cert is null || !CryptographicOperations.FixedTimeEquals(SHA256.HashData(cert.RawData), pinned))
            {
                await RefuseAsync(ctx, 403, cert is null ? "the licence requires a client certificate" : "the client certificate is not the licence's", remote, licence.Id, null, kid)
                    .ConfigureAwait(false);
                return;
            }
        }
        if (kid is null)
        {
            var kids = _keys.Kids.Where(licence.Kids.Contains).ToArray();
            await WriteJsonAsync(ctx, 200, JsonSerializer.SerializeToUtf8Bytes(new Dictionary<string, string[]> { ["kids"] = kids })).ConfigureAwait(false);
            _audit.Write(now, remote, licence.Id, null, null, 200, "listed");
            return;
        }
        if (!licence.Kids.Contains(kid))
        {
            await RefuseAsync(ctx, 403, "the licence does not cover this kid", remote, licence.Id, null, kid).ConfigureAwait(false);
            return;
        }
        if (!_keys.Has(kid))
        {
            await RefuseAsync(ctx, 404, "no such key", remote, licence.Id, null, kid).ConfigureAwait(false);
            return;
        }
        var maxAge = (long)_settings.MaxAgeSeconds;
        if (licence.Expires is { } until) maxAge = Math.Min(maxAge, (long)(until - now).TotalSeconds);
        var (body, length) = _keys.JwkSet(kid);
        try
        {
            response.StatusCode = 200;
            response.ContentType = "application/jwk-set+json";
            response.ContentLength = length;
            response.Headers.CacheControl = maxAge > 0 ? $"private, max-age={maxAge}" : "no-store";
            await response.Body.WriteAsync(body.Memory[..length], ctx.RequestAborted).ConfigureAwait(false);
        }
        finally
        {
            body.Dispose();
        }
        _audit.Write(now, remote, licence.Id, null, kid, 200, "served");
    }

    private Task TooManyAsync(HttpContext ctx, string remote, string? licence, string? kid)
    {
        ctx.Response.Headers.RetryAfter = "1";
        return RefuseAsync(ctx, 429, "too many requests", remote, licence, null, kid);
    }

    private async Task RefuseAsync(HttpContext ctx, int status, string reason, string remote, string? licence, string? tokenHashPrefix, string? kid)
    {
        _audit.Write(_settings.Clock.GetUtcNow(), remote, licence, tokenHashPrefix, kid, status, reason);
        await WriteJsonAsync(ctx, status, JsonSerializer.SerializeToUtf8Bytes(new Dictionary<string, string> { ["error"] = reason })).ConfigureAwait(false);
    }

    private static async Task WriteJsonAsync(HttpContext ctx, int status, byte[] body)
    {
        ctx.Response.StatusCode = status;
        ctx.Response.ContentType = "application/json";
        ctx.Response.ContentLength = body.Length;
        await ctx.Response.Body.WriteAsync(body, ctx.RequestAborted).ConfigureAwait(false);
    }

    /// <summary>Token buckets by name: <c>perMinute</c> requests at once, refilled at <c>perMinute</c>/60 a second.</summary>
    private sealed class RateLimiter(int perMinute, TimeProvider clock)
    {
        private readonly Dictionary<string, (double Tokens, long At)> _buckets = new(StringComparer.Ordinal);
        private readonly Lock _lock = new();

        public bool TryTake(string name)
        {
            var now = clock.GetTimestamp();
            lock (_lock)
            {
                if (_buckets.Count > 100_000) _buckets.Clear();
                var (tokens, at) = _buckets.TryGetValue(name, out var b) ? b : (perMinute, now);
                tokens = Math.Min(perMinute, tokens + clock.GetElapsedTime(at, now).TotalSeconds * perMinute / 60.0);
                var ok = tokens >= 1;
                _buckets[name] = (ok ? tokens - 1 : tokens, now);
                return ok;
            }
        }
    }
}

/// <summary>
/// The append-only audit log: one JSON object a line — time, client address, licence id (or the SHA-256 prefix of an
/// unknown token), kid, status, outcome. Never a key byte or a token. Created with mode 0600.
/// </summary>
internal sealed class AuditLog : IDisposable
{
    private readonly FileStream _file;
    private readonly Lock _lock = new();

    public AuditLog(string path)
    {
        var options = new FileStreamOptions { Mode = FileMode.Append, Access = FileAccess.Write, Share = FileShare.Read };
        if (!OperatingSystem.IsWindows()) options.UnixCreateMode = UnixFileMode.UserRead | UnixFileMode.UserWrite;
        _file = new FileStream(path, options);
    }

    public void Write(DateTimeOffset time, string remote, string? licence, string? tokenHashPrefix, string? kid, int status, string outcome)
    {
        var buffer = new System.Buffers.ArrayBufferWriter<byte>(256);
        using (var w = new Utf8JsonWriter(buffer))
        {
            w.WriteStartObject();
            w.WriteString("time", time.UtcDateTime.ToString("O", System.Globalization.CultureInfo.InvariantCulture));
            w.WriteString("remote", remote);
            if (licence is not null) w.WriteString("licence", licence); else w.WriteNull("licence");
            if (tokenHashPrefix is not null) w.WriteString("token_sha256_prefix", tokenHashPrefix);
            if (kid is not null) w.WriteString("kid", kid); else w.WriteNull("kid");
            w.WriteNumber("status", status);
            w.WriteString("outcome", outcome);
            w.WriteEndObject();
        }
        lock (_lock)
        {
            _file.Write(buffer.WrittenSpan);
            _file.WriteByte((byte)'\n');
            _file.Flush();
        }
    }

    public void Dispose()
    {
        lock (_lock) _file.Dispose();
    }
}

/// <summary>The server's TLS certificate: loaded from PEM files, or generated self-signed and written on first start.</summary>
internal static class TlsCertificates
{
    public static (X509Certificate2 Cert, bool Created) LoadOrCreate(string certPath, string keyPath, IPAddress listen)
    {
        var haveCert = File.Exists(certPath);
        var haveKey = File.Exists(keyPath);
        if (haveCert != haveKey)
            throw new KeyServerConfigException(haveCert
                ? $"--tls-cert '{certPath}' exists but --tls-key '{keyPath}' does not: give both, or neither to have a self-signed pair written"
                : $"--tls-key '{keyPath}' exists but --tls-cert '{certPath}' does not: give both, or neither to have a self-signed pair written");
        if (haveCert)
        {
            PrivateFiles.RequireOwnerOnly(keyPath, "--tls-key");
            try
            {
                return (X509Certificate2.CreateFromPemFile(certPath, keyPath), false);
            }
            catch (CryptographicException e)
            {
                throw new KeyServerConfigException($"--tls-cert '{certPath}' / --tls-key '{keyPath}': not a PEM certificate and its private key ({e.Message})");
            }
        }
        using var key = ECDsa.Create(ECCurve.NamedCurves.nistP256);
        var request = new CertificateRequest("CN=ctensors keyserver", key, HashAlgorithmName.SHA256);
        var names = new SubjectAlternativeNameBuilder();
        names.AddDnsName("localhost");
        names.AddIpAddress(IPAddress.Loopback);
        names.AddIpAddress(IPAddress.IPv6Loopback);
        if (!listen.Equals(IPAddress.Any) && !listen.Equals(IPAddress.IPv6Any) && !IPAddress.IsLoopback(listen)) names.AddIpAddress(listen);
        var machine = Dns.GetHostName();
        if (Uri.CheckHostName(machine) == UriHostNameType.Dns && machine != "localhost") names.AddDnsName(machine);
        request.CertificateExtensions.Add(names.Build());
        request.CertificateExtensions.Add(new X509BasicConstraintsExtension(false, false, 0, true));
        request.CertificateExtensions.Add(new X509KeyUsageExtension(X509KeyUsageFlags.DigitalSignature, true));
        request.CertificateExtensions.Add(new X509EnhancedKeyUsageExtension([new Oid("1.3.6.1.5.5.7.3.1")], false));
        var now = DateTimeOffset.UtcNow;
        using var cert = request.CreateSelfSigned(now.AddMinutes(-5), now.AddYears(2));
        var dir = Path.GetDirectoryName(Path.GetFullPath(keyPath));
        if (dir is not null) Directory.CreateDirectory(dir);
        PrivateFiles.WriteOwnerOnly(keyPath, Encoding.ASCII.GetBytes(key.ExportPkcs8PrivateKeyPem()));
        File.WriteAllText(certPath, cert.ExportCertificatePem() + "\n");
        return (X509Certificate2.CreateFromPemFile(certPath, keyPath), true);
    }
}
