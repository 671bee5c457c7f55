namespace CryptoTensors.Gpu.Keys;

/// <summary>
/// A source of keys, looked up by the <c>jku</c>/<c>kid</c> of a header or a writer's configuration
/// (the reference's <c>KeyProvider</c>). A getter returns null when it has no such key.
/// </summary>
public interface IKeyProvider
{
    /// <summary>Unique name; registering a provider replaces one of the same name.</summary>
    string Name { get; }

    /// <summary>Higher is tried first (direct 100, native 50, https 20, file 10, env 0).</summary>
    int Priority { get; }

    /// <summary>Whether the provider can answer at all (e.g. its environment variable is set).</summary>
    bool IsReady { get; }

    /// <summary>Whether the provider handles this key location and id.</summary>
    bool Matches(string? jku, string? kid);

    /// <summary>The master key, or null. The caller disposes it.</summary>
    MasterKey? GetMasterKey(string? jku, string? kid);

    /// <summary>The Ed25519 public key, or null.</summary>
    VerificationKey? GetVerificationKey(string? jku, string? kid);

    /// <summary>The Ed25519 key pair, or null. The caller disposes it.</summary>
    SigningKey? GetSigningKey(string? jku, string? kid);
}

/// <summary>Well-known provider priorities (the reference's).</summary>
public static class KeyProviderPriority
{
    /// <summary>Keys given directly by the caller.</summary>
    public const int Direct = 100;
    /// <summary>Native / plug-in providers.</summary>
    public const int Native = 50;
    /// <summary>Key servers (<see cref="HttpsKeyProvider"/>): after keys given in process, before files and the environment.</summary>
    public const int Https = 20;
    /// <summary>JWK files.</summary>
    public const int File = 10;
    /// <summary>The <c>CRYPTOTENSOR_KEYS</c> environment variable.</summary>
    public const int Env = 0;
}

/// <summary>Base for providers that hold parsed JWKs and select them as the reference does.</summary>
public abstract class JwkKeyProvider : IKeyProvider
{
    /// <inheritdoc />
    public abstract string Name { get; }

    /// <inheritdoc />
    public abstract int Priority { get; }

    /// <inheritdoc />
    public abstract bool IsReady { get; }

    /// <inheritdoc />
    public abstract bool Matches(string? jku, string? kid);

    /// <summary>The JWK text for a lookup, or null.</summary>
    protected abstract string? LoadJwks(string? jku);

    /// <inheritdoc />
    public MasterKey? GetMasterKey(string? jku, string? kid)
    {
        var text = LoadJwks(jku);
        var e = text is null ? null : Jwk.Select(Jwk.ParseAll(text), oct: true, kid);
        return e is null ? null : Jwk.ToMasterKey(e);
    }

    /// <inheritdoc />
    public VerificationKey? GetVerificationKey(string? jku, string? kid)
    {
        var text = LoadJwks(jku);
        var e = text is null ? null : Jwk.Select(Jwk.ParseAll(text), oct: false, kid);
        return e is null ? null : Jwk.ToVerificationKey(e);
    }

    /// <inheritdoc />
    public SigningKey? GetSigningKey(string? jku, string? kid)
    {
        var text = LoadJwks(jku);
        var e = text is null ? null : Jwk.Select(Jwk.ParseAll(text), oct: false, kid, needPrivate: true);
        return e is null ? null : Jwk.ToSigningKey(e);
    }

    /// <inheritdoc />
    public override string ToString() => $"{Name}(priority {Priority})";
}

/// <summary>
/// Keys from the <c>CRYPTOTENSOR_KEYS</c> environment variable: a JWK or a JWK Set. Ready iff the variable is set;
/// matches every lookup; the first key of the right type with the requested kid (or the first of that type when
/// no kid is asked for). Unlike the reference it also supplies signing keys (an <c>okp</c> key with <c>d</c>).
/// </summary>
public sealed class EnvKeyProvider : JwkKeyProvider
{
    /// <summary>The variable's name (no S after CRYPTOTENSOR, as in the reference).</summary>
    public const string VariableName = "CRYPTOTENSOR_KEYS";

    /// <inheritdoc />
    public override string Name => "env";

    /// <inheritdoc />
    public override int Priority => KeyProviderPriority.Env;

    /// <inheritdoc />
    public override bool IsReady => Environment.GetEnvironmentVariable(VariableName) is not null;

    /// <inheritdoc />
    public override bool Matches(string? jku, string? kid) => true;

    /// <inheritdoc />
    /// <remarks>
    /// The variable holds the JSON itself, as in the reference. A value that is not JSON is refused saying so; when
    /// it names an existing file the message says that it is a path (and how to pass the file's content) — any other
    /// value is never echoed, since it may be key material.
    /// </remarks>
    protected override string? LoadJwks(string? jku)
    {
        var value = Environment.GetEnvironmentVariable(VariableName);
        if (value is null || value.AsSpan().TrimStart().StartsWith("{", StringComparison.Ordinal)) return value;
        var hint = value.Length < 4096 && File.Exists(value.Trim())
            ? $" it holds the path '{value.Trim()}': set it to the file's content instead ({VariableName}=\"$(cat FILE)\") or pass the file with --key"
            : " it does not start with '{'";
        throw Errors.Create(ErrorCode.InvalidKey, $"{VariableName} takes a JWK or JWK Set as JSON;{hint}", field: VariableName);
    }
}

/// <summary>
/// Keys from JWK files. A <c>file://</c> <c>jku</c> names the file: <c>file:///abs/path</c>, <c>file://~/path</c>
/// (home directory), or a relative path resolved against the configured search paths only. Without a <c>jku</c>
/// it reads <c>keys.jwk</c> in each search path.
/// </summary>
public sealed class FileKeyProvider : JwkKeyProvider
{
    private readonly string[] _searchPaths;

    /// <summary>Creates a provider with optional search paths for relative locations.</summary>
    public FileKeyProvider(params string[] searchPaths) => _searchPaths = searchPaths;

    /// <inheritdoc />
    public override string Name => "file";

    /// <inheritdoc />
    public override int Priority => KeyProviderPriority.File;

    /// <inheritdoc />
    public override bool IsReady => true;

    /// <inheritdoc />
    public override bool Matches(string? jku, string? kid)
        => jku is null ? _searchPaths.Length > 0 : jku.StartsWith("file://", StringComparison.OrdinalIgnoreCase);

    /// <summary>The file a <c>jku</c> designates, or null when it designates none (relative with no search path).</summary>
    public IEnumerable<string> Resolve(string? jku)
    {
        if (jku is null)
        {
            foreach (var p in _searchPaths) yield return Path.Combine(p, "keys.jwk");
            yield break;
        }
        if (!jku.StartsWith("file://", StringComparison.OrdinalIgnoreCase)) yield break;
        var rest = jku["file://".Length..];
        if (rest.StartsWith('/')) { yield return rest; yield break; }
        if (rest.StartsWith("~/", StringComparison.Ordinal))
        {
            var home = Environment.GetEnvironmentVariable("HOME") ?? Environment.GetFolderPath(Environment.SpecialFolder.UserProfile);
            yield return Path.Combine(home, rest[2..]);
            yield break;
        }
        foreach (var p in _searchPaths) yield return Path.GetFullPath(Path.Combine(p, rest));
    }

    /// <inheritdoc />
    protected override string? LoadJwks(string? jku)
    {
        foreach (var path in Resolve(jku))
        {
            if (File.Exists(path)) return Jwk.ReadFile(path);
        }
        return null;
    }
}

/// <summary>
/// Keys the caller holds, by kid, with a default of each kind (the first added). Priority 100. The provider
/// owns the keys added to it and disposes them.
/// </summary>
public sealed class DirectKeyProvider : IKeyProvider, IDisposable
{
    private readonly Dictionary<string, MasterKey> _enc = new(StringComparer.Ordinal);
    private readonly Dictionary<string, SigningKey> _sign = new(StringComparer.Ordinal);
    private readonly Dictionary<string, VerificationKey> _verify = new(StringComparer.Ordinal);
    private readonly List<IDisposable> _owned = [];
    private MasterKey? _defaultEnc;
    private SigningKey? _defaultSign;
    private VerificationKey? _defaultVerify;

    /// <inheritdoc />
    public string Name => "DirectKeyProvider";

    /// <summary>The <see cref="MasterKey.Source"/> its keys are reported with (<see cref="KeySources.Direct"/>; a loader of key files may say <see cref="KeySources.File"/>).</summary>
    internal string SourceName { get; init; } = KeySources.Direct;

    /// <inheritdoc />
    public int Priority => KeyProviderPriority.Direct;

    /// <inheritdoc />
    public bool IsReady => true;

    /// <summary>Adds a master key (owned by the provider from now on).</summary>
    public DirectKeyProvider Add(MasterKey key)
    {
        _owned.Add(key);
        if (key.Kid is not null) _enc[key.Kid] = key;
        _defaultEnc ??= key;
        return this;
    }

    /// <summary>Adds a signing key pair (owned by the provider from now on); it also verifies.</summary>
    public DirectKeyProvider Add(SigningKey key)
    {
        _owned.Add(key);
        if (key.Kid is not null) _sign[key.Kid] = key;
        _defaultSign ??= key;
        return Add(key.Public);
    }

    /// <summary>Adds a public key.</summary>
    public DirectKeyProvider Add(VerificationKey key)
    {
        if (key.Kid is not null) _verify[key.Kid] = key;
        _defaultVerify ??= key;
        return this;
    }

    /// <summary>Adds every key of a JWK or JWK Set text.</summary>
    public DirectKeyProvider AddJwks(string json)
    {
        foreach (var e in Jwk.ParseAll(json))
        {
            if (e.IsOct) Add(Jwk.ToMasterKey(e));
            else if (e.D is not null) Add(Jwk.ToSigningKey(e));
            else Add(Jwk.ToVerificationKey(e));
        }
        return this;
    }

    /// <inheritdoc />
    public bool Matches(string? jku, string? kid)
        => kid is null
            ? _defaultEnc is not null || _defaultVerify is not null
            : _enc.ContainsKey(kid) || _verify.ContainsKey(kid);

    /// <inheritdoc />
    public MasterKey? GetMasterKey(string? jku, string? kid)
    {
        var k = kid is null ? _defaultEnc : _enc.GetValueOrDefault(kid);
        return k?.WithBytesCopy();
    }

    /// <inheritdoc />
    public VerificationKey? GetVerificationKey(string? jku, string? kid) => kid is null ? _defaultVerify : _verify.GetValueOrDefault(kid);

    /// <inheritdoc />
    public SigningKey? GetSigningKey(string? jku, string? kid)
    {
        var k = kid is null ? _defaultSign : _sign.GetValueOrDefault(kid);
        return k is null ? null : SigningKey.FromSeed(k.Seed, k.Kid, k.Jku);
    }

    /// <inheritdoc />
    public void Dispose()
    {
        foreach (var d in _owned) d.Dispose();
        _owned.Clear();
    }
}
