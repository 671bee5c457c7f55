using System.Numerics;
using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;
using System.Runtime.Intrinsics;
using System.Text.Json;
using CryptoTensors.Gpu.Format;

using static CryptoTensors.Gpu.Format.JsonScan;

namespace CryptoTensors.Gpu.Crypto;

/// <summary>The names of the reserved <c>__metadata__</c> fields (FORMAT.md §2).</summary>
public static class ReservedFields
{
    /// <summary>Key descriptors, version and chunk size.</summary>
    public const string CryptoKeys = "__crypto_keys__";
    /// <summary>Per-tensor wrapped data keys, nonces and tags.</summary>
    public const string Encryption = "__encryption__";
    /// <summary>The access policy.</summary>
    public const string Policy = "__policy__";
    /// <summary>Base64 Ed25519 signature of the canonical header.</summary>
    public const string Signature = "__signature__";

    /// <summary>The four fields a writer replaces.</summary>
    public static IReadOnlyList<string> All { get; } = [CryptoKeys, Encryption, Policy, Signature];

    /// <summary>True for metadata keys the reader reports as reserved (every key starting with <c>__</c>).</summary>
    public static bool IsReserved(string key) => key.StartsWith("__", StringComparison.Ordinal);
}

/// <summary>A key descriptor in <c>__crypto_keys__</c>: <c>kty</c>, <c>alg</c>, optional <c>kid</c>/<c>jku</c>. Never key bytes.</summary>
public sealed record KeyDescriptor(string Kty, string Alg, string? Kid, string? Jku)
{
    internal void Write(CompactJsonWriter w)
    {
        w.StartObject();
        w.Property("alg", Alg);
        if (Jku is not null) w.Property("jku", Jku);
        if (Kid is not null) w.Property("kid", Kid);
        w.Property("kty", Kty);
        w.EndObject();
    }
}

/// <summary>The content of <c>__crypto_keys__</c>.</summary>
/// <param name="Version">"1" or "2".</param>
/// <param name="ChunkSize">The chunk size when data is chunked (v2, or any version that carries one); null = monolithic.</param>
/// <param name="WrittenChunkSize">Whether <c>chunk_size</c> is present in the JSON.</param>
/// <param name="Enc">The master key descriptor.</param>
/// <param name="Sign">The signing key descriptor.</param>
public sealed record CryptoKeysField(string Version, long? ChunkSize, bool WrittenChunkSize, KeyDescriptor Enc, KeyDescriptor Sign)
{
    /// <summary>The reference's default chunk size, 2 MiB.</summary>
    public const long DefaultChunkSize = 2 * 1024 * 1024;

    internal string Serialize()
    {
        var w = new CompactJsonWriter();
        w.StartObject();
        if (WrittenChunkSize) w.Property("chunk_size", (ulong)ChunkSize!.Value);
        w.Name("enc");
        Enc.Write(w);
        w.Name("sign");
        Sign.Write(w);
        w.Property("version", Version);
        w.EndObject();
        return w.ToUtf8String();
    }

    internal static CryptoKeysField Parse(string json)
    {
        using var doc = StrictJson.Parse(json, ReservedFields.CryptoKeys);
        var root = doc.RootElement;
        if (root.ValueKind != JsonValueKind.Object) throw Bad("must be a JSON object");
        if (!root.TryGetProperty("version", out var v) || v.ValueKind != JsonValueKind.String)
            throw Errors.Create(ErrorCode.MissingVersion, "version field is missing or not a string", field: ReservedFields.CryptoKeys);
        var version = v.GetString()!;
        if (version is not ("1" or "2"))
            throw Errors.Create(ErrorCode.UnsupportedVersion, $"unsupported version '{version}'", field: ReservedFields.CryptoKeys);
        long? chunk = null;
        var written = false;
        if (root.TryGetProperty("chunk_size", out var c))
        {
            if (c.ValueKind != JsonValueKind.Number || !c.TryGetUInt64(out var cs) || !IsPlainInteger(c.GetRawText()))
                throw Errors.Create(ErrorCode.InvalidChunkSize, "chunk_size must be an unsigned integer", field: ReservedFields.CryptoKeys);
            if (cs == 0) throw Errors.Create(ErrorCode.InvalidChunkSize, "chunk_size must not be zero", field: ReservedFields.CryptoKeys);
            if (cs > int.MaxValue) throw Errors.Create(ErrorCode.InvalidChunkSize, $"chunk_size {cs} exceeds the supported maximum {int.MaxValue}", field: ReservedFields.CryptoKeys);
            chunk = (long)cs;
            written = true;
        }
        else if (version == "2") chunk = DefaultChunkSize;
        var enc = ParseDescriptor(root, "enc", "oct");
        var sign = ParseDescriptor(root, "sign", "okp");
        return new CryptoKeysField(version, chunk, written, enc, sign);
    }

    private static bool IsPlainInteger(string raw) => raw.All(char.IsAsciiDigit);

    private static KeyDescriptor ParseDescriptor(JsonElement root, string name, string kty)
    {
        if (!root.TryGetProperty(name, out var e) || e.ValueKind != JsonValueKind.Object)
            throw Bad($"'{name}' key descriptor is missing or not an object");
        foreach (var secret in new[] { "k", "x", "d" })
        {
            if (e.TryGetProperty(secret, out _))
                throw Errors.Create(ErrorCode.KeyInHeader, $"the header's '{name}' key descriptor carries key material '{secret}'; keys never come from the header", field: ReservedFields.CryptoKeys);
        }
        var k = Str(e, "kty", name);
        if (k != kty) throw Bad($"'{name}.kty' must be '{kty}', not '{k}'");
        var alg = Str(e, "alg", name);
        if (string.IsNullOrEmpty(alg)) throw Bad($"'{name}.alg' is missing or empty");
        var ok = kty == "oct" ? AeadAlgorithms.TryParse(alg, out _) : string.Equals(alg, "ed25519", StringComparison.OrdinalIgnoreCase);
        if (!ok) throw Errors.Create(ErrorCode.UnsupportedAlgorithm, $"'{name}.alg' '{alg}' is not a supported algorithm", field: ReservedFields.CryptoKeys);
        return new KeyDescriptor(kty, alg!, OptStr(e, "kid", name), OptStr(e, "jku", name));
    }

    private static string? Str(JsonElement e, string field, string owner)
        => e.TryGetProperty(field, out var v) && v.ValueKind == JsonValueKind.String ? v.GetString() : throw Bad($"'{owner}.{field}' is missing or not a string");

    private static string? OptStr(JsonElement e, string field, string owner)
    {
        if (!e.TryGetProperty(field, out var v) || v.ValueKind == JsonValueKind.Null) return null;
        return v.ValueKind == JsonValueKind.String ? v.GetString() : throw Bad($"'{owner}.{field}' must be a string");
    }

    private static CryptoTensorsException Bad(string message)
        => Errors.Create(ErrorCode.InvalidCryptoField, message, field: ReservedFields.CryptoKeys);
}

/// <summary>One tensor's entry of <c>__encryption__</c>. v1 fills <see cref="Iv"/>/<see cref="Tag"/>, v2 <see cref="BaseIv"/>/<see cref="Tags"/>.</summary>
internal sealed class EncryptionEntry
{
    public required byte[] WrappedKey { get; init; }
    public required byte[] KeyIv { get; init; }
    public required byte[] KeyTag { get; init; }
    public byte[] Iv { get; init; } = [];
    public byte[] Tag { get; init; } = [];
    public byte[] BaseIv { get; init; } = [];
    public byte[] Tags { get; init; } = [];

    internal void Write(CompactJsonWriter w, bool chunked)
    {
        w.StartObject();
        w.Property("wrapped_key", Base64Strict.Encode(WrappedKey));
        w.Property("key_iv", Base64Strict.Encode(KeyIv));
        w.Property("key_tag", Base64Strict.Encode(KeyTag));
        if (chunked)
        {
            w.Property("base_iv", Base64Strict.Encode(BaseIv));
            w.Property("tags", Base64Strict.Encode(Tags));
        }
        else
        {
            w.Property("iv", Base64Strict.Encode(Iv));
            w.Property("tag", Base64Strict.Encode(Tag));
        }
        w.EndObject();
    }

    internal static string Serialize(IReadOnlyDictionary<string, EncryptionEntry> entries, bool chunked)
    {
        var w = new CompactJsonWriter(64 + entries.Count * 160);
        w.StartObject();
        foreach (var name in entries.Keys.OrderBy(n => n, Utf8Order.Instance))
        {
            w.Name(name);
            entries[name].Write(w, chunked);
        }
        w.EndObject();
        return w.ToUtf8String();
    }

    private static readonly string[] FieldNames = ["wrapped_key", "key_iv", "key_tag", "iv", "tag", "base_iv", "tags"];

    /// <summary>
    /// Parses <c>__encryption__</c> in one forward pass (it holds an entry per tensor, so open time of many-tensor
    /// models depends on it): duplicate names or fields refused, unknown fields ignored, base64 strict.
    /// </summary>
    internal static Dictionary<string, EncryptionEntry> Parse(string json)
    {
        var rented = System.Buffers.ArrayPool<byte>.Shared.Rent(Math.Max(1, System.Text.Encoding.UTF8.GetByteCount(json)));
        try
        {
            var n = System.Text.Encoding.UTF8.GetBytes(json, rented);
            return Parse(rented.AsSpan(0, n));
        }
        finally
        {
            System.Buffers.ArrayPool<byte>.Shared.Return(rented);
        }
    }

    private static Dictionary<string, EncryptionEntry> Parse(ReadOnlySpan<byte> utf8)
        => TryParsePlain(utf8) ?? ParseGeneral(utf8);

    /// <summary>
    /// <see cref="Parse(string)"/> from the stored form of the <c>__encryption__</c> metadata value: its bytes in the
    /// header, still escaped as a JSON string. What writers emit (the only escapes being <c>\"</c>) is scanned in place,
    /// with no string built; anything else is parsed from the unescaped <paramref name="value"/>.
    /// </summary>
    internal static Dictionary<string, EncryptionEntry> ParseStored(ReadOnlySpan<byte> stored, Func<string> value)
        => TryParsePlain(stored, inString: true) ?? Parse(value());

    /// <summary>
    /// The fast path of <see cref="Parse(ReadOnlySpan{byte})"/> for what writers emit: an object of objects whose names
    /// and values are strings without escapes (values: valid strict base64, or <c>null</c> for optional fields), only
    /// known fields, JSON whitespace anywhere. Returns null on anything else, valid or not, including every semantic
    /// error (duplicates, missing or empty key fields, bad base64): the general parser then decides, and reports the
    /// error. Everything accepted here is read exactly as the general parser reads it.
    /// </summary>
    /// <remarks>
    /// With <paramref name="inString"/>, <paramref name="s"/> is the JSON text as stored inside a JSON string (the metadata
    /// value): every quote appears as <c>\"</c>, and any other backslash (another escape, or whitespace other than
    /// spaces, which would be escaped) makes it decline; so it reads exactly the text the unescaped value holds.
    /// </remarks>
    internal static Dictionary<string, EncryptionEntry>? TryParsePlain(ReadOnlySpan<byte> s, bool inString = false)
        => TryParsePlainPrefix(s, inString, out var consumed) is { } result && Ends(s, consumed) ? result : null;

    /// <summary>
    /// <see cref="TryParsePlain"/> of the object that starts <paramref name="s"/>, whatever follows it:
    /// <paramref name="consumed"/> bytes, up to its closing brace. What it accepts it reads only from those bytes, so
    /// it is what <see cref="TryParsePlain"/> returns for any span that starts with them and then holds only whitespace.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    internal static Dictionary<string, EncryptionEntry>? TryParsePlainPrefix(ReadOnlySpan<byte> s, bool inString, out int consumed)
    {
        consumed = 0;
        var i = 0;
        if (!Expect(s, ref i, (byte)'{')) return null;
        var result = new Dictionary<string, EncryptionEntry>(StringComparer.Ordinal);
        Span<Range> fields = stackalloc Range[FieldNames.Length];
        var decoded = new byte[FieldNames.Length][];
        if (Peek(s, ref i) == (byte)'}')
        {
            consumed = i + 1;
            return result;
        }
        while (true)
        {
            if (!TryString(s, ref i, out var name, inString) || !IsPlainName(s[name]) || !Expect(s, ref i, (byte)':') || !Expect(s, ref i, (byte)'{')) return null;
            if (result.Count == HeaderLimits.MaxTensorCount) return null;
            var tensor = System.Text.Encoding.UTF8.GetString(s[name]);
            ref var slot = ref System.Runtime.InteropServices.CollectionsMarshal.GetValueRefOrAddDefault(result, tensor, out var exists);
            if (exists) return null;
            var present = 0;
            var isNull = 0;
            if (Peek(s, ref i) == (byte)'}') i++;
            else
            {
                while (true)
                {
                    if (!TryString(s, ref i, out var field, inString) || !Expect(s, ref i, (byte)':')) return null;
                    var f = PlainFieldIndex(s[field]);
                    if (f < 0 || (present & (1 << f)) != 0) return null;
                    present |= 1 << f;
                    if (Peek(s, ref i) == (byte)'n')
                    {
                        if (!s[i..].StartsWith("null"u8)) return null;
                        i += 4;
                        isNull |= 1 << f;
                    }
                    else if (!TryString(s, ref i, out fields[f], inString)) return null;
                    var next = Peek(s, ref i);
                    i++;
                    if (next == (byte)'}') break;
                    if (next != (byte)',') return null;
                }
            }
            // The three key fields must be present, non-null and non-empty.
            if ((present & 7) != 7 || (isNull & 7) != 0) return null;
            Array.Clear(decoded);
            for (var f = 0; f < FieldNames.Length; f++)
            {
                if ((present & (1 << f)) == 0 || (isNull & (1 << f)) != 0) continue;
                if (!Base64Strict.TryDecodeUtf8(s[fields[f]], out decoded[f])) return null;
            }
            if (decoded[0].Length == 0 || decoded[1].Length == 0 || decoded[2].Length == 0) return null;
            slot = new EncryptionEntry
            {
                WrappedKey = decoded[0], KeyIv = decoded[1], KeyTag = decoded[2],
                Iv = decoded[3] ?? [], Tag = decoded[4] ?? [], BaseIv = decoded[5] ?? [], Tags = decoded[6] ?? [],
            };
            var after = Peek(s, ref i);
            i++;
            if (after == (byte)'}')
            {
                consumed = i;
                return result;
            }
            if (after != (byte)',') return null;
        }
    }

    /// <summary>
    /// A string token: the range of its raw content, up to the first quote (or, with <paramref name="inString"/>, where
    /// the text is stored inside a JSON string, up to the first backslash, which must start <c>\"</c>). The content is
    /// not checked here: field names must then equal a known name and values must be strict base64, which no escape,
    /// quote or control character is; tensor names are checked by <see cref="IsPlainName"/>.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static bool TryString(ReadOnlySpan<byte> s, ref int i, out Range content, bool inString)
    {
        content = default;
        if (inString)
        {
            if (Peek(s, ref i) != (byte)'\\' || i + 1 >= s.Length || s[i + 1] != (byte)'"') return false;
            i++;
        }
        else if (Peek(s, ref i) != (byte)'"') return false;
        var start = i + 1;
        var j = IndexOfTerminator(s, start, inString ? (byte)'\\' : (byte)'"');
        if (j < 0) return false;
        if (inString)
        {
            if (j + 1 >= s.Length || s[j + 1] != (byte)'"') return false;
            i = j + 2;
        }
        else i = j + 1;
        content = start..j;
        return true;
    }

    /// <summary>
    /// The index of the first <paramref name="terminator"/> at or after <paramref name="start"/>, or -1: the tokens here are
    /// short (names and base64 of 12 to 44 characters), so one 32-byte compare usually finds it, without the set-up of a
    /// general <see cref="MemoryExtensions.IndexOf{T}(ReadOnlySpan{T}, T)"/> call per token.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static int IndexOfTerminator(ReadOnlySpan<byte> s, int start, byte terminator)
    {
        if (Vector256.IsHardwareAccelerated)
        {
            var t = Vector256.Create(terminator);
            ref var origin = ref MemoryMarshal.GetReference(s);
            var j = start;
            for (; j <= s.Length - Vector256<byte>.Count; j += Vector256<byte>.Count)
            {
                var mask = Vector256.Equals(Vector256.LoadUnsafe(ref origin, (nuint)j), t).ExtractMostSignificantBits();
                if (mask != 0) return j + BitOperations.TrailingZeroCount(mask);
            }
            start = j;
        }
        var k = s[start..].IndexOf(terminator);
        return k < 0 ? -1 : start + k;
    }

    /// <summary>A tensor name read as it is stored: no quote, backslash or control character in it.</summary>
    private static bool IsPlainName(ReadOnlySpan<byte> name) => name.IndexOfAny(NameSpecials) < 0;

    /// <summary>The bytes a tensor name read without unescaping may not hold: a quote, a backslash, a control character.</summary>
    private static readonly System.Buffers.SearchValues<byte> NameSpecials =
        System.Buffers.SearchValues.Create([.. Enumerable.Range(0, 0x20).Select(b => (byte)b), (byte)'"', (byte)'\\']);

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static int PlainFieldIndex(ReadOnlySpan<byte> name)
    {
        // By length first: only key_tag and base_iv share one.
        var f = name.Length switch
        {
            11 => 0,
            6 => 1,
            7 => name[0] == (byte)'k' ? 2 : 5,
            2 => 3,
            3 => 4,
            4 => 6,
            _ => -1,
        };
        return f >= 0 && name.SequenceEqual(Utf8FieldNames[f]) ? f : -1;
    }

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    internal static Dictionary<string, EncryptionEntry> ParseGeneral(ReadOnlySpan<byte> utf8)
    {
        var reader = new Utf8JsonReader(utf8, new JsonReaderOptions { MaxDepth = HeaderLimits.MaxReservedFieldDepth });
        var result = new Dictionary<string, EncryptionEntry>(StringComparer.Ordinal);
        string? tensor = null;
        try
        {
            if (!reader.Read() || reader.TokenType != JsonTokenType.StartObject)
                throw Errors.Create(ErrorCode.InvalidCryptoField, "must be a JSON object", field: ReservedFields.Encryption);
            var fields = new byte[FieldNames.Length][];
            while (reader.Read() && reader.TokenType == JsonTokenType.PropertyName)
            {
                if (result.Count == HeaderLimits.MaxTensorCount)
                    throw Errors.Create(ErrorCode.InvalidCryptoField, $"more than {HeaderLimits.MaxTensorCount} entries", field: ReservedFields.Encryption);
                tensor = reader.GetString()!;
                ref var slot = ref System.Runtime.InteropServices.CollectionsMarshal.GetValueRefOrAddDefault(result, tensor, out var exists);
                if (exists) throw Errors.Create(ErrorCode.InvalidCryptoField, "duplicate entry", tensor: tensor, field: ReservedFields.Encryption);
                if (!reader.Read() || reader.TokenType != JsonTokenType.StartObject)
                    throw Errors.Create(ErrorCode.InvalidCryptoField, "entry must be an object", tensor: tensor, field: ReservedFields.Encryption);
                Array.Clear(fields);
                var present = 0;
                while (reader.Read() && reader.TokenType == JsonTokenType.PropertyName)
                {
                    var f = FieldIndex(ref reader);
                    reader.Read();
                    if (f < 0)
                    {
                        reader.TrySkip(); // unknown fields (e.g. enc_algo) are ignored, as the reference does
                        continue;
                    }
                    if ((present & (1 << f)) != 0) throw Errors.Create(ErrorCode.InvalidCryptoField, $"duplicate field `{FieldNames[f]}`", tensor: tensor, field: FieldNames[f]);
                    present |= 1 << f;
                    if (reader.TokenType == JsonTokenType.Null) continue;
                    if (reader.TokenType != JsonTokenType.String || !DecodeValue(ref reader, out fields[f]))
                        throw Errors.Create(f < 3 ? ErrorCode.InvalidWrappedKey : ErrorCode.InvalidCryptoField, $"{FieldNames[f]} is not valid base64", tensor: tensor, field: FieldNames[f]);
                }
                for (var f = 0; f < 3; f++)
                {
                    if ((present & (1 << f)) == 0)
                        throw Errors.Create(ErrorCode.InvalidCryptoField, $"missing field `{FieldNames[f]}`", tensor: tensor, field: FieldNames[f]);
                    if (fields[f] is null || fields[f].Length == 0)
                        throw Errors.Create(ErrorCode.InvalidWrappedKey, $"{FieldNames[f]} is empty", tensor: tensor, field: FieldNames[f]);
                }
                slot = new EncryptionEntry
                {
                    WrappedKey = fields[0], KeyIv = fields[1], KeyTag = fields[2],
                    Iv = fields[3] ?? [], Tag = fields[4] ?? [], BaseIv = fields[5] ?? [], Tags = fields[6] ?? [],
                };
            }
            if (reader.TokenType != JsonTokenType.EndObject || reader.Read())
                throw Errors.Create(ErrorCode.InvalidCryptoField, "trailing characters after the object", field: ReservedFields.Encryption);
            return result;
        }
        catch (JsonException e)
        {
            throw Errors.Create(ErrorCode.InvalidCryptoField, $"not valid JSON: {e.Message}", tensor: tensor, field: ReservedFields.Encryption, inner: e);
        }
    }

    private static readonly byte[][] Utf8FieldNames = FieldNames.Select(System.Text.Encoding.UTF8.GetBytes).ToArray();

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static int FieldIndex(ref Utf8JsonReader reader)
    {
        if (!reader.ValueIsEscaped)
        {
            // The usual case: compare the stored bytes (no per-name transcoding of the candidates).
            var name = reader.ValueSpan;
            for (var i = 0; i < Utf8FieldNames.Length; i++)
            {
                if (name.SequenceEqual(Utf8FieldNames[i])) return i;
            }
            return -1;
        }
        for (var i = 0; i < Utf8FieldNames.Length; i++)
        {
            if (reader.ValueTextEquals(Utf8FieldNames[i])) return i;
        }
        return -1;
    }

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static bool DecodeValue(ref Utf8JsonReader reader, out byte[] bytes)
    {
        if (!reader.ValueIsEscaped) return Base64Strict.TryDecodeUtf8(reader.ValueSpan, out bytes);
        return Base64Strict.TryDecode(reader.GetString()!, out bytes);
    }
}

/// <summary>The content of <c>__policy__</c>: a local Rego policy (evaluated) and a remote one (stored, signed, not evaluated).</summary>
public sealed record AccessPolicy(string Local, string Remote)
{
    /// <summary>The reference's default text for both fields: <c>package model\nallow = true</c>.</summary>
    public const string DefaultText = "package model\nallow = true";

    /// <summary>The default policy (allows).</summary>
    public static AccessPolicy Default { get; } = new(DefaultText, DefaultText);

    internal string Serialize()
    {
        var w = new CompactJsonWriter();
        w.StartObject();
        w.Property("local", Local);
        w.Property("remote", Remote);
        w.EndObject();
        return w.ToUtf8String();
    }

    internal static AccessPolicy Parse(string json)
    {
        using var doc = StrictJson.Parse(json, ReservedFields.Policy);
        var root = doc.RootElement;
        if (root.ValueKind != JsonValueKind.Object
            || !root.TryGetProperty("local", out var l) || l.ValueKind != JsonValueKind.String
            || !root.TryGetProperty("remote", out var r) || r.ValueKind != JsonValueKind.String)
            throw Errors.Create(ErrorCode.InvalidCryptoField, "must be an object with string fields 'local' and 'remote'", field: ReservedFields.Policy);
        return new AccessPolicy(l.GetString()!, r.GetString()!);
    }
}

/// <summary>JSON parsing for reserved fields: duplicates rejected, depth bounded.</summary>
internal static class StrictJson
{
    public static JsonDocument Parse(string json, string field)
    {
        try
        {
            return JsonDocument.Parse(json, new JsonDocumentOptions { MaxDepth = HeaderLimits.MaxReservedFieldDepth, AllowDuplicateProperties = false });
        }
        catch (JsonException e)
        {
            throw Errors.Create(ErrorCode.InvalidCryptoField, $"not valid JSON: {e.Message}", field: field, inner: e);
        }
    }
}
