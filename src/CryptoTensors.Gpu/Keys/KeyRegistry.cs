namespace CryptoTensors.Gpu.Keys;

/// <summary>
/// An ordered set of key providers, tried by priority (highest first, stable for ties); the first provider that
/// is ready, matches and returns a key wins; a provider's errors are recorded and the next one is tried
/// (the reference's registry). Unlike the reference there is no process-wide registry: pass one to the reader.
/// </summary>
public sealed class KeyRegistry
{
    private readonly List<IKeyProvider> _providers = [];

    /// <summary>The providers, in lookup order.</summary>
    public IReadOnlyList<IKeyProvider> Providers => _providers;

    /// <summary>The reference's start-up set: <see cref="EnvKeyProvider"/> and a <see cref="FileKeyProvider"/> without search paths.</summary>
    public static KeyRegistry CreateDefault() => new KeyRegistry().Register(new EnvKeyProvider()).Register(new FileKeyProvider());

    /// <summary>Adds a provider, replacing any provider of the same name.</summary>
    public KeyRegistry Register(IKeyProvider provider)
    {
        Remove(provider.Name);
        var i = _providers.FindIndex(p => p.Priority < provider.Priority);
        _providers.Insert(i < 0 ? _providers.Count : i, provider);
        return this;
    }

    /// <summary>Removes the provider of that name; true when one was removed.</summary>
    public bool Remove(string name) => _providers.RemoveAll(p => p.Name == name) > 0;

    /// <summary>Looks up the master key.</summary>
    /// <remarks>The key's <see cref="MasterKey.Source"/> names the provider that answered, when that provider did not set it.</remarks>
    public MasterKey GetMasterKey(string? jku, string? kid)
        => Find(jku, kid, static (p, j, k) =>
        {
            var key = p.GetMasterKey(j, k);
            if (key is not null) key.Source ??= KeySources.Of(p);
            return key;
        }, ErrorCode.MissingMasterKey, "master key");

    /// <summary>Looks up the verification key.</summary>
    public VerificationKey GetVerificationKey(string? jku, string? kid)
        => Find(jku, kid, static (p, j, k) => p.GetVerificationKey(j, k), ErrorCode.MissingVerificationKey, "verification key");

    /// <summary>Looks up the signing key.</summary>
    public SigningKey GetSigningKey(string? jku, string? kid)
        => Find(jku, kid, static (p, j, k) => p.GetSigningKey(j, k), ErrorCode.MissingSigningKey, "signing key");

    /// <remarks>
    /// When no provider supplies the key and a key server refused or failed (a <see cref="KeyException"/> naming a
    /// <see cref="KeyException.Host"/>), that error's code is raised (licence refused, revoked, unreachable…) rather
    /// than a plain "missing key", with every provider's reason in the message.
    /// </remarks>
    private T Find<T>(string? jku, string? kid, Func<IKeyProvider, string?, string?, T?> get, ErrorCode missing, string what) where T : class
    {
        var reasons = new List<string>();
        KeyException? remote = null;
        foreach (var p in _providers)
        {
            if (!p.IsReady || !p.Matches(jku, kid)) continue;
            try
            {
                if (get(p, jku, kid) is { } key) return key;
            }
            catch (CryptoTensorsException e)
            {
                reasons.Add($"{p.Name}: {e.Message}");
                if (remote is null && e is KeyException { Host: not null } k) remote = k;
            }
        }
        if (remote is not null)
        {
            var others = reasons.Count == 1 ? "" : " (" + string.Join("; ", reasons) + ")";
            var refused = (KeyException)Errors.Create(remote.Code, remote.Message + others, inner: remote);
            refused.Kid = kid;
            refused.Host = remote.Host;
            throw refused;
        }
        var ask = (kid is null ? "" : $" kid='{kid}'") + (jku is null ? "" : $" jku='{jku}'");
        var why = reasons.Count == 0 ? "" : " (" + string.Join("; ", reasons) + ")";
        var error = (KeyException)Errors.Create(missing, $"no suitable provider found for the {what}{ask}{why}");
        error.Kid = kid;
        throw error;
    }
}
