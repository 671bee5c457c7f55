using System.Net;
using System.Net.Http.Headers;
using System.Net.Security;
using System.Security.Authentication;
using System.Security.Cryptography.X509Certificates;
using System.Text;
using System.Text.Json;

namespace CryptoTensors.Gpu.Keys;

/// <summary>
/// Keys from a licensed key server over HTTPS: <c>GET {base}/keys/{kid}</c> with <c>Authorization: Bearer
/// {licence token}</c> (and/or a client certificate) answers a JWK or JWK Set; see the README's "Remote keys".
/// Only hosts on <see cref="HttpsKeyProviderOptions.AllowedHosts"/> are ever contacted (no redirects, no proxy);
/// plain <c>http://</c> only to loopback when <see cref="HttpsKeyProviderOptions.AllowInsecureLoopback"/> is set.
/// Master keys and Ed25519 public keys only — never signing keys. Key bytes go from the response buffer into pinned
/// buffers that are zeroed after use; they never appear in a message. Every failure is a <see cref="KeyException"/>
/// naming the kid and the host (<see cref="KeyException.Host"/>), never the token.
/// </summary>
/// <remarks>
/// <see cref="IKeyProvider"/> is synchronous: its getters block on the asynchronous fetch, which is bounded by
/// <see cref="HttpsKeyProviderOptions.ConnectTimeout"/>, <see cref="HttpsKeyProviderOptions.ReadTimeout"/> and
/// <see cref="HttpsKeyProviderOptions.MaxAttempts"/>. Use <see cref="GetMasterKeyAsync"/> where a caller can await.
/// A header's <c>jku</c> reaches this provider only when the reader follows key locations
/// (<c>ReaderOptions.FollowHeaderKeyLocations</c>); it is then taken as a key server base URL and its host must be on
/// the allowlist too.
/// </remarks>
public sealed class HttpsKeyProvider : IKeyProvider, IDisposable
{
    private readonly HttpsKeyProviderOptions _options;
    private readonly HttpClient _http;
    private readonly (string Exact, string? Suffix)[] _allowed;
    private readonly Dictionary<(string Base, string Kid), CachedKeys> _cache = [];
    private readonly Lock _cacheLock = new();
    private long _requests;

    /// <summary>Creates a provider; nothing is contacted until a key is asked for.</summary>
    /// <exception cref="ArgumentException">A base URL is not an absolute http(s) URL without user info, query or
    /// fragment; an allowlist entry is empty, <c>*</c>, or holds a scheme, path or port; a limit is not positive.</exception>
    public HttpsKeyProvider(HttpsKeyProviderOptions options)
    {
        ArgumentNullException.ThrowIfNull(options);
        _options = options;
        foreach (var b in options.BaseUrls) CheckBaseSyntax(b, nameof(options.BaseUrls));
        _allowed = [.. options.AllowedHosts.Select(ParseAllowEntry)];
        if (options.MaxResponseBytes <= 0) throw new ArgumentException("MaxResponseBytes must be positive", nameof(options));
        if (options.MaxAttempts <= 0) throw new ArgumentException("MaxAttempts must be positive", nameof(options));
        if (options.ConnectTimeout <= TimeSpan.Zero || options.ReadTimeout <= TimeSpan.Zero) throw new ArgumentException("timeouts must be positive", nameof(options));
        if (options.LicenceToken is { } t && (t.Length == 0 || t.Any(c => c < 0x21 || c > 0x7e)))
            throw new ArgumentException("the licence token must be non-empty printable ASCII without spaces", nameof(options));

        var handler = new SocketsHttpHandler
        {
            ConnectTimeout = options.ConnectTimeout,
            AllowAutoRedirect = false,
            UseProxy = false,
            UseCookies = false,
            AutomaticDecompression = DecompressionMethods.None,
            MaxResponseHeadersLength = 16,
            MaxConnectionsPerServer = 16,
            PooledConnectionLifetime = TimeSpan.FromMinutes(5),
            SslOptions = new SslClientAuthenticationOptions
            {
                CertificateRevocationCheckMode = X509RevocationMode.NoCheck,
            },
        };
        if (options.ClientCertificate is { } cert) handler.SslOptions.ClientCertificates = [cert];
        if (options.TrustedRoots is { } roots)
        {
            var policy = new X509ChainPolicy { TrustMode = X509ChainTrustMode.CustomRootTrust, RevocationMode = X509RevocationMode.NoCheck };
            policy.CustomTrustStore.AddRange(roots);
            handler.SslOptions.CertificateChainPolicy = policy;
        }
        _http = new HttpClient(handler, disposeHandler: true) { Timeout = Timeout.InfiniteTimeSpan };
    }

    /// <inheritdoc />
    public string Name => "https";

    /// <inheritdoc />
    public int Priority => _options.Priority;

    /// <inheritdoc />
    public bool IsReady => true;

    /// <summary>HTTP requests sent so far (every attempt; cache hits send none).</summary>
    public long RequestCount => Interlocked.Read(ref _requests);

    /// <inheritdoc />
    /// <remarks>A kid is needed (the protocol asks by kid); a <c>jku</c> must be an http(s) URL, else the configured bases are used.</remarks>
    public bool Matches(string? jku, string? kid)
        => kid is not null && (jku is null ? _options.BaseUrls.Count > 0 : IsHttpUrl(jku));

    /// <inheritdoc />
    public MasterKey? GetMasterKey(string? jku, string? kid)
        => kid is null ? null : GetMasterKeyAsync(jku, kid, CancellationToken.None).GetAwaiter().GetResult();

    /// <inheritdoc />
    public VerificationKey? GetVerificationKey(string? jku, string? kid)
        => kid is null ? null : GetVerificationKeyAsync(jku, kid, CancellationToken.None).GetAwaiter().GetResult();

    /// <inheritdoc />
    /// <remarks>Always null: signing keys are never fetched from a key server.</remarks>
    public SigningKey? GetSigningKey(string? jku, string? kid) => null;

    /// <summary>The master key with <paramref name="kid"/> (the caller disposes it), or null when the servers answered without one.</summary>
    /// <param name="jku">A key server base URL from a header (used instead of the configured bases), or null.</param>
    /// <param name="kid">The key id.</param>
    /// <param name="cancellationToken">Cancels the fetch (then <see cref="OperationCanceledException"/>, not a key error).</param>
    /// <exception cref="KeyException">A host not allowed, a server unreachable or too slow, a TLS failure, a licence
    /// refused or revoked, an unknown kid, an oversized or malformed response.</exception>
    public async Task<MasterKey?> GetMasterKeyAsync(string? jku, string kid, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(kid);
        return await LookupAsync(jku, kid, static (c, kid) => c.CopyMaster(), cancellationToken).ConfigureAwait(false);
    }

    /// <summary>The Ed25519 public key with <paramref name="kid"/>, or null when the servers answered without one.</summary>
    /// <inheritdoc cref="GetMasterKeyAsync"/>
    public async Task<VerificationKey?> GetVerificationKeyAsync(string? jku, string kid, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(kid);
        return await LookupAsync(jku, kid, static (c, kid) => c.Verify.Count == 0 ? null : c.Verify[0], cancellationToken).ConfigureAwait(false);
    }

    /// <summary>
    /// The kids the licence covers on a key server (<c>GET {base}/keys</c>, answered <c>{"kids":[…]}</c>).
    /// </summary>
    /// <inheritdoc cref="GetMasterKeyAsync"/>
    public async Task<IReadOnlyList<string>> ListKidsAsync(Uri baseUrl, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(baseUrl);
        CheckBaseSyntax(baseUrl, nameof(baseUrl));
        CheckAllowed(baseUrl, null);
        using var response = await FetchAsync(new Uri(Trim(baseUrl) + "/keys"), baseUrl, null, cancellationToken).ConfigureAwait(false);
        try
        {
            using var doc = JsonDocument.Parse(response.Body.Span[..response.Length].ToArray());
            return [.. doc.RootElement.GetProperty("kids").EnumerateArray().Select(k => k.GetString() ?? throw new InvalidOperationException())];
        }
        catch (Exception e) when (e is JsonException or InvalidOperationException or KeyNotFoundException)
        {
            throw Fail(ErrorCode.KeyResponseMalformed, baseUrl, null, "the kid list is not {\"kids\":[…]}");
        }
    }

    /// <summary>Forgets every cached key (their bytes are zeroed).</summary>
    public void ClearCache()
    {
        lock (_cacheLock)
        {
            foreach (var c in _cache.Values) c.Dispose();
            _cache.Clear();
        }
    }

    /// <inheritdoc />
    public void Dispose()
    {
        ClearCache();
        _http.Dispose();
    }

    /// <inheritdoc />
    public override string ToString() => $"{Name}(priority {Priority}, {_options.BaseUrls.Count} servers)";

    private async Task<T?> LookupAsync<T>(string? jku, string kid, Func<CachedKeys, string, T?> select, CancellationToken ct) where T : class
    {
        IReadOnlyList<Uri> bases;
        if (jku is null) bases = _options.BaseUrls;
        else
        {
            if (!Uri.TryCreate(jku, UriKind.Absolute, out var u) || !IsHttpUrl(jku))
                throw Fail(ErrorCode.KeyHostNotAllowed, null, kid, $"the key location '{Clip(jku)}' is not an http(s) URL");
            try
            {
                CheckBaseSyntax(u, nameof(jku));
            }
            catch (ArgumentException e)
            {
                throw Fail(ErrorCode.KeyHostNotAllowed, u, kid, e.Message);
            }
            bases = [u];
        }
        KeyException? failed = null, notFound = null;
        foreach (var b in bases)
        {
            CheckAllowed(b, kid);
            CachedKeys keys;
            bool cached;
            try
            {
                (keys, cached) = await GetKeysAsync(b, kid, ct).ConfigureAwait(false);
            }
            catch (KeyException e) when (e.Code == ErrorCode.KeyNotFoundOnServer)
            {
                notFound ??= e;
                continue;
            }
            catch (KeyException e) when (e.Code is ErrorCode.KeyServerUnreachable or ErrorCode.KeyServerTimeout)
            {
                failed ??= e;
                continue;
            }
            try
            {
                lock (_cacheLock)
                {
                    var found = select(keys, kid);
                    if (found is not null) return found;
                }
            }
            finally
            {
                if (!cached) keys.Dispose();
            }
        }
        if (failed is not null) throw failed;
        if (notFound is not null) throw notFound;
        return null;
    }

    /// <summary>The keys of <paramref name="kid"/> on one server, from the cache while fresh.</summary>
    private async Task<(CachedKeys Keys, bool Cached)> GetKeysAsync(Uri baseUrl, string kid, CancellationToken ct)
    {
        var cacheKey = (Trim(baseUrl), kid);
        var now = _options.TimeProvider.GetUtcNow();
        lock (_cacheLock)
        {
            if (_cache.TryGetValue(cacheKey, out var hit))
            {
                if (hit.Expires > now) return (hit, true);
                _cache.Remove(cacheKey);
                hit.Dispose();
            }
        }
        var url = new Uri(Trim(baseUrl) + "/keys/" + Uri.EscapeDataString(kid));
        using var response = await FetchAsync(url, baseUrl, kid, ct).ConfigureAwait(false);
        var (master, verify) = RemoteJwk.Parse(response.Body.Memory[..response.Length], kid, why => Fail(ErrorCode.KeyResponseMalformed, baseUrl, kid, why));
        var keys = new CachedKeys(master, verify, now + CacheLifetime(response.CacheControl));
        if (keys.Expires <= now) return (keys, false);
        lock (_cacheLock)
        {
            if (_cache.Remove(cacheKey, out var old)) old.Dispose();
            _cache[cacheKey] = keys;
        }
        return (keys, true);
    }

    private TimeSpan CacheLifetime(CacheControlHeaderValue? cc)
    {
        if (!_options.CacheEnabled || cc is null || cc.NoStore || cc.NoCache || cc.MaxAge is not { } age || age <= TimeSpan.Zero) return TimeSpan.Zero;
        return age < _options.MaxCacheLifetime ? age : _options.MaxCacheLifetime;
    }

    /// <summary>One GET with retries; the body lands in a pinned buffer the caller disposes.</summary>
    private async Task<Response> FetchAsync(Uri url, Uri baseUrl, string? kid, CancellationToken ct)
    {
        for (var attempt = 1; ; attempt++)
        {
            TimeSpan? retryAfter = null;
            try
            {
                return await FetchOnceAsync(url, baseUrl, kid, ct).ConfigureAwait(false);
            }
            catch (RetryableException r) when (attempt < _options.MaxAttempts)
            {
                retryAfter = r.RetryAfter;
            }
            catch (RetryableException r)
            {
                throw r.Final(attempt);
            }
            var delay = _options.RetryDelay * Math.Pow(2, attempt - 1) * (0.8 + 0.4 * Random.Shared.NextDouble());
            if (retryAfter is { } ra && ra > delay) delay = ra < TimeSpan.FromSeconds(5) ? ra : TimeSpan.FromSeconds(5);
            await Task.Delay(delay, ct).ConfigureAwait(false);
        }
    }

    private async Task<Response> FetchOnceAsync(Uri url, Uri baseUrl, string? kid, CancellationToken ct)
    {
        using var timeout = CancellationTokenSource.CreateLinkedTokenSource(ct);
        timeout.CancelAfter(_options.ReadTimeout);
        using var request = new HttpRequestMessage(HttpMethod.Get, url);
        request.Headers.Accept.ParseAdd("application/jwk-set+json");
        request.Headers.Accept.ParseAdd("application/jwk+json");
        request.Headers.Accept.ParseAdd("application/json");
        if (_options.LicenceToken is { } token) request.Headers.Authorization = new AuthenticationHeaderValue("Bearer", token);
        HttpResponseMessage response;
        Interlocked.Increment(ref _requests);
        try
        {
            response = await _http.SendAsync(request, HttpCompletionOption.ResponseHeadersRead, timeout.Token).ConfigureAwait(false);
        }
        catch (OperationCanceledException) when (!ct.IsCancellationRequested)
        {
            throw Retryable(ErrorCode.KeyServerTimeout, baseUrl, kid, $"no answer within {_options.ReadTimeout.TotalSeconds:0.###} s");
        }
        catch (HttpRequestException e)
        {
            throw Classify(e, baseUrl, kid);
        }
        using (response)
        {
            var status = (int)response.StatusCode;
            if (status != 200)
            {
                var reason = await ReasonAsync(response, timeout.Token).ConfigureAwait(false);
                var said = $"{status}{(reason is null ? "" : ": " + reason)}";
                switch (status)
                {
                    case 401 or 403: throw Fail(ErrorCode.KeyLicenceRefused, baseUrl, kid, $"the licence was refused ({said})");
                    case 404: throw Fail(ErrorCode.KeyNotFoundOnServer, baseUrl, kid, $"the server has no such key ({said})");
                    case 410: throw Fail(ErrorCode.KeyRevoked, baseUrl, kid, $"the licence was revoked ({said})");
                    case 429 or >= 500:
                        throw Retryable(ErrorCode.KeyServerUnreachable, baseUrl, kid, $"the server is unavailable ({said})",
                            response.Headers.RetryAfter?.Delta);
                    default: throw Fail(ErrorCode.KeyResponseMalformed, baseUrl, kid, $"unexpected status {said}");
                }
            }
            var limit = _options.MaxResponseBytes;
            if (response.Content.Headers.ContentLength is { } declared && declared > limit)
                throw Fail(ErrorCode.KeyResponseTooLarge, baseUrl, kid, $"the response declares {declared:N0} bytes, above the limit of {limit:N0}");
            var body = new SecretBuffer(limit + 1);
            try
            {
                var stream = await response.Content.ReadAsStreamAsync(timeout.Token).ConfigureAwait(false);
                await using (stream.ConfigureAwait(false))
                {
                    var n = 0;
                    while (true)
                    {
                        var read = await stream.ReadAsync(body.Memory[n..], timeout.Token).ConfigureAwait(false);
                        if (read == 0) break;
                        n += read;
                        if (n > limit) throw Fail(ErrorCode.KeyResponseTooLarge, baseUrl, kid, $"the response exceeds the limit of {limit:N0} bytes");
                    }
                    return new Response(body, n, response.Headers.CacheControl);
                }
            }
            catch (OperationCanceledException) when (!ct.IsCancellationRequested)
            {
                body.Dispose();
                throw Retryable(ErrorCode.KeyServerTimeout, baseUrl, kid, $"the response was not complete within {_options.ReadTimeout.TotalSeconds:0.###} s");
            }
            catch (HttpRequestException e)
            {
                body.Dispose();
                throw Classify(e, baseUrl, kid);
            }
            catch (IOException)
            {
                body.Dispose();
                throw Retryable(ErrorCode.KeyServerUnreachable, baseUrl, kid, "the connection broke while reading the response");
            }
            catch
            {
                body.Dispose();
                throw;
            }
        }
    }

    /// <summary>The server's short reason for a refusal (<c>{"error":"…"}</c>), printable ASCII, at most 120 characters.</summary>
    private static async Task<string?> ReasonAsync(HttpResponseMessage response, CancellationToken ct)
    {
        try
        {
            var stream = await response.Content.ReadAsStreamAsync(ct).ConfigureAwait(false);
            await using (stream.ConfigureAwait(false))
            {
                var buffer = new byte[1024];
                var n = 0;
                int read;
                while (n < buffer.Length && (read = await stream.ReadAsync(buffer.AsMemory(n), ct).ConfigureAwait(false)) > 0) n += read;
                using var doc = JsonDocument.Parse(buffer.AsMemory(0, n));
                if (doc.RootElement.ValueKind != JsonValueKind.Object || !doc.RootElement.TryGetProperty("error", out var e) || e.ValueKind != JsonValueKind.String) return null;
                var text = new string([.. e.GetString()!.Where(c => c is >= ' ' and <= '~').Take(120)]);
                return text.Length == 0 ? null : text;
            }
        }
        catch (Exception e) when (e is JsonException or IOException or HttpRequestException or OperationCanceledException)
        {
            return null;
        }
    }

    private Exception Classify(HttpRequestException e, Uri baseUrl, string? kid)
    {
        if (e.HttpRequestError == HttpRequestError.SecureConnectionError || e.InnerException is AuthenticationException)
            return Fail(ErrorCode.KeyServerTlsFailure, baseUrl, kid, "the TLS handshake failed (" + TlsReason(e) + ")");
        if (e.InnerException is TimeoutException || e.InnerException is OperationCanceledException)
            return Retryable(ErrorCode.KeyServerTimeout, baseUrl, kid, $"no connection within {_options.ConnectTimeout.TotalSeconds:0.###} s");
        var what = e.HttpRequestError switch
        {
            HttpRequestError.NameResolutionError => "the host name does not resolve",
            HttpRequestError.ConnectionError => "the connection was refused or failed",
            HttpRequestError.ResponseEnded => "the server closed the connection",
            HttpRequestError.InvalidResponse => "the response is not HTTP",
            _ => "the request failed",
        };
        if (e.HttpRequestError == HttpRequestError.InvalidResponse) return Fail(ErrorCode.KeyResponseMalformed, baseUrl, kid, what);
        return Retryable(ErrorCode.KeyServerUnreachable, baseUrl, kid, what);
    }

    private static string TlsReason(HttpRequestException e)
    {
        for (Exception? x = e; x is not null; x = x.InnerException)
        {
            if (x is AuthenticationException a) return OneLine(a.Message);
        }
        return OneLine(e.Message);
    }

    private static string OneLine(string s) => s.Replace('\r', ' ').Replace('\n', ' ');

    private void CheckAllowed(Uri url, string? kid)
    {
        var host = Host(url);
        if (url.Scheme == Uri.UriSchemeHttp && !(_options.AllowInsecureLoopback && HttpsKeyProviderOptions.IsLoopback(host)))
            throw Fail(ErrorCode.KeyHostNotAllowed, url, kid, "plain http is refused (https only; http only to loopback when the caller allows it)");
        // A *.suffix entry matches host names only: never an IP address (127.0.0.1 is not below *.0.0.1).
        var isAddress = IPAddress.TryParse(host, out _);
        foreach (var (exact, suffix) in _allowed)
        {
            if (suffix is null ? host == exact : !isAddress && host.Length > suffix.Length && host.EndsWith(suffix, StringComparison.Ordinal)) return;
        }
        throw Fail(ErrorCode.KeyHostNotAllowed, url, kid, $"the host '{host}' is not on the key server allowlist; it was not contacted");
    }

    private static string Host(Uri url) => url.IdnHost.Trim('[', ']').TrimEnd('.').ToLowerInvariant();

    private static (string, string?) ParseAllowEntry(string entry)
    {
        var e = (entry ?? "").Trim().ToLowerInvariant().TrimEnd('.');
        if (e.StartsWith('[') && e.EndsWith(']')) e = e[1..^1];
        if (e.Length == 0 || e == "*" || e == "*." || e.Contains('/') || e.Contains("://", StringComparison.Ordinal)
            || (e.Contains(':') && !IPAddress.TryParse(e, out _)) || (e.Contains('*') && !(e.StartsWith("*.", StringComparison.Ordinal) && e.LastIndexOf('*') == 0)))
            throw new ArgumentException($"allowlist entry '{entry}' must be a host name or address, or *.domain (no scheme, path or port)", nameof(entry));
        return e.StartsWith("*.", StringComparison.Ordinal) ? ("", e[1..]) : (e, null);
    }

    private static void CheckBaseSyntax(Uri u, string what)
    {
        if (!u.IsAbsoluteUri || (u.Scheme != Uri.UriSchemeHttps && u.Scheme != Uri.UriSchemeHttp))
            throw new ArgumentException($"key server URL '{u}' must be an absolute https URL", what);
        if (u.UserInfo.Length > 0 || u.Query.Length > 0 || u.Fragment.Length > 0)
            throw new ArgumentException($"key server URL '{u.Scheme}://{u.Authority}{u.AbsolutePath}' must not carry user info, a query or a fragment", what);
    }

    private static bool IsHttpUrl(string s)
        => s.StartsWith("https://", StringComparison.OrdinalIgnoreCase) || s.StartsWith("http://", StringComparison.OrdinalIgnoreCase);

    private static string Trim(Uri u) => u.GetLeftPart(UriPartial.Path).TrimEnd('/');

    private static string Clip(string s) => s.Length <= 80 ? s : s[..80] + "…";

    internal static KeyException Fail(ErrorCode code, Uri? url, string? kid, string why)
    {
        var host = url?.Authority;
        var e = (KeyException)Errors.Create(code, $"key server {host ?? "?"}{(kid is null ? "" : $", kid '{kid}'")}: {why}");
        e.Kid = kid;
        e.Host = host ?? "";
        return e;
    }

    private static RetryableException Retryable(ErrorCode code, Uri url, string? kid, string why, TimeSpan? retryAfter = null)
        => new(Fail(code, url, kid, why), retryAfter);

    /// <summary>A failure worth another attempt; the last one is raised as its key error, saying how many were made.</summary>
    private sealed class RetryableException(KeyException error, TimeSpan? retryAfter) : Exception(error.Message)
    {
        public TimeSpan? RetryAfter { get; } = retryAfter;

        public KeyException Final(int attempts)
        {
            if (attempts <= 1) return error;
            var e = (KeyException)Errors.Create(error.Code, $"{error.Message} (after {attempts} attempts)", inner: error);
            e.Kid = error.Kid;
            e.Host = error.Host;
            return e;
        }
    }

    private sealed class Response(SecretBuffer body, int length, CacheControlHeaderValue? cacheControl) : IDisposable
    {
        public SecretBuffer Body { get; } = body;
        public int Length { get; } = length;
        public CacheControlHeaderValue? CacheControl { get; } = cacheControl;
        public void Dispose() => Body.Dispose();
    }

    /// <summary>The keys of one kid from one server, owned by the cache (or by one lookup when not cacheable).</summary>
    private sealed class CachedKeys(List<MasterKey> master, List<VerificationKey> verify, DateTimeOffset expires) : IDisposable
    {
        public List<VerificationKey> Verify { get; } = verify;
        public DateTimeOffset Expires { get; } = expires;
        /// <summary>A copy of the master key that the caller owns (the cached one stays with the cache).</summary>
        public MasterKey? CopyMaster() => master.Count == 0 ? null : master[0].WithBytesCopy();

        public void Dispose()
        {
            foreach (var m in master) m.Dispose();
        }
    }
}
