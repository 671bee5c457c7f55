using System.Diagnostics;
using System.Net.Sockets;
using System.Security.Cryptography;
using System.Security.Cryptography.X509Certificates;
using System.Text;
using System.Text.Json;
using CryptoTensors.Cli.KeyServer;
using CryptoTensors.Gpu.Crypto;
using CryptoTensors.Gpu.Keys;
using CryptoTensors.Gpu.Reading;
using CryptoTensors.Gpu.Writing;

namespace CryptoTensors.Gpu.Tests.Keys;

/// <summary>
/// The HTTPS key provider against the real key server (in process, 127.0.0.1, self-signed TLS) and against raw
/// loopback servers that misbehave on purpose. Every refusal must be a typed <see cref="KeyException"/> naming the kid
/// and the host; no message, log line or audit record may carry a key byte or a token.
/// </summary>
[NonParallelizable]
[System.Runtime.Versioning.UnsupportedOSPlatform("windows")]
public sealed class HttpsKeyProviderTests
{
    private VendorServer _server = null!;
    private readonly List<string> _messages = [];

    [OneTimeSetUp]
    public async Task StartServer() => _server = await VendorServer.StartAsync();

    [OneTimeTearDown]
    public async Task StopServer()
    {
        // Last: nothing any test saw may carry a secret (messages of every refusal, the server's log, the audit log).
        var everything = string.Join("\n", _messages) + "\n" + _server.Log + "\n" + File.ReadAllText(_server.Audit);
        await _server.DisposeAsync();
        foreach (var secret in _server.Secrets) Assert.That(everything, Does.Not.Contain(secret), "a key byte or a token leaked into a message or a log");
    }

    private KeyException Refused(Func<object?> lookup, ErrorCode code, string? kid = "v-enc")
    {
        var e = Assert.Throws<KeyException>(() => (lookup() as IDisposable)?.Dispose())!;
        _messages.Add(e.Message);
        Assert.That(e.Code, Is.EqualTo(code), e.Message);
        Assert.That(e.Kind, Is.EqualTo(ErrorKind.Key));
        if (kid is not null)
        {
            Assert.That(e.Kid, Is.EqualTo(kid));
            Assert.That(e.Message, Does.Contain($"kid '{kid}'"));
        }
        Assert.That(e.Host, Is.Not.Null.And.Not.Empty);
        Assert.That(e.Message, Does.Contain(e.Host!), "the message names the host");
        foreach (var secret in _server.Secrets) Assert.That(e.Message, Does.Not.Contain(secret));
        return e;
    }

    [Test]
    public async Task HappyPathServesTheMasterKeyAndThePublicKeyButNeverTheSigningKey()
    {
        using var p = _server.Provider();
        using (var m = p.GetMasterKey(null, "v-enc"))
        {
            Assert.That(m, Is.Not.Null);
            Assert.That(m!.Bytes.ToArray(), Is.EqualTo(_server.Master.Bytes.ToArray()));
            Assert.That((m.Kid, m.Algorithm, m.Source), Is.EqualTo(("v-enc", AeadAlgorithm.Aes256Gcm, KeySources.Https)));
            Assert.That(m.ToString(), Does.Not.Contain(Convert.ToBase64String(_server.Master.Bytes)));
        }
        using (var m = await p.GetMasterKeyAsync(null, "v-enc"))
            Assert.That(m!.Bytes.ToArray(), Is.EqualTo(_server.Master.Bytes.ToArray()), "the async fetch, from the cache");
        var v = p.GetVerificationKey(null, "v-sign");
        Assert.That(v!.PublicKey.ToArray(), Is.EqualTo(_server.Signer.Public.PublicKey.ToArray()));
        Assert.That(p.GetSigningKey(null, "v-sign"), Is.Null, "signing keys never come from a key server");
        Assert.That(p.GetMasterKey(null, "v-sign"), Is.Null, "v-sign is served as a public key only");
        Assert.That(await p.ListKidsAsync(_server.Host.Url), Is.EqualTo(new[] { "v-enc", "v-sign" }));
        Assert.That(_server.Log.ToString(), Does.Contain("skipped sign.jwk: a private signing key (kid 'v-sign') is never served"));

        // What goes over the wire: the reference's JWK Set, no 'd', a max-age.
        var pinned = X509CertificateLoader.LoadCertificateFromFile(_server.Ca).GetCertHashString(HashAlgorithmName.SHA256);
        using var http = new HttpClient(new SocketsHttpHandler
        {
            SslOptions = { RemoteCertificateValidationCallback = (_, cert, _, _) => cert is not null && cert.GetCertHashString(HashAlgorithmName.SHA256) == pinned },
        });
        using var request = new HttpRequestMessage(HttpMethod.Get, new Uri(_server.Host.Url, "/keys/v-sign"));
        request.Headers.Authorization = new("Bearer", VendorServer.GoodToken);
        using var response = await http.SendAsync(request);
        var body = await response.Content.ReadAsStringAsync();
        Assert.That((int)response.StatusCode, Is.EqualTo(200));
        Assert.That(body, Does.Not.Contain("\"d\"").And.Contain("\"kty\":\"okp\""));
        Assert.That(response.Headers.CacheControl!.MaxAge, Is.EqualTo(TimeSpan.FromSeconds(300)));
    }

    [Test]
    public void AFileOpensWithRemoteKeysAndThePolicySeesKeysSourceHttps()
    {
        var path = _server.Tmp.File("https-only.ct");
        const string policy = "package model\nimport rego.v1\ndefault allow := false\nallow if input.keys.source == \"https\"\n";
        CryptoTensorsWriter.Write(path, TestModels.EveryDtype(), new WriterOptions
        {
            MasterKey = _server.Master, SigningKey = _server.Signer, Policy = new AccessPolicy(policy, AccessPolicy.DefaultText),
        });
        using var p = _server.Provider();
        using (var r = CryptoTensorsReader.Open(path, new ReaderOptions { Keys = new KeyRegistry().Register(p) }))
            Assert.That(TestModels.ReadAll(r), Has.Count.EqualTo(TestModels.EveryDtype().Count));
        var e = Assert.Throws<PolicyDeniedException>(() => CryptoTensorsReader.Open(path, new ReaderOptions
        {
            MasterKey = _server.Master, VerificationKey = _server.Signer.Public, Keys = new KeyRegistry(),
        }).Dispose())!;
        Assert.That(e.InputDocument, Does.Contain("\"source\":\"direct\""), "a key given directly is reported as direct");
    }

    [Test]
    public void AnUnknownKidIs404()
    {
        using var p = _server.Provider();
        Refused(() => p.GetMasterKey(null, "v-missing"), ErrorCode.KeyNotFoundOnServer, "v-missing");
    }

    [Test]
    public void WrongExpiredRevokedAndUnboundLicencesAreRefused()
    {
        using (var p = _server.Provider("tok-wrong-0123456789abcdef"))
            Assert.That(Refused(() => p.GetMasterKey(null, "v-enc"), ErrorCode.KeyLicenceRefused).Message, Does.Contain("401").And.Contain("unknown licence token"));
        using (var p = _server.Provider(null))
            Assert.That(Refused(() => p.GetMasterKey(null, "v-enc"), ErrorCode.KeyLicenceRefused).Message, Does.Contain("401"));
        using (var p = _server.Provider(VendorServer.ExpiredToken))
            Assert.That(Refused(() => p.GetMasterKey(null, "v-enc"), ErrorCode.KeyLicenceRefused).Message, Does.Contain("403").And.Contain("expired"));
        using (var p = _server.Provider(VendorServer.RevokedToken))
            Assert.That(Refused(() => p.GetMasterKey(null, "v-enc"), ErrorCode.KeyRevoked).Message, Does.Contain("410"));
        using (var p = _server.Provider(VendorServer.OtherToken))
            Assert.That(Refused(() => p.GetMasterKey(null, "v-enc"), ErrorCode.KeyLicenceRefused).Message, Does.Contain("does not cover"));
        // Bound to a client certificate: refused without it, served with it.
        using (var p = _server.Provider(VendorServer.PinnedToken))
            Assert.That(Refused(() => p.GetMasterKey(null, "v-enc"), ErrorCode.KeyLicenceRefused).Message, Does.Contain("client certificate"));
        using (var p = new HttpsKeyProvider(new HttpsKeyProviderOptions
        {
            BaseUrls = [_server.Host.Url], AllowedHosts = ["127.0.0.1"], LicenceToken = VendorServer.PinnedToken,
            TrustedRoots = HttpsKeyProviderOptions.LoadTrustedRoots(_server.Ca), ClientCertificate = _server.ClientCert,
        }))
        using (var m = p.GetMasterKey(null, "v-enc"))
            Assert.That(m, Is.Not.Null);
    }

    [Test]
    public void ARevocationTakesEffectWithoutARestart()
    {
        using (var p = _server.Provider(VendorServer.LaterToken))
        using (var m = p.GetMasterKey(null, "v-enc"))
            Assert.That(m, Is.Not.Null, "the licence given by its token's SHA-256 works");
        _server.WriteLicences(laterRevoked: true);
        try
        {
            using var p = _server.Provider(VendorServer.LaterToken);
            Refused(() => p.GetMasterKey(null, "v-enc"), ErrorCode.KeyRevoked);
        }
        finally
        {
            _server.WriteLicences(laterRevoked: false);
        }
    }

    [Test]
    public void TheRegistryRaisesTheServersRefusalNotAMissingKey()
    {
        using var p = _server.Provider(VendorServer.RevokedToken);
        using var tmp = new TempDir();
        File.WriteAllText(tmp.File("keys.jwk"), "not json");
        var registry = new KeyRegistry().Register(p).Register(new FileKeyProvider(tmp.Path));
        var e = Refused(() => registry.GetMasterKey(null, "v-enc"), ErrorCode.KeyRevoked);
        Assert.That(e.Message, Does.Contain("(https: ").And.Contain("; file: invalid JWK"), "the other providers' reasons are kept");
    }

    [Test]
    public void AHostNotOnTheAllowlistIsNeverContacted()
    {
        using var listener = new RawServer((s, _, ct) => RawServer.RespondAsync(s, 500, "{}", "", ct));
        HttpsKeyProvider Make(params string[] allow) => new(new HttpsKeyProviderOptions
        {
            BaseUrls = [listener.Url], AllowedHosts = allow, AllowInsecureLoopback = true, MaxAttempts = 1,
        });
        foreach (var allow in new[] { Array.Empty<string>(), ["localhost"], ["::1"], ["*.0.0.1"], ["127.0.0.10"], ["*.example.com"] })
        {
            using var p = Make(allow);
            Assert.That(Refused(() => p.GetMasterKey(null, "v-enc"), ErrorCode.KeyHostNotAllowed).Message, Does.Contain("not contacted").Or.Contain("allowlist"));
        }
        // Plain http is refused without the loopback opt-in, and never allowed to any other host.
        using (var p = new HttpsKeyProvider(new HttpsKeyProviderOptions { BaseUrls = [listener.Url], AllowedHosts = ["127.0.0.1"] }))
            Assert.That(Refused(() => p.GetMasterKey(null, "v-enc"), ErrorCode.KeyHostNotAllowed).Message, Does.Contain("plain http"));
        using (var p = new HttpsKeyProvider(new HttpsKeyProviderOptions { BaseUrls = [new Uri("http://10.1.2.3:1")], AllowedHosts = ["10.1.2.3"], AllowInsecureLoopback = true }))
            Refused(() => p.GetMasterKey(null, "v-enc"), ErrorCode.KeyHostNotAllowed);
        Assert.That(listener.Accepts, Is.Zero, "no connection was ever made to a host off the allowlist");

        // Allowlist syntax: exact hosts and *.suffix only.
        foreach (var bad in new[] { "*", "https://a.example.com", "a.example.com/x", "a.example.com:443", "a*.example.com", "" })
            Assert.Throws<ArgumentException>(() => Make(bad).Dispose(), bad);
        using var wildcard = new HttpsKeyProvider(new HttpsKeyProviderOptions
        {
            BaseUrls = [new Uri("https://example.com"), new Uri("https://badexample.com")], AllowedHosts = ["*.example.com"],
        });
        Refused(() => wildcard.GetMasterKey(null, "v-enc"), ErrorCode.KeyHostNotAllowed);
    }

    [Test]
    public void AHeaderJkuIsFollowedOnlyWhenAskedAndOnlyToAnAllowedHost()
    {
        using var listener = new RawServer((s, _, ct) => RawServer.RespondAsync(s, 500, "{}", "", ct));
        var path = _server.Tmp.File("jku.ct");
        using (var m = MasterKey.FromBytes(_server.Master.Bytes, AeadAlgorithm.Aes256Gcm, "v-enc", jku: listener.Url.ToString()))
            CryptoTensorsWriter.Write(path, TestModels.EveryDtype(), new WriterOptions { MasterKey = m, SigningKey = _server.Signer });
        using var p = _server.Provider();
        var registry = new KeyRegistry().Register(p);
        var e = Assert.Throws<KeyException>(() => CryptoTensorsReader.Open(path, new ReaderOptions
        {
            Keys = registry, FollowHeaderKeyLocations = true, VerificationKey = _server.Signer.Public,
        }).Dispose())!;
        _messages.Add(e.Message);
        Assert.That(e.Code, Is.EqualTo(ErrorCode.KeyHostNotAllowed), e.Message);
        // Not following (the default): the header's jku is ignored and the configured server answers by kid.
        using (var r = CryptoTensorsReader.Open(path, new ReaderOptions { Keys = registry, VerificationKey = _server.Signer.Public }))
            Assert.That(r.Tensors, Is.Not.Empty);
        Assert.That(listener.Accepts, Is.Zero, "the header's key location was never contacted");
    }

    [Test]
    public void AServerThatIsDownIsUnreachableAfterBoundedRetries()
    {
        var l = new TcpListener(System.Net.IPAddress.Loopback, 0);
        l.Start();
        var port = ((System.Net.IPEndPoint)l.LocalEndpoint).Port;
        l.Stop();
        using var p = new HttpsKeyProvider(new HttpsKeyProviderOptions
        {
            BaseUrls = [new Uri($"http://127.0.0.1:{port}")], AllowedHosts = ["127.0.0.1"], AllowInsecureLoopback = true,
            MaxAttempts = 3, RetryDelay = TimeSpan.FromMilliseconds(20),
        });
        var e = Refused(() => p.GetMasterKey(null, "v-enc"), ErrorCode.KeyServerUnreachable);
        Assert.That(e.Message, Does.Contain("after 3 attempts"));
        Assert.That(p.RequestCount, Is.EqualTo(3), "retries are bounded by MaxAttempts");
    }

    [Test]
    public void ASlowServerTimesOut()
    {
        using var slow = new RawServer(async (s, _, ct) =>
        {
            await RawServer.ReadRequestAsync(s, ct);
            await Task.Delay(TimeSpan.FromSeconds(10), ct);
        });
        using var p = new HttpsKeyProvider(new HttpsKeyProviderOptions
        {
            BaseUrls = [slow.Url], AllowedHosts = ["127.0.0.1"], AllowInsecureLoopback = true, ReadTimeout = TimeSpan.FromMilliseconds(300), MaxAttempts = 1,
        });
        // The server answers nothing for 10 s: only the 300 ms read timeout can produce KeyServerTimeout.
        Refused(() => p.GetMasterKey(null, "v-enc"), ErrorCode.KeyServerTimeout);
        using var cts = new CancellationTokenSource(TimeSpan.FromMilliseconds(100));
        Assert.CatchAsync<OperationCanceledException>(async () => await new HttpsKeyProvider(new HttpsKeyProviderOptions
        {
            BaseUrls = [slow.Url], AllowedHosts = ["127.0.0.1"], AllowInsecureLoopback = true, MaxAttempts = 1,
        }).GetMasterKeyAsync(null, "v-enc", cts.Token), "the caller's cancellation is not a key error");
    }

    [TestCase(true)]
    [TestCase(false)]
    public void A50MegabyteBodyIsRefusedWithoutBeingRead(bool declared)
    {
        long sent = 0;
        const long Huge = 50L << 20;
        using var huge = new RawServer(async (s, _, ct) =>
        {
            await RawServer.ReadRequestAsync(s, ct);
            var head = declared
                ? $"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {Huge}\r\n\r\n"
                : "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nConnection: close\r\n\r\n";
            await s.WriteAsync(Encoding.ASCII.GetBytes(head), ct);
            var chunk = new byte[64 << 10];
            chunk.AsSpan().Fill((byte)' ');
            while (Interlocked.Read(ref sent) < Huge)
            {
                await s.WriteAsync(chunk, ct);
                Interlocked.Add(ref sent, chunk.Length);
            }
        });
        using var p = new HttpsKeyProvider(new HttpsKeyProviderOptions
        {
            BaseUrls = [huge.Url], AllowedHosts = ["127.0.0.1"], AllowInsecureLoopback = true, MaxAttempts = 1,
        });
        var e = Refused(() => p.GetMasterKey(null, "v-enc"), ErrorCode.KeyResponseTooLarge);
        Assert.That(e.Message, Does.Contain(declared ? "declares" : "exceeds"));
        Thread.Sleep(200);
        Assert.That(Interlocked.Read(ref sent), Is.LessThan(Huge / 2), "the client stopped reading long before the end");
    }

    [Test]
    public void UnavailableIsRetriedAndMalformedAnswersAreRefused()
    {
        var body = Jwk.Write(_server.Master);
        using var flaky = new RawServer(async (s, i, ct) =>
        {
            await RawServer.ReadRequestAsync(s, ct);
            await (i == 0 ? RawServer.RespondAsync(s, 503, "{\"error\":\"busy\"}", "", ct) : RawServer.RespondAsync(s, 200, body, "", ct));
        });
        using (var p = new HttpsKeyProvider(new HttpsKeyProviderOptions
        {
            BaseUrls = [flaky.Url], AllowedHosts = ["127.0.0.1"], AllowInsecureLoopback = true, MaxAttempts = 2, RetryDelay = TimeSpan.FromMilliseconds(10),
        }))
        using (var m = p.GetMasterKey(null, "v-enc"))
        {
            Assert.That(m!.Bytes.ToArray(), Is.EqualTo(_server.Master.Bytes.ToArray()));
            Assert.That(flaky.Accepts, Is.EqualTo(2));
        }
        foreach (var (answer, why) in new[]
        {
            ("not json", "not JSON"),
            ("[1,2]", "not a JWK"),
            (Jwk.Write(_server.Signer).Replace("v-sign", "v-enc", StringComparison.Ordinal), "private signing key"),
            ("{\"kty\":\"oct\",\"alg\":\"aes256gcm\",\"kid\":\"v-enc\",\"k\":\"c2hvcnQ=\"}", "not base64 of 32 bytes"),
        })
        {
            using var bad = new RawServer(async (s, _, ct) =>
            {
                await RawServer.ReadRequestAsync(s, ct);
                await RawServer.RespondAsync(s, 200, answer, "", ct);
            });
            using var p = new HttpsKeyProvider(new HttpsKeyProviderOptions { BaseUrls = [bad.Url], AllowedHosts = ["127.0.0.1"], AllowInsecureLoopback = true });
            Assert.That(Refused(() => p.GetMasterKey(null, "v-enc"), ErrorCode.KeyResponseMalformed).Message, Does.Contain(why));
        }
    }

    [Test]
    public void AnUntrustedCertificateIsATlsFailure()
    {
        // The system roots do not include the server's self-signed certificate; nor does another CA.
        using (var p = new HttpsKeyProvider(_server.Options() is var o ? new HttpsKeyProviderOptions
        {
            BaseUrls = o.BaseUrls, AllowedHosts = o.AllowedHosts, LicenceToken = o.LicenceToken, MaxAttempts = 1,
        } : null!))
            Refused(() => p.GetMasterKey(null, "v-enc"), ErrorCode.KeyServerTlsFailure);
        using var ec = ECDsa.Create();
        using var other = new CertificateRequest("CN=other", ec, HashAlgorithmName.SHA256).CreateSelfSigned(DateTimeOffset.UtcNow.AddDays(-1), DateTimeOffset.UtcNow.AddDays(1));
        using (var p = new HttpsKeyProvider(new HttpsKeyProviderOptions
        {
            BaseUrls = [_server.Host.Url], AllowedHosts = ["127.0.0.1"], LicenceToken = VendorServer.GoodToken, TrustedRoots = [X509CertificateLoader.LoadCertificate(other.RawData)],
        }))
            Refused(() => p.GetMasterKey(null, "v-enc"), ErrorCode.KeyServerTlsFailure);
    }

    [Test]
    public void TheCacheFollowsMaxAgeAndCanBeDisabled()
    {
        var clock = new ManualClock();
        var o = _server.Options();
        using (var p = new HttpsKeyProvider(new HttpsKeyProviderOptions
        {
            BaseUrls = o.BaseUrls, AllowedHosts = o.AllowedHosts, LicenceToken = o.LicenceToken, TrustedRoots = o.TrustedRoots, TimeProvider = clock,
        }))
        {
            p.GetMasterKey(null, "v-enc")!.Dispose();
            p.GetMasterKey(null, "v-enc")!.Dispose();
            Assert.That(p.GetVerificationKey(null, "v-enc"), Is.Null);
            Assert.That(p.RequestCount, Is.EqualTo(1), "a hit within max-age (300 s) sends nothing");
            clock.Now += TimeSpan.FromSeconds(299);
            p.GetMasterKey(null, "v-enc")!.Dispose();
            Assert.That(p.RequestCount, Is.EqualTo(1));
            clock.Now += TimeSpan.FromSeconds(2);
            p.GetMasterKey(null, "v-enc")!.Dispose();
            Assert.That(p.RequestCount, Is.EqualTo(2), "expired: fetched again");
        }
        using (var p = new HttpsKeyProvider(new HttpsKeyProviderOptions
        {
            BaseUrls = o.BaseUrls, AllowedHosts = o.AllowedHosts, LicenceToken = o.LicenceToken, TrustedRoots = o.TrustedRoots, CacheEnabled = false,
        }))
        {
            p.GetMasterKey(null, "v-enc")!.Dispose();
            p.GetMasterKey(null, "v-enc")!.Dispose();
            Assert.That(p.RequestCount, Is.EqualTo(2), "cache disabled");
        }
        // No max-age (or no-store): never cached.
        var body = Jwk.Write(_server.Master);
        using var raw = new RawServer(async (s, i, ct) =>
        {
            await RawServer.ReadRequestAsync(s, ct);
            await RawServer.RespondAsync(s, 200, body, i == 0 ? "Cache-Control: no-store\r\n" : "", ct);
        });
        using var q = new HttpsKeyProvider(new HttpsKeyProviderOptions { BaseUrls = [raw.Url], AllowedHosts = ["127.0.0.1"], AllowInsecureLoopback = true });
        q.GetMasterKey(null, "v-enc")!.Dispose();
        q.GetMasterKey(null, "v-enc")!.Dispose();
        Assert.That(q.RequestCount, Is.EqualTo(2));
    }

    [Test]
    public async Task FiftyConcurrentClientsAreServedCorrectly()
    {
        var expected = _server.Master.Bytes.ToArray();
        var clients = Enumerable.Range(0, 50).Select(_ => _server.Provider()).ToList();
        try
        {
            var results = await Task.WhenAll(clients.Select(c => Task.Run(async () =>
            {
                using var m = await c.GetMasterKeyAsync(null, "v-enc");
                return m!.Bytes.ToArray();
            })));
            Assert.That(results, Has.All.EqualTo(expected));
        }
        finally
        {
            foreach (var c in clients) c.Dispose();
        }
        var served = File.ReadAllLines(_server.Audit).Count(l => l.Contains("\"licence\":\"good\"", StringComparison.Ordinal) && l.Contains("\"status\":200", StringComparison.Ordinal));
        Assert.That(served, Is.GreaterThanOrEqualTo(50));
    }

    [Test]
    public async Task TheAuditLogNamesLicencesAndKidsAndTheRateIsBoundedPerLicence()
    {
        using (var p = _server.Provider("tok-unknown-0123456789abcdef"))
            Refused(() => p.GetMasterKey(null, "v-enc"), ErrorCode.KeyLicenceRefused);
        var lines = File.ReadAllLines(_server.Audit).Select(l => JsonDocument.Parse(l).RootElement).ToList();
        Assert.That(lines.Any(l => l.GetProperty("status").GetInt32() == 401 && l.TryGetProperty("token_sha256_prefix", out var h) && h.GetString()!.Length == 8), Is.True);
        Assert.That(lines.Any(l => l.GetProperty("licence").GetString() == "good" && l.GetProperty("kid").GetString() == "v-enc" && l.GetProperty("outcome").GetString() == "served"), Is.True);
        Assert.That(File.GetUnixFileMode(_server.Audit), Is.EqualTo(UnixFileMode.UserRead | UnixFileMode.UserWrite));

        // A second server limited to 2 requests a minute per licence: the third is refused (429) and retried, then given up.
        var tmp = _server.Settings(ratePerMinute: 2) with { Listen = new System.Net.IPEndPoint(System.Net.IPAddress.Loopback, 0), AuditLog = _server.Tmp.File("audit2.log") };
        var limited = await KeyServerHost.StartAsync(tmp, TextWriter.Null, CancellationToken.None);
        try
        {
            using var p = new HttpsKeyProvider(new HttpsKeyProviderOptions
            {
                BaseUrls = [limited.Url], AllowedHosts = ["127.0.0.1"], LicenceToken = VendorServer.GoodToken, TrustedRoots = HttpsKeyProviderOptions.LoadTrustedRoots(_server.Ca),
                CacheEnabled = false, MaxAttempts = 2, RetryDelay = TimeSpan.FromMilliseconds(10),
            });
            p.GetMasterKey(null, "v-enc")!.Dispose();
            p.GetMasterKey(null, "v-enc")!.Dispose();
            Assert.That(Refused(() => p.GetMasterKey(null, "v-enc"), ErrorCode.KeyServerUnreachable).Message, Does.Contain("429"));
        }
        finally
        {
            await limited.StopAsync();
        }
    }

    [Test]
    public void TheServerRefusesKeyAndLicenceFilesOthersCanRead()
    {
        using var tmp = new TempDir();
        var keys = Directory.CreateDirectory(tmp.File("keys")).FullName;
        File.WriteAllText(Path.Combine(keys, "enc.jwk"), Jwk.Write(_server.Master));
        File.SetUnixFileMode(Path.Combine(keys, "enc.jwk"), (UnixFileMode)0b110_100_100);
        var e = Assert.Throws<KeyServerConfigException>(() => KeyStore.Load(keys).Dispose())!;
        Assert.That(e.Message, Does.Contain("0644").And.Contain("chmod 600"));
        Assert.That(e.Message, Does.Not.Contain(Convert.ToBase64String(_server.Master.Bytes)));
        File.SetUnixFileMode(Path.Combine(keys, "enc.jwk"), UnixFileMode.UserRead | UnixFileMode.UserWrite);
        using (var store = KeyStore.Load(keys)) Assert.That(store.MasterCount, Is.EqualTo(1));
        File.Copy(_server.Tokens, tmp.File("t.json"));
        File.SetUnixFileMode(tmp.File("t.json"), (UnixFileMode)0b110_100_000);
        Assert.That(Assert.Throws<KeyServerConfigException>(() => _ = new LicenceStore(tmp.File("t.json")))!.Message, Does.Contain("0640"));
    }

    [Test]
    public void RemoteJwkDecodesEscapedAndUrlSafeKeysAndRefusesWrongLengths()
    {
        var k = Convert.ToBase64String(_server.Master.Bytes);
        foreach (var form in new[] { k, k.Replace("/", "\\/", StringComparison.Ordinal).Replace("+", "\\u002B", StringComparison.Ordinal), k.TrimEnd('=').Replace('+', '-').Replace('/', '_') })
        {
            using var s = RemoteJwk.DecodeSecret(Encoding.UTF8.GetBytes("\"" + form + "\""), 32);
            Assert.That(s!.Span.ToArray(), Is.EqualTo(_server.Master.Bytes.ToArray()), form);
        }
        Assert.That(RemoteJwk.DecodeSecret("\"c2hvcnQ=\""u8, 32), Is.Null);
        Assert.That(RemoteJwk.DecodeSecret("\"\\x41\""u8, 32), Is.Null);
    }
}
