using System.Text.Json;
using CryptoTensors.Gpu;
using CryptoTensors.Gpu.Keys;
using CryptoTensors.Gpu.Reading;

namespace CryptoTensors.Cli.Commands;

/// <summary>
/// Loads keys given on the command line, falling back to <c>CRYPTOTENSOR_KEYS</c>. Every failure names the option
/// and the file, and says what the file holds instead of what was needed; never a key's bytes.
/// </summary>
internal static class KeyOptions
{
    /// <summary>The help text's note on the environment variable, for every option that takes keys.</summary>
    public const string EnvNote = "default: CRYPTOTENSOR_KEYS, a JWK or JWK Set as JSON";

    /// <summary>The master key for writing: the one oct key of <paramref name="path"/>, or from the environment.</summary>
    public static MasterKey MasterKey(string? path, string option = "--key")
    {
        if (path is null) return FromEnv(p => p.GetMasterKey(null, null), ErrorCode.MissingMasterKey, $"master key ({option})");
        var entries = Entries(option, path);
        var oct = entries.Where(e => e.IsOct).ToList();
        if (oct.Count == 0) throw Wrong(option, path, "holds no master key (a JWK with kty 'oct')", entries);
        if (oct.Count > 1) throw Wrong(option, path, $"holds {oct.Count} master keys; give a file with one", entries);
        return Convert(option, path, () => Jwk.ToMasterKey(oct[0]));
    }

    /// <summary>The signing key: the one private Ed25519 key of <paramref name="path"/>, or from the environment.</summary>
    public static SigningKey SigningKey(string? path, string option = "--sign-key")
    {
        if (path is null) return FromEnv(p => p.GetSigningKey(null, null), ErrorCode.MissingSigningKey, $"signing key ({option})");
        var entries = Entries(option, path);
        var okp = entries.Where(e => e.IsOkp).ToList();
        if (okp.Count == 0) throw Wrong(option, path, "holds no Ed25519 key (a JWK with kty 'okp')", entries);
        var priv = okp.Where(e => e.D is not null).ToList();
        if (priv.Count == 0) throw Wrong(option, path, "holds only a public Ed25519 key; signing needs the private key (the JWK with 'd', e.g. sign.jwk)", entries);
        if (priv.Count > 1) throw Wrong(option, path, $"holds {priv.Count} private Ed25519 keys; give a file with one", entries);
        return Convert(option, path, () => Jwk.ToSigningKey(priv[0]));
    }

    /// <summary>
    /// Reader options for opening with keys: a key file with one key of a kind is used directly; a JWK Set is offered
    /// through a registry so the header's kid selects the key; keys not given come from the environment. The policy
    /// input (<c>input.context</c>, <c>input.device</c>) comes from <paramref name="context"/> and <paramref name="device"/>.
    /// </summary>
    /// <remarks>
    /// A key server (<paramref name="remote"/>, from <see cref="RemoteKeyOptions"/>) is asked for what the files do not
    /// give, before the environment; header key locations are followed only when <paramref name="followHeaderKeyLocations"/>.
    /// </remarks>
    public static ReaderOptions ReaderOptions(string? keyPath, string? verifyKeyPath, bool requireEncrypted = false,
        JsonElement? context = null, string device = Gpu.Policy.PolicyInput.CpuDevice, string keyOption = "--key", string verifyOption = "--verify-key",
        IKeyProvider? remote = null, bool followHeaderKeyLocations = false, bool requireAllEncrypted = false)
    {
        var direct = new DirectKeyProvider { SourceName = KeySources.File };
        MasterKey? master = null;
        VerificationKey? verify = null;
        if (keyPath is not null)
        {
            var entries = Entries(keyOption, keyPath);
            var oct = entries.Where(e => e.IsOct).ToList();
            if (oct.Count == 0) throw Wrong(keyOption, keyPath, "holds no master key (a JWK with kty 'oct')", entries);
            if (oct.Count == 1)
            {
                master = Convert(keyOption, keyPath, () => Jwk.ToMasterKey(oct[0]));
                master.Source = KeySources.File;
            }
            else Convert(keyOption, keyPath, () => direct.AddJwks(Jwk.ReadFile(keyPath)));
        }
        if (verifyKeyPath is not null)
        {
            var entries = Entries(verifyOption, verifyKeyPath);
            var okp = entries.Where(e => e.IsOkp).ToList();
            if (okp.Count == 0) throw Wrong(verifyOption, verifyKeyPath, "holds no Ed25519 key (a JWK with kty 'okp')", entries);
            if (okp.Count == 1) verify = Convert(verifyOption, verifyKeyPath, () => Jwk.ToVerificationKey(okp[0]));
            else foreach (var e in okp) direct.Add(Convert(verifyOption, verifyKeyPath, () => Jwk.ToVerificationKey(e)));
        }
        var registry = new KeyRegistry().Register(direct).Register(new EnvKeyProvider());
        if (remote is not null) registry.Register(remote);
        return new ReaderOptions
        {
            MasterKey = master, VerificationKey = verify, Keys = registry, RequireEncrypted = requireEncrypted,
            RequireAllTensorsEncrypted = requireAllEncrypted,
            PolicyContext = context, Device = device, FollowHeaderKeyLocations = followHeaderKeyLocations,
        };
    }

    /// <summary>
    /// Zeroes, when disposed, the keys <see cref="ReaderOptions(string?, string?, bool, JsonElement?, string, string, string, IKeyProvider?, bool, bool)"/>
    /// read from files (the master key and the file and environment providers it made); a remote provider is its caller's.
    /// </summary>
    public static IDisposable Owning(ReaderOptions options) => new KeyRelease(options);

    private sealed class KeyRelease(ReaderOptions options) : IDisposable
    {
        public void Dispose()
        {
            options.MasterKey?.Dispose();
            foreach (var p in options.Keys?.Providers ?? [])
            {
                if (p is (DirectKeyProvider or EnvKeyProvider) and IDisposable d) d.Dispose();
            }
        }
    }

    private static List<Jwk.Entry> Entries(string option, string path)
    {
        if (Directory.Exists(path)) throw new IOException($"{option} '{path}' is a directory, not a key file");
        if (!File.Exists(path)) throw new FileNotFoundException($"{option} '{path}': no such file", path);
        return Convert(option, path, () => Jwk.ParseAll(Jwk.ReadFile(path)));
    }

    /// <summary>Runs a JWK step; a key error is re-raised with the option and the file in front (same code and kind).</summary>
    private static T Convert<T>(string option, string path, Func<T> step)
    {
        try
        {
            return step();
        }
        catch (KeyException e)
        {
            throw new CliException((int)e.Kind, $"{option} '{path}': {e.Message}", e);
        }
    }

    private static void Convert(string option, string path, Action step) => Convert(option, path, () => { step(); return 0; });

    private static CliException Wrong(string option, string path, string what, List<Jwk.Entry> entries)
        => new((int)ErrorKind.Key, $"{option} '{path}' {what}; it holds {Describe(entries)}");

    private static string Describe(List<Jwk.Entry> entries)
    {
        if (entries.Count == 0) return "no key";
        return string.Join(", ", entries.Select(e =>
            (e.IsOct ? $"a master key ({e.Alg})" : e.IsOkp ? (e.D is null ? "a public Ed25519 key" : "a private Ed25519 key") : $"a '{e.Kty}' key")
            + (e.Kid is null ? "" : $" with kid '{e.Kid}'")));
    }

    private static T FromEnv<T>(Func<EnvKeyProvider, T?> get, ErrorCode missing, string what) where T : class
    {
        var env = new EnvKeyProvider();
        if (env.IsReady && get(env) is { } key) return key;
        throw new CliException((int)CryptoTensorsException.KindOf(missing),
            $"no {what} given and none in {EnvKeyProvider.VariableName}" + (env.IsReady ? "" : " (not set)"));
    }
}
