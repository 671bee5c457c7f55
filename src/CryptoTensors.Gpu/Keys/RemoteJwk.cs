using System.Runtime.InteropServices;
using System.Security.Cryptography;
using System.Text.Json;
using CryptoTensors.Gpu.Crypto;

namespace CryptoTensors.Gpu.Keys;

/// <summary>
/// Parses a key server's JWK or JWK Set straight from its UTF-8 bytes: the secret <c>k</c> is decoded from the
/// response buffer into a pinned <see cref="SecretBuffer"/> without ever becoming a managed string. Only keys whose
/// <c>kid</c> is the one asked for are kept; a private signing key (<c>d</c>) is refused (a server never sends one).
/// </summary>
internal static class RemoteJwk
{
    /// <summary>
    /// The master keys and public keys of <paramref name="body"/> with kid <paramref name="kid"/> (with any kid when
    /// null; a key without a kid is then refused). A key holding <c>d</c> is refused, or skipped and reported to
    /// <paramref name="privateKey"/> when that is given (a key server loading its directory).
    /// </summary>
    /// <exception cref="KeyException">From <paramref name="malformed"/>, for anything but a usable JWK or JWK Set.</exception>
    public static (List<MasterKey> Master, List<VerificationKey> Verify) Parse(ReadOnlyMemory<byte> body, string? kid, Func<string, KeyException> malformed,
        Action<string?>? privateKey = null)
    {
        JsonDocument doc;
        try
        {
            // JsonDocument reads the memory in place (no copy of the key bytes).
            doc = JsonDocument.Parse(body, new JsonDocumentOptions { MaxDepth = 8 });
        }
        catch (JsonException)
        {
            throw malformed("the response is not JSON");
        }
        var master = new List<MasterKey>();
        var verify = new List<VerificationKey>();
        try
        {
            using (doc)
            {
                var root = doc.RootElement;
                if (root.ValueKind != JsonValueKind.Object) throw malformed("the response is not a JWK or JWK Set object");
                if (root.TryGetProperty("keys", out var keys) && !root.TryGetProperty("kty", out _))
                {
                    if (keys.ValueKind != JsonValueKind.Array) throw malformed("'keys' is not an array");
                    foreach (var e in keys.EnumerateArray()) One(e, kid, master, verify, malformed, privateKey);
                }
                else One(root, kid, master, verify, malformed, privateKey);
            }
        }
        catch
        {
            foreach (var m in master) m.Dispose();
            throw;
        }
        return (master, verify);
    }

    private static void One(JsonElement e, string? wanted, List<MasterKey> master, List<VerificationKey> verify, Func<string, KeyException> malformed,
        Action<string?>? privateKey)
    {
        if (e.ValueKind != JsonValueKind.Object) throw malformed("a key is not a JSON object");
        var kty = Str(e, "kty", malformed) ?? throw malformed("a key has no 'kty'");
        var kid = Str(e, "kid", malformed);
        if (e.TryGetProperty("d", out _))
        {
            if (privateKey is null) throw malformed("the response holds a private signing key ('d'); a key server must never send one");
            privateKey(kid);
            return;
        }
        if (wanted is null ? kid is null : kid != wanted)
        {
            if (wanted is null) throw malformed("a key has no 'kid'");
            return;
        }
        var alg = Str(e, "alg", malformed);
        if (kty == "oct")
        {
            if (string.IsNullOrEmpty(alg)) throw malformed("the master key has no 'alg'");
            string name;
            if (AeadAlgorithms.TryParse(alg, out var algorithm)) name = alg;
            else if (AeadAlgorithms.TryParseJose(alg, out algorithm)) name = algorithm.CanonicalName();
            else throw malformed($"unsupported master key algorithm '{Clip(alg)}'");
            if (!e.TryGetProperty("k", out var k) || k.ValueKind != JsonValueKind.String) throw malformed("the master key has no 'k' string");
            var bytes = DecodeSecret(JsonMarshal.GetRawUtf8Value(k), algorithm.KeySize()) ?? throw malformed($"the master key's 'k' is not base64 of {algorithm.KeySize()} bytes");
            master.Add(new MasterKey(bytes, algorithm, name, kid, null) { Source = KeySources.Https });
        }
        else if (kty == "okp" || (kty == "OKP" && Str(e, "crv", malformed) == "Ed25519"))
        {
            var x = Str(e, "x", malformed) ?? throw malformed("the Ed25519 key has no 'x'");
            try
            {
                verify.Add(Jwk.ToVerificationKey(new Jwk.Entry(kty, alg, kid, null, null, x, null, Str(e, "crv", malformed))));
            }
            catch (KeyException ke)
            {
                throw malformed(ke.Message);
            }
        }
        else throw malformed($"unsupported kty '{Clip(kty)}'");
    }

    private static string? Str(JsonElement e, string name, Func<string, KeyException> malformed)
    {
        if (!e.TryGetProperty(name, out var v) || v.ValueKind == JsonValueKind.Null) return null;
        if (v.ValueKind != JsonValueKind.String) throw malformed($"'{name}' is not a string");
        return v.GetString();
    }

    private static string Clip(string s) => s.Length <= 40 ? s : s[..40] + "…";

    /// <summary>
    /// Decodes a raw JSON string token (quotes included, escapes allowed) holding base64 or base64url of exactly
    /// <paramref name="expected"/> bytes into a pinned buffer; null when it is not that. Temporaries are cleared.
    /// </summary>
    internal static SecretBuffer? DecodeSecret(ReadOnlySpan<byte> rawString, int expected)
    {
        if (rawString.Length < 2 || rawString[0] != '"' || rawString[^1] != '"') return null;
        var raw = rawString[1..^1];
        if (raw.Length > 256) return null;
        Span<char> chars = stackalloc char[256];
        Span<byte> decoded = stackalloc byte[192];
        try
        {
            var n = 0;
            for (var i = 0; i < raw.Length; i++)
            {
                var c = raw[i];
                if (c != '\\')
                {
                    chars[n++] = (char)c;
                    continue;
                }
                if (++i >= raw.Length) return null;
                switch (raw[i])
                {
                    case (byte)'/': chars[n++] = '/'; break;
                    case (byte)'\\': chars[n++] = '\\'; break;
                    case (byte)'"': chars[n++] = '"'; break;
                    case (byte)'u' when i + 4 < raw.Length:
                        var v = 0;
                        for (var j = 1; j <= 4; j++)
                        {
                            var h = HexValue(raw[i + j]);
                            if (h < 0) return null;
                            v = (v << 4) | h;
                        }
                        i += 4;
                        chars[n++] = (char)v;
                        break;
                    default: return null;
                }
            }
            var written = Base64Strict.DecodeLenient(chars[..n], decoded);
            return written == expected ? SecretBuffer.CopyOf(decoded[..written]) : null;
        }
        finally
        {
            CryptographicOperations.ZeroMemory(MemoryMarshal.AsBytes(chars));
            CryptographicOperations.ZeroMemory(decoded);
        }
    }

    private static int HexValue(byte b) => b switch
    {
        >= (byte)'0' and <= (byte)'9' => b - '0',
        >= (byte)'a' and <= (byte)'f' => b - 'a' + 10,
        >= (byte)'A' and <= (byte)'F' => b - 'A' + 10,
        _ => -1,
    };
}
