using CryptoTensors.Gpu;
using CryptoTensors.Gpu.Keys;
using CryptoTensors.Gpu.Reading;

namespace CryptoTensors.Cli.Commands;

/// <summary>Loads keys given on the command line, falling back to <c>CRYPTOTENSOR_KEYS</c>.</summary>
internal static class KeyOptions
{
    public static MasterKey MasterKey(string? path, string? kid = null)
        => path is not null ? Jwk.LoadMasterKey(path, kid) : FromEnv(p => p.GetMasterKey(null, kid), ErrorCode.MissingMasterKey, "master key (--key)");

    public static SigningKey SigningKey(string? path)
        => path is not null ? Jwk.LoadSigningKey(path) : FromEnv(p => p.GetSigningKey(null, null), ErrorCode.MissingSigningKey, "signing key (--sign-key)");

    /// <summary>
    /// Reader options for verification: a key file with one key of a kind is used directly; a JWK Set is offered
    /// through a registry so the header's kid selects the key; missing files fall back to the environment.
    /// </summary>
    public static ReaderOptions ReaderOptions(string? keyPath, string? verifyKeyPath, bool requireEncrypted = false, string? contextPath = null)
    {
        var direct = new DirectKeyProvider();
        MasterKey? master = null;
        VerificationKey? verify = null;
        if (keyPath is not null)
        {
            var entries = Jwk.ParseAll(Jwk.ReadFile(keyPath));
            if (entries.Count(e => e.IsOct) == 1) master = Jwk.ToMasterKey(entries.First(e => e.IsOct));
            else direct.AddJwks(Jwk.ReadFile(keyPath));
        }
        if (verifyKeyPath is not null)
        {
            var entries = Jwk.ParseAll(Jwk.ReadFile(verifyKeyPath));
            if (entries.Count(e => e.IsOkp) == 1) verify = Jwk.ToVerificationKey(entries.First(e => e.IsOkp));
            else foreach (var e in entries.Where(e => e.IsOkp)) direct.Add(Jwk.ToVerificationKey(e));
        }
        var registry = new KeyRegistry().Register(direct).Register(new EnvKeyProvider());
        System.Text.Json.JsonElement? context = null;
        if (contextPath is not null)
        {
            try { context = System.Text.Json.JsonDocument.Parse(File.ReadAllText(contextPath)).RootElement.Clone(); }
            catch (System.Text.Json.JsonException e) { throw new ArgumentException($"--context '{contextPath}' is not JSON: {e.Message}", e); }
            if (context.Value.ValueKind != System.Text.Json.JsonValueKind.Object) throw new ArgumentException($"--context '{contextPath}' must hold a JSON object");
        }
        return new ReaderOptions { MasterKey = master, VerificationKey = verify, Keys = registry, RequireEncrypted = requireEncrypted, PolicyContext = context };
    }

    private static T FromEnv<T>(Func<EnvKeyProvider, T?> get, ErrorCode missing, string what) where T : class
    {
        var env = new EnvKeyProvider();
        if (env.IsReady && get(env) is { } key) return key;
        throw Errors.Create(missing, $"no {what} given and none found in {EnvKeyProvider.VariableName}");
    }
}
