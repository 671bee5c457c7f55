using System.Net;
using System.Net.Sockets;
using System.Security.Cryptography;
using System.Security.Cryptography.X509Certificates;
using System.Text;
using CryptoTensors.Cli.KeyServer;
using CryptoTensors.Gpu.Keys;

namespace CryptoTensors.Gpu.Tests.Keys;

/// <summary>A clock the tests move by hand (the key cache's expiry).</summary>
internal sealed class ManualClock : TimeProvider
{
    public DateTimeOffset Now { get; set; } = DateTimeOffset.UtcNow;

    public override DateTimeOffset GetUtcNow() => Now;
}

/// <summary>
/// A vendor's key server on 127.0.0.1 (the real one, in process): a master key <c>v-enc</c>, its public signing key
/// <c>v-sign</c> (the private one lies in the directory too and must never be served), and licences:
/// good, expired, revoked, other (another kid only), pinned (to a client certificate).
/// </summary>
[System.Runtime.Versioning.UnsupportedOSPlatform("windows")]
internal sealed class VendorServer : IAsyncDisposable
{
    public const string GoodToken = "tok-good-0123456789abcdef";
    public const string ExpiredToken = "tok-expired-0123456789abcdef";
    public const string RevokedToken = "tok-revoked-0123456789abcdef";
    public const string OtherToken = "tok-other-0123456789abcdef";
    public const string PinnedToken = "tok-pinned-0123456789abcdef";
    public const string LaterToken = "tok-later-0123456789abcdef";

    public TempDir Tmp { get; } = new();
    public MasterKey Master { get; } = MasterKey.Generate(kid: "v-enc");
    public SigningKey Signer { get; } = SigningKey.Generate("v-sign");
    public X509Certificate2 ClientCert { get; }
    public KeyServerHost Host { get; private set; } = null!;
    public StringWriter Log { get; } = new();
    public string Ca => Tmp.File("tls.crt");
    public string Audit => Tmp.File("audit.log");
    public string Tokens => Tmp.File("licences.json");
    public string KeysDir => Tmp.File("keys");

    /// <summary>Every secret the tests must never find in a message, a log line or an output.</summary>
    public string[] Secrets { get; }

    private VendorServer()
    {
        using var ec = ECDsa.Create(ECCurve.NamedCurves.nistP256);
        using var self = new CertificateRequest("CN=customer", ec, HashAlgorithmName.SHA256).CreateSelfSigned(DateTimeOffset.UtcNow.AddMinutes(-5), DateTimeOffset.UtcNow.AddDays(1));
        ClientCert = X509CertificateLoader.LoadPkcs12(self.Export(X509ContentType.Pfx), null);
        var k = Convert.ToBase64String(Master.Bytes);
        var d = Convert.ToBase64String(Signer.Seed);
        Secrets = [k, Url64(k), d, Url64(d), GoodToken, ExpiredToken, RevokedToken, OtherToken, PinnedToken, LaterToken];
    }

    private static string Url64(string b64) => b64.TrimEnd('=').Replace('+', '-').Replace('/', '_');

    public static async Task<VendorServer> StartAsync(int ratePerMinute = 6000, int maxAge = 300)
    {
        var v = new VendorServer();
        Directory.CreateDirectory(v.KeysDir);
        WritePrivate(Path.Combine(v.KeysDir, "enc.jwk"), Jwk.Write(v.Master));
        WritePrivate(Path.Combine(v.KeysDir, "sign.jwk"), Jwk.Write(v.Signer));
        File.WriteAllText(Path.Combine(v.KeysDir, "sign.pub.jwk"), Jwk.Write(v.Signer.Public));
        v.WriteLicences(laterRevoked: false);
        v.Host = await KeyServerHost.StartAsync(v.Settings(ratePerMinute, maxAge), v.Log, CancellationToken.None);
        return v;
    }

    public KeyServerSettings Settings(int ratePerMinute = 6000, int maxAge = 300) => new()
    {
        KeysDirectory = KeysDir, TokensFile = Tokens, TlsCert = Ca, TlsKey = Tmp.File("tls.key"),
        Listen = new IPEndPoint(IPAddress.Loopback, 0), AuditLog = Audit, RatePerMinute = ratePerMinute, MaxAgeSeconds = maxAge,
    };

    public void WriteLicences(bool laterRevoked)
    {
        var day = DateTimeOffset.UtcNow.AddDays(1).ToString("O");
        var past = DateTimeOffset.UtcNow.AddDays(-1).ToString("O");
        var pin = Convert.ToHexString(SHA256.HashData(ClientCert.RawData));
        var sha = Convert.ToHexStringLower(SHA256.HashData(Encoding.UTF8.GetBytes(LaterToken)));
        var json = $$"""
            {"tokens":[
              {"id":"good","token":"{{GoodToken}}","kids":["v-enc","v-sign","v-missing"],"expires":"{{day}}"},
              {"id":"expired","token":"{{ExpiredToken}}","kids":["v-enc"],"expires":"{{past}}"},
              {"id":"revoked","token":"{{RevokedToken}}","kids":["v-enc"],"revoked":true},
              {"id":"other","token":"{{OtherToken}}","kids":["someone-else"]},
              {"id":"pinned","token":"{{PinnedToken}}","kids":["v-enc"],"client_cert_sha256":"{{pin}}"},
              {"id":"later","token_sha256":"{{sha}}","kids":["v-enc"],"revoked":{{(laterRevoked ? "true" : "false")}}}
            ]}
            """;
        if (File.Exists(Tokens)) File.Delete(Tokens);
        WritePrivate(Tokens, json);
    }

    public static void WritePrivate(string path, string text)
    {
        File.WriteAllText(path, "");
        File.SetUnixFileMode(path, UnixFileMode.UserRead | UnixFileMode.UserWrite);
        File.WriteAllText(path, text);
    }

    public HttpsKeyProviderOptions Options(string? token = GoodToken) => new()
    {
        BaseUrls = [Host.Url], AllowedHosts = ["127.0.0.1"], LicenceToken = token,
        TrustedRoots = HttpsKeyProviderOptions.LoadTrustedRoots(Ca),
        ConnectTimeout = TimeSpan.FromSeconds(3), ReadTimeout = TimeSpan.FromSeconds(5), MaxAttempts = 1,
    };

    public HttpsKeyProvider Provider(string? token = GoodToken) => new(Options(token));

    public async ValueTask DisposeAsync()
    {
        if (Host is not null) await Host.StopAsync();
        Master.Dispose();
        Signer.Dispose();
        ClientCert.Dispose();
        Tmp.Dispose();
    }
}

/// <summary>
/// A raw TCP "HTTP server" on 127.0.0.1 that misbehaves on purpose (slow, huge, 503, not JSON) and counts the
/// connections it accepted. Each connection is handled by <c>handler(stream, index)</c>.
/// </summary>
internal sealed class RawServer : IDisposable
{
    private readonly TcpListener _listener = new(IPAddress.Loopback, 0);
    private readonly CancellationTokenSource _stop = new();
    private readonly Task _loop;
    private int _accepts;

    public RawServer(Func<NetworkStream, int, CancellationToken, Task> handler)
    {
        _listener.Start();
        _loop = Task.Run(async () =>
        {
            while (!_stop.IsCancellationRequested)
            {
                TcpClient client;
                try
                {
                    client = await _listener.AcceptTcpClientAsync(_stop.Token);
                }
                catch (Exception e) when (e is OperationCanceledException or SocketException or ObjectDisposedException)
                {
                    return;
                }
                var index = Interlocked.Increment(ref _accepts) - 1;
                _ = Task.Run(async () =>
                {
                    using (client)
                    {
                        try
                        {
                            await handler(client.GetStream(), index, _stop.Token);
                        }
                        catch (Exception e) when (e is IOException or SocketException or OperationCanceledException or ObjectDisposedException)
                        {
                        }
                    }
                });
            }
        });
    }

    public int Port => ((IPEndPoint)_listener.LocalEndpoint).Port;

    public Uri Url => new($"http://127.0.0.1:{Port}");

    public int Accepts => Volatile.Read(ref _accepts);

    /// <summary>Reads one request's head (up to the blank line).</summary>
    public static async Task<string> ReadRequestAsync(NetworkStream s, CancellationToken ct)
    {
        var buffer = new byte[8192];
        var n = 0;
        while (n < buffer.Length)
        {
            var read = await s.ReadAsync(buffer.AsMemory(n), ct);
            if (read == 0) break;
            n += read;
            if (Encoding.ASCII.GetString(buffer, 0, n).Contains("\r\n\r\n", StringComparison.Ordinal)) break;
        }
        return Encoding.ASCII.GetString(buffer, 0, n);
    }

    public static async Task RespondAsync(NetworkStream s, int status, string body, string extraHeaders, CancellationToken ct)
    {
        var bytes = Encoding.UTF8.GetBytes(body);
        var head = $"HTTP/1.1 {status} X\r\nContent-Type: application/json\r\nContent-Length: {bytes.Length}\r\nConnection: close\r\n{extraHeaders}\r\n";
        await s.WriteAsync(Encoding.ASCII.GetBytes(head), ct);
        await s.WriteAsync(bytes, ct);
    }

    public void Dispose()
    {
        _stop.Cancel();
        _listener.Stop();
        try
        {
            _loop.Wait(TimeSpan.FromSeconds(5));
        }
        catch (AggregateException)
        {
        }
        _stop.Dispose();
    }
}
