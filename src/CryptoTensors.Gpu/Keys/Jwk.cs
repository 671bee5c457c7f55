using System.Text.Json;
using CryptoTensors.Gpu.Crypto;
using CryptoTensors.Gpu.Format;

namespace CryptoTensors.Gpu.Keys;

/// <summary>
/// JSON Web Keys. Written in the reference's form (lower-case <c>oct</c>/<c>okp</c>, padded standard base64,
/// <c>alg</c> always present); read in that form and in the standard RFC 7517/8037 form (base64url without
/// padding, <c>kty: OKP</c> with <c>crv: Ed25519</c>, JOSE <c>alg</c> names, JWK Sets).
/// </summary>
public static class Jwk
{
    /// <summary>Reads the master key from a JWK or JWK Set (first <c>oct</c> key, or the one with <paramref name="kid"/>).</summary>
    public static MasterKey ReadMasterKey(string json, string? kid = null)
        => ToMasterKey(Select(ParseAll(json), oct: true, kid) ?? throw NotFound("oct", kid));

    /// <summary>Reads an Ed25519 public key (a private JWK works too: only <c>x</c>, or <c>d</c> when <c>x</c> is absent, is used).</summary>
    public static VerificationKey ReadVerificationKey(string json, string? kid = null)
        => ToVerificationKey(Select(ParseAll(json), oct: false, kid) ?? throw NotFound("okp", kid));

    /// <summary>Reads an Ed25519 key pair (needs <c>d</c>).</summary>
    public static SigningKey ReadSigningKey(string json, string? kid = null)
        => ToSigningKey(Select(ParseAll(json), oct: false, kid, needPrivate: true) ?? throw NotFound("okp with d", kid));

    /// <summary>Reads a JWK file; see <see cref="ReadMasterKey"/>.</summary>
    public static MasterKey LoadMasterKey(string path, string? kid = null) => ReadMasterKey(ReadFile(path), kid);

    /// <summary>Reads a JWK file; see <see cref="ReadVerificationKey"/>.</summary>
    public static VerificationKey LoadVerificationKey(string path, string? kid = null) => ReadVerificationKey(ReadFile(path), kid);

    /// <summary>Reads a JWK file; see <see cref="ReadSigningKey"/>.</summary>
    public static SigningKey LoadSigningKey(string path, string? kid = null) => ReadSigningKey(ReadFile(path), kid);

    /// <summary>The reference's JWK of a master key (contains the secret).</summary>
    public static string Write(MasterKey key) => WriteSecret("oct", key.Alg, key.Kid, key.Jku, "k", key.Bytes, null, default);

    /// <summary>The reference's JWK of an Ed25519 public key.</summary>
    public static string Write(VerificationKey key) => WriteSecret("okp", key.Alg, key.Kid, key.Jku, "x", key.PublicKey, null, default);

    /// <summary>The reference's JWK of an Ed25519 key pair (contains the private seed <c>d</c>).</summary>
    public static string Write(SigningKey key)
        => WriteSecret("okp", key.Alg, key.Kid, key.Jku, "x", key.Public.PublicKey, "d", key.Seed);

    internal static string ReadFile(string path)
    {
        try { return File.ReadAllText(path); }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            throw Errors.Create(ErrorCode.InvalidKey, $"cannot read key file '{path}': {e.Message}", inner: e);
        }
    }

    private static string WriteSecret(string kty, string alg, string? kid, string? jku, string n1, ReadOnlySpan<byte> v1, string? n2, ReadOnlySpan<byte> v2)
    {
        var w = new CompactJsonWriter();
        w.StartObject();
        w.Property("kty", kty);
        w.Property("alg", alg);
        if (kid is not null) w.Property("kid", kid);
        if (jku is not null) w.Property("jku", jku);
        w.Property(n1, Convert.ToBase64String(v1));
        if (n2 is not null) w.Property(n2, Convert.ToBase64String(v2));
        w.EndObject();
        return w.ToUtf8String();
    }

    internal sealed record Entry(string Kty, string? Alg, string? Kid, string? Jku, string? K, string? X, string? D, string? Crv)
    {
        public bool IsOct => Kty == "oct";
        public bool IsOkp => Kty == "okp" || (Kty == "OKP" && Crv == "Ed25519");
        public override string ToString() => $"JWK({Kty}, alg={Alg}, kid={Kid})";
    }

    internal static List<Entry> ParseAll(string json)
    {
        JsonDocument doc;
        try { doc = JsonDocument.Parse(json, new JsonDocumentOptions { MaxDepth = 16 }); }
        catch (JsonException e) { throw Errors.Create(ErrorCode.InvalidKey, $"invalid JWK: not JSON ({e.Message})", inner: e); }
        using (doc)
        {
            var root = doc.RootElement;
            var list = new List<Entry>();
            if (root.ValueKind == JsonValueKind.Array)
            {
                foreach (var e in root.EnumerateArray()) list.Add(ParseOne(e));
            }
            else if (root.ValueKind == JsonValueKind.Object && root.TryGetProperty("keys", out var keys) && !root.TryGetProperty("kty", out _))
            {
                if (keys.ValueKind != JsonValueKind.Array) throw Errors.Create(ErrorCode.InvalidKey, "invalid JWK Set: 'keys' must be an array");
                foreach (var e in keys.EnumerateArray()) list.Add(ParseOne(e));
            }
            else list.Add(ParseOne(root));
            return list;
        }
    }

    private static Entry ParseOne(JsonElement e)
    {
        if (e.ValueKind != JsonValueKind.Object) throw Errors.Create(ErrorCode.InvalidKey, "invalid JWK: not an object");
        var entry = new Entry(Str(e, "kty") ?? throw Errors.Create(ErrorCode.InvalidKey, "invalid JWK: missing 'kty'", field: "kty"),
            Str(e, "alg"), Str(e, "kid"), Str(e, "jku"), Str(e, "k"), Str(e, "x"), Str(e, "d"), Str(e, "crv"));
        if (!entry.IsOct && !entry.IsOkp)
            throw Errors.Create(ErrorCode.InvalidKey, $"invalid JWK: unsupported kty '{entry.Kty}' (expected oct, okp, or OKP with crv Ed25519)", field: "kty");
        return entry;
    }

    private static string? Str(JsonElement e, string name)
    {
        if (!e.TryGetProperty(name, out var v) || v.ValueKind == JsonValueKind.Null) return null;
        if (v.ValueKind != JsonValueKind.String) throw Errors.Create(ErrorCode.InvalidKey, $"invalid JWK: '{name}' must be a string", field: name);
        return v.GetString();
    }

    internal static Entry? Select(List<Entry> entries, bool oct, string? kid, bool needPrivate = false)
    {
        foreach (var e in entries)
        {
            if (oct ? !e.IsOct : !e.IsOkp) continue;
            if (needPrivate && e.D is null) continue;
            if (kid is null || e.Kid == kid) return e;
        }
        return null;
    }

    private static CryptoTensorsException NotFound(string what, string? kid)
        => Errors.Create(ErrorCode.InvalidKey, kid is null ? $"no {what} key in the JWK" : $"no {what} key with kid '{kid}' in the JWK");

    internal static MasterKey ToMasterKey(Entry e)
    {
        if (!e.IsOct) throw Errors.Create(ErrorCode.InvalidKey, "invalid JWK: a master key must have kty 'oct'", field: "kty");
        if (string.IsNullOrEmpty(e.Alg)) throw Errors.Create(ErrorCode.InvalidKey, "invalid JWK: 'alg' is required", field: "alg");
        string alg;
        if (AeadAlgorithms.TryParse(e.Alg, out var algorithm)) alg = e.Alg;
        else if (AeadAlgorithms.TryParseJose(e.Alg, out algorithm)) alg = algorithm.CanonicalName();
        else throw Errors.Create(ErrorCode.InvalidKey, $"invalid algorithm '{e.Alg}' for a master key", field: "alg");
        if (e.K is null) throw Errors.Create(ErrorCode.InvalidKey, "invalid JWK: master key has no 'k'", field: "k");
        return new MasterKey(Decode(e.K, "k", algorithm.KeySize()), algorithm, alg, e.Kid, e.Jku);
    }

    internal static VerificationKey ToVerificationKey(Entry e)
    {
        var alg = OkpAlg(e);
        if (e.X is not null)
        {
            using var x = Decode(e.X, "x", Ed25519.PublicKeySize);
            return new VerificationKey(x.Span, alg, e.Kid, e.Jku);
        }
        if (e.D is not null)
        {
            using var s = ToSigningKey(e);
            return s.Public;
        }
        throw Errors.Create(ErrorCode.InvalidKey, "invalid JWK: Ed25519 key has no 'x'", field: "x");
    }

    internal static SigningKey ToSigningKey(Entry e)
    {
        var alg = OkpAlg(e);
        if (e.D is null) throw Errors.Create(ErrorCode.InvalidKey, "invalid JWK: signing key has no 'd'", field: "d");
        var d = Decode(e.D, "d", Ed25519.SeedSize);
        if (e.X is null) return new SigningKey(d, default, alg, e.Kid, e.Jku);
        using var x = Decode(e.X, "x", Ed25519.PublicKeySize);
        return new SigningKey(d, x.Span, alg, e.Kid, e.Jku);
    }

    private static string OkpAlg(Entry e)
    {
        if (!e.IsOkp) throw Errors.Create(ErrorCode.InvalidKey, "invalid JWK: an Ed25519 key must have kty 'okp' (or 'OKP' with crv 'Ed25519')", field: "kty");
        if (e.Alg is null || e.Alg == "EdDSA") return "ed25519";
        if (!string.Equals(e.Alg, "ed25519", StringComparison.OrdinalIgnoreCase))
            throw Errors.Create(ErrorCode.InvalidKey, $"invalid algorithm '{e.Alg}' for a signing key", field: "alg");
        return e.Alg;
    }

    private static SecretBuffer Decode(string text, string field, int expected)
    {
        var buf = new SecretBuffer(expected + 3);
        var n = Base64Strict.DecodeLenient(text, buf.Span);
        if (n != expected)
        {
            buf.Dispose();
            throw Errors.Create(ErrorCode.InvalidKey, n < 0 ? $"invalid key: '{field}' is not base64" : $"invalid key length: '{field}' must be {expected} bytes, got {n}", field: field);
        }
        var exact = SecretBuffer.CopyOf(buf.Span[..n]);
        buf.Dispose();
        return exact;
    }
}
