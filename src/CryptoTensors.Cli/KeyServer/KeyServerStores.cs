using System.Buffers.Text;
using System.Security.Cryptography;
using System.Text;
using System.Text.Json;
using System.Text.RegularExpressions;
using CryptoTensors.Gpu;
using CryptoTensors.Gpu.Keys;

namespace CryptoTensors.Cli.KeyServer;

/// <summary>A start-up or reload problem of the key server: one line, exit code 1 (usage/IO) or 7 (keys).</summary>
internal sealed class KeyServerConfigException(string message, int exitCode = 1) : Exception(message)
{
    public int ExitCode { get; } = exitCode;
}

/// <summary>File-mode checks for the server's private files.</summary>
internal static partial class PrivateFiles
{
    /// <summary>Refuses a file that group or others may read or write (it holds a key or a token): it must be 0600.</summary>
    public static void RequireOwnerOnly(string path, string what)
    {
        if (OperatingSystem.IsWindows()) return;
        var mode = File.GetUnixFileMode(path);
        const UnixFileMode open = UnixFileMode.GroupRead | UnixFileMode.GroupWrite | UnixFileMode.GroupExecute
            | UnixFileMode.OtherRead | UnixFileMode.OtherWrite | UnixFileMode.OtherExecute;
        if ((mode & open) != 0)
            throw new KeyServerConfigException($"{what} '{path}' has mode {System.Convert.ToString((int)mode, 8).PadLeft(4, '0')}: it holds a secret and must be readable by its owner only (chmod 600 '{path}')");
    }

    /// <summary>Writes a new private file with mode 0600 from the start (never world-readable, even briefly).</summary>
    public static void WriteOwnerOnly(string path, ReadOnlySpan<byte> content)
    {
        var options = new FileStreamOptions { Mode = FileMode.CreateNew, Access = FileAccess.Write, Share = FileShare.None };
        if (!OperatingSystem.IsWindows()) options.UnixCreateMode = UnixFileMode.UserRead | UnixFileMode.UserWrite;
        using var f = new FileStream(path, options);
        f.Write(content);
    }

    /// <summary>The kids a server can serve: what may stand in a URL path segment unescaped.</summary>
    [GeneratedRegex("^[A-Za-z0-9._~-]{1,128}$")]
    public static partial Regex ServableKid();
}

/// <summary>
/// The keys a server serves, loaded once from a directory of JWK files (<c>*.jwk</c>): master keys (<c>oct</c>) and
/// Ed25519 public keys. A private signing key (with <c>d</c>) is never loaded, so never served. A file holding a master
/// key must have mode 0600. Master key bytes stay in pinned buffers; responses are built in pinned buffers.
/// </summary>
internal sealed class KeyStore : IDisposable
{
    private readonly Dictionary<string, MasterKey> _master = new(StringComparer.Ordinal);
    private readonly Dictionary<string, VerificationKey> _public = new(StringComparer.Ordinal);

    public int MasterCount => _master.Count;

    public int PublicCount => _public.Count;

    /// <summary>What was skipped at load (private signing keys, kids that cannot be served), one line each.</summary>
    public List<string> Skipped { get; } = [];

    public static KeyStore Load(string directory)
    {
        if (!Directory.Exists(directory)) throw new KeyServerConfigException($"--keys '{directory}' is not a directory");
        var store = new KeyStore();
        try
        {
            foreach (var path in Directory.GetFiles(directory, "*.jwk").Order(StringComparer.Ordinal)) store.LoadFile(path);
        }
        catch
        {
            store.Dispose();
            throw;
        }
        if (store.MasterCount + store.PublicCount == 0)
        {
            store.Dispose();
            throw new KeyServerConfigException($"--keys '{directory}' holds no servable key (*.jwk files with master keys or Ed25519 public keys, each with a kid)", 7);
        }
        return store;
    }

    private void LoadFile(string path)
    {
        var length = new FileInfo(path).Length;
        if (length > 1 << 20) throw new KeyServerConfigException($"key file '{path}' is larger than 1 MiB", 7);
        using var body = new SecretBuffer((int)length);
        using (var f = File.OpenRead(path)) f.ReadExactly(body.Span);
        var privateKids = new List<string?>();
        var (master, verify) = RemoteJwk.Parse(body.Memory, null, why => Malformed(path, why), privateKids.Add);
        foreach (var k in privateKids) Skipped.Add($"{Path.GetFileName(path)}: a private signing key{(k is null ? "" : $" (kid '{k}')")} is never served");
        if (master.Count > 0)
        {
            try
            {
                PrivateFiles.RequireOwnerOnly(path, "key file");
            }
            catch
            {
                foreach (var m in master) m.Dispose();
                throw;
            }
        }
        foreach (var m in master) Add(_master, m, path, "master key");
        foreach (var v in verify) Add(_public, v, path, "public key");
    }

    private void Add<T>(Dictionary<string, T> into, T key, string path, string what) where T : class
    {
        var kid = (key switch { MasterKey m => m.Kid, VerificationKey v => v.Kid, _ => null }) ?? "";
        if (!PrivateFiles.ServableKid().IsMatch(kid))
        {
            Skipped.Add($"{Path.GetFileName(path)}: kid '{kid}' is not servable (letters, digits, '.', '_', '~', '-'; at most 128)");
            (key as IDisposable)?.Dispose();
            return;
        }
        if (!into.TryAdd(kid, key))
        {
            (key as IDisposable)?.Dispose();
            throw new KeyServerConfigException($"key file '{path}': a second {what} with kid '{kid}'", 7);
        }
    }

    private static KeyException Malformed(string path, string why)
        => (KeyException)Errors.Create(ErrorCode.InvalidKey, $"key file '{path}': {why}");

    public bool Has(string kid) => _master.ContainsKey(kid) || _public.ContainsKey(kid);

    public IEnumerable<string> Kids => _master.Keys.Concat(_public.Keys).Distinct(StringComparer.Ordinal).Order(StringComparer.Ordinal);

    /// <summary>
    /// The JWK Set of <paramref name="kid"/> (<c>{"keys":[…]}</c>, the reference's JWK form) in a pinned buffer the
    /// caller zeroes (disposes) once written; its length is returned with it.
    /// </summary>
    public (SecretBuffer Body, int Length) JwkSet(string kid)
    {
        var buffer = new SecretBuffer(1024);
        var n = 0;
        void Put(ReadOnlySpan<byte> s)
        {
            s.CopyTo(buffer.Span[n..]);
            n += s.Length;
        }
        void Str(string s) => Put(Encoding.UTF8.GetBytes(JsonSerializer.Serialize(s)));
        try
        {
            Put("{\"keys\":["u8);
            var first = true;
            if (_master.TryGetValue(kid, out var m))
            {
                Put("{\"kty\":\"oct\",\"alg\":"u8);
                Str(m.Alg);
                Put(",\"kid\":"u8);
                Str(kid);
                Put(",\"k\":\""u8);
                if (Base64.EncodeToUtf8(m.Bytes, buffer.Span[n..], out _, out var written) != System.Buffers.OperationStatus.Done)
                    throw new InvalidOperationException("response buffer too small");
                n += written;
                Put("\"}"u8);
                first = false;
            }
            if (_public.TryGetValue(kid, out var v))
            {
                if (!first) Put(","u8);
                Put("{\"kty\":\"okp\",\"alg\":"u8);
                Str(v.Alg);
                Put(",\"kid\":"u8);
                Str(kid);
                Put(",\"x\":\""u8);
                Put(Encoding.ASCII.GetBytes(System.Convert.ToBase64String(v.PublicKey)));
                Put("\"}"u8);
            }
            Put("]}"u8);
            return (buffer, n);
        }
        catch
        {
            buffer.Dispose();
            throw;
        }
    }

    public void Dispose()
    {
        foreach (var m in _master.Values) m.Dispose();
        _master.Clear();
    }
}

/// <summary>One licence: a token (kept as its SHA-256 only), the kids it opens, until when, bound to which client certificate.</summary>
internal sealed record Licence(string Id, byte[] TokenHash, HashSet<string> Kids, DateTimeOffset? Expires, byte[]? ClientCertSha256, bool Revoked);

/// <summary>
/// The licence file (<c>--tokens</c>, mode 0600): <c>{"tokens":[{"id":…,"token"|"token_sha256":…,"kids":[…],
/// "expires":RFC 3339?,"client_cert_sha256":hex?,"revoked":bool?}]}</c>. Re-read when it changes, so a licence is
/// revoked or extended without a restart; a change that cannot be read makes every request fail (503) until fixed.
/// </summary>
internal sealed class LicenceStore
{
    private readonly string _path;
    private readonly Lock _lock = new();
    private (DateTime Mtime, long Length) _stamp;
    private Licence[] _licences = [];
    private string? _broken;

    public LicenceStore(string path)
    {
        _path = path;
        Reload();
        if (_broken is not null) throw new KeyServerConfigException(_broken);
    }

    public int Count => _licences.Length;

    /// <summary>The licence whose token is <paramref name="token"/>, or null; or the reason the file cannot be used now.</summary>
    public (Licence? Licence, string? Broken) Find(string token)
    {
        lock (_lock)
        {
            var info = new FileInfo(_path);
            var stamp = info.Exists ? (info.LastWriteTimeUtc, info.Length) : (default, -1);
            if (stamp != _stamp) Reload();
            if (_broken is not null) return (null, _broken);
            var hash = SHA256.HashData(Encoding.UTF8.GetBytes(token));
            Licence? match = null;
            foreach (var l in _licences)
            {
                if (CryptographicOperations.FixedTimeEquals(l.TokenHash, hash)) match = l;
            }
            return (match, null);
        }
    }

    private void Reload()
    {
        var info = new FileInfo(_path);
        _stamp = info.Exists ? (info.LastWriteTimeUtc, info.Length) : (default, -1);
        try
        {
            if (!info.Exists) throw new KeyServerConfigException($"--tokens '{_path}': no such file");
            PrivateFiles.RequireOwnerOnly(_path, "--tokens");
            _licences = Parse(File.ReadAllBytes(_path));
            _broken = null;
        }
        catch (Exception e) when (e is KeyServerConfigException or IOException or UnauthorizedAccessException)
        {
            _licences = [];
            _broken = e.Message;
        }
    }

    private Licence[] Parse(byte[] json)
    {
        KeyServerConfigException Bad(string why) => new($"--tokens '{_path}': {why}");
        JsonDocument doc;
        try
        {
            doc = JsonDocument.Parse(json);
        }
        catch (JsonException e)
        {
            throw Bad("not JSON: " + e.Message);
        }
        using (doc)
        {
            if (!doc.RootElement.TryGetProperty("tokens", out var tokens) || tokens.ValueKind != JsonValueKind.Array)
                throw Bad("expected {\"tokens\":[…]}");
            var list = new List<Licence>();
            var ids = new HashSet<string>(StringComparer.Ordinal);
            foreach (var t in tokens.EnumerateArray())
            {
                string? S(string name) => t.TryGetProperty(name, out var v) && v.ValueKind == JsonValueKind.String ? v.GetString() : null;
                var id = S("id") ?? throw Bad("a licence has no \"id\"");
                if (!ids.Add(id)) throw Bad($"licence id '{id}' appears twice");
                byte[] hash;
                if (S("token") is { } plain)
                {
                    if (plain.Length < 16) throw Bad($"licence '{id}': a token must have at least 16 characters");
                    hash = SHA256.HashData(Encoding.UTF8.GetBytes(plain));
                }
                else if (S("token_sha256") is { } hex && hex.Length == 64) hash = Hex(hex) ?? throw Bad($"licence '{id}': token_sha256 is not hex");
                else throw Bad($"licence '{id}' has neither \"token\" nor a 64-digit \"token_sha256\"");
                if (!t.TryGetProperty("kids", out var kids) || kids.ValueKind != JsonValueKind.Array) throw Bad($"licence '{id}' has no \"kids\" array");
                var set = kids.EnumerateArray().Select(k => k.ValueKind == JsonValueKind.String ? k.GetString()! : throw Bad($"licence '{id}': kids must be strings"))
                    .ToHashSet(StringComparer.Ordinal);
                DateTimeOffset? expires = null;
                if (S("expires") is { } e)
                {
                    if (!DateTimeOffset.TryParse(e, System.Globalization.CultureInfo.InvariantCulture, System.Globalization.DateTimeStyles.AssumeUniversal, out var x))
                        throw Bad($"licence '{id}': expires '{e}' is not an RFC 3339 time");
                    expires = x;
                }
                byte[]? cert = null;
                if (S("client_cert_sha256") is { } c)
                    cert = Hex(c.Replace(":", "", StringComparison.Ordinal)) is { Length: 32 } h ? h : throw Bad($"licence '{id}': client_cert_sha256 is not 32 bytes of hex");
                var revoked = t.TryGetProperty("revoked", out var r) && r.ValueKind == JsonValueKind.True;
                list.Add(new Licence(id, hash, set, expires, cert, revoked));
            }
            return [.. list];
        }
    }

    private static byte[]? Hex(string s)
    {
        try
        {
            return System.Convert.FromHexString(s);
        }
        catch (FormatException)
        {
            return null;
        }
    }
}
