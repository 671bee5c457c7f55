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
    public MasterKey GetMasterKey(string? jku, string? kid)
        => Find(jku, kid, static (p, j, k) => p.GetMasterKey(j, k), ErrorCode.MissingMasterKey, "master key");

    /// <summary>Looks up the verification key.</summary>
    public VerificationKey GetVerificationKey(string? jku, string? kid)
        => Find(jku, kid, static (p, j, k) => p.GetVerificationKey(j, k), ErrorCode.MissingVerificationKey, "verification key");

    /// <summary>Looks up the signing key.</summary>
    public SigningKey GetSigningKey(string? jku, string? kid)
        => Find(jku, kid, static (p, j, k) => p.GetSigningKey(j, k), ErrorCode.MissingSigningKey, "signing key");

    private T Find<T>(string? jku, string? kid, Func<IKeyProvider, string?, string?, T?> get, ErrorCode missing, string what) where T : class
    {
        var reasons = new List<string>();
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
            }
        }
        var ask = (kid is null ? "" : $" kid='{kid}'") + (jku is null ? "" : $" jku='{jku}'");
        var why = reasons.Count == 0 ? "" : " (" + string.Join("; ", reasons) + ")";
        var error = (KeyException)Errors.Create(missing, $"no suitable provider found for the {what}{ask}{why}");
        error.Kid = kid;
        throw error;
    }
}
