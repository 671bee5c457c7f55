using System.Buffers.Binary;
using System.Globalization;
using System.Text;
using System.Text.Encodings.Web;
using System.Text.Json;
using System.Text.Json.Nodes;
using CryptoTensors.Gpu.Crypto;
using CryptoTensors.Gpu.Format;
using CryptoTensors.Gpu.Reading;
using CryptoTensors.Gpu.Writing;

namespace CryptoTensors.Gpu.Fuzz;

/// <summary>Makes a case from its seed: file mutations (raw, header JSON, re-signed crypto fields and tensor tables) and policies.</summary>
internal sealed class Generator(Corpus corpus, bool bigOnly = false)
{
    private static readonly JsonSerializerOptions Json = new() { Encoder = JavaScriptEncoder.UnsafeRelaxedJsonEscaping };

    /// <summary>Placeholders replaced after serialization: raw JSON text (numbers JSON nodes cannot hold, deep nesting) and duplicate-key marks.</summary>
    private const char Mark = '\u0001';
    private const string DupMark = "\u0002";

    public FuzzCase Make(long seed)
    {
        var r = new Random(unchecked((int)seed ^ (int)(seed >> 32)));
        if (bigOnly && corpus.BigSeeds.Count > 0) return BigCase(r);
        var roll = r.Next(1000);
        if (roll < 250) return PolicyCase(r);
        if (roll < 252 && corpus.BigSeeds.Count > 0 && r.Next(20) == 0) return BigCase(r);
        var b = corpus.Seeds[r.Next(corpus.Seeds.Count)];
        var c = new FuzzCase { Kind = "file", Description = "", Base = b, File = b.Bytes };
        var steps = 1 + (r.Next(4) == 0 ? r.Next(3) : 0);
        var done = new List<string>();
        for (var i = 0; i < steps; i++)
        {
            var before = (c.File, c.Resigned, c.PreservesTable, c.TouchedData);
            try
            {
                done.Add(MutateFile(r, c));
            }
            catch (Exception e) when (e is ArgumentException or InvalidOperationException or JsonException or FormatException or CryptoTensorsException)
            {
                // The generator met what it cannot edit (a previous step left duplicate keys, say): flip bits instead.
                (c.File, c.Resigned, c.PreservesTable, c.TouchedData) = before;
                done.Add(BitFlips(r, c));
            }
        }
        c.Description = string.Join(" + ", done);
        return c;
    }

    // ---------------------------------------------------------------- files

    private string MutateFile(Random r, FuzzCase c)
    {
        switch (r.Next(100))
        {
            case < 12: return BitFlips(r, c);
            case < 18: return Truncate(r, c);
            case < 21: return Append(r, c);
            case < 25: return LengthPrefix(r, c);
            case < 47: return HeaderJson(r, c);
            case < 62: return CryptoKeys(r, c);
            case < 80: return Encryption(r, c);
            case < 86: return PolicyField(r, c);
            case < 90: return Metadata(r, c);
            default: return TensorTable(r, c);
        }
    }

    private static (byte[] Header, byte[] Data)? Split(byte[] file)
    {
        if (file.Length < 8) return null;
        var n = BinaryPrimitives.ReadUInt64LittleEndian(file);
        if (n > (ulong)(file.Length - 8)) return null;
        return (file.AsSpan(8, (int)n).ToArray(), file.AsSpan(8 + (int)n).ToArray());
    }

    private static byte[] Join(byte[] header, byte[] data, ulong? prefix = null)
    {
        var f = new byte[8 + header.Length + data.Length];
        BinaryPrimitives.WriteUInt64LittleEndian(f, prefix ?? (ulong)header.Length);
        header.CopyTo(f, 8);
        data.CopyTo(f, 8 + header.Length);
        return f;
    }

    private static string BitFlips(Random r, FuzzCase c)
    {
        var f = (byte[])c.File.Clone();
        if (f.Length == 0) return "bitflip(empty)";
        var split = Split(f);
        var dataStart = split is { } s ? 8 + s.Header.Length : f.Length;
        var n = 1 + (r.Next(3) == 0 ? r.Next(16) : 0);
        var where = r.Next(3); // 0 anywhere, 1 header, 2 data
        for (var i = 0; i < n; i++)
        {
            var at = where switch
            {
                1 when dataStart > 8 => 8 + r.Next(dataStart - 8),
                2 when dataStart < f.Length => dataStart + r.Next(f.Length - dataStart),
                _ => r.Next(f.Length),
            };
            f[at] ^= (byte)(1 << r.Next(8));
            if (at < dataStart) c.PreservesTable = false;
            else c.TouchedData = true;
        }
        c.File = f;
        return $"bitflip({n},{(where == 0 ? "any" : where == 1 ? "header" : "data")})";
    }

    private static string Truncate(Random r, FuzzCase c)
    {
        var at = r.Next(3) == 0 ? Math.Max(0, c.File.Length - 1 - r.Next(64)) : r.Next(c.File.Length + 1);
        c.File = c.File.AsSpan(0, Math.Min(at, c.File.Length)).ToArray();
        c.PreservesTable = false;
        c.TouchedData = true;
        return $"truncate({at})";
    }

    private static string Append(Random r, FuzzCase c)
    {
        var extra = new byte[1 + r.Next(r.Next(2) == 0 ? 16 : 5000)];
        r.NextBytes(extra);
        c.File = [.. c.File, .. extra];
        c.TouchedData = true;
        return $"append({extra.Length})";
    }

    private static string LengthPrefix(Random r, FuzzCase c)
    {
        var f = (byte[])c.File.Clone();
        if (f.Length < 8) f = [.. f, .. new byte[8 - f.Length]];
        var n = BinaryPrimitives.ReadUInt64LittleEndian(f);
        ulong[] choices = [0, 1, 7, n - 1, n + 1, n + 8, (ulong)f.Length, (ulong)f.Length - 7, 100_000_000, 100_000_001, int.MaxValue, uint.MaxValue, ulong.MaxValue, 1UL << 63, (ulong)r.NextInt64()];
        var v = choices[r.Next(choices.Length)];
        BinaryPrimitives.WriteUInt64LittleEndian(f, v);
        c.File = f;
        c.PreservesTable = false;
        return $"prefix({v})";
    }

    // ---- header JSON edits (valid JSON), optionally re-signed when the result parses

    private string HeaderJson(Random r, FuzzCase c)
    {
        if (Split(c.File) is not { } s) return BitFlips(r, c);
        JsonNode? root;
        try
        {
            root = JsonNode.Parse(s.Header, documentOptions: new JsonDocumentOptions { MaxDepth = 100_000 });
        }
        catch (JsonException)
        {
            return BitFlips(r, c);
        }
        if (root is null) return BitFlips(r, c);
        var what = MutateTree(r, ref root!, preferTensors: true);
        var text = Render(root);
        c.PreservesTable = false;
        var header = Pad(Encoding.UTF8.GetBytes(text), r);
        var data = s.Data;
        if (r.Next(3) == 0) data = FitData(r, header, data, c);
        var resign = r.Next(2) == 0;
        if (resign && Resign(header) is { } signed)
        {
            header = signed;
            c.Resigned = true;
            what += "+resigned";
        }
        c.File = Join(header, data);
        return "header-json:" + what;
    }

    /// <summary>Pads as writers do (spaces to a multiple of 8), sometimes with odd whitespace or none.</summary>
    private static byte[] Pad(byte[] json, Random r) => r.Next(8) switch
    {
        0 => json,
        1 => [.. json, .. "\n\t \r"u8],
        _ => HeaderSerializer.Pad(json),
    };

    /// <summary>Grows or shrinks the data section to what the (mutated) header claims, when that is small, so that coverage passes.</summary>
    private static byte[] FitData(Random r, byte[] header, byte[] data, FuzzCase c)
    {
        try
        {
            using var doc = JsonDocument.Parse(header, new JsonDocumentOptions { MaxDepth = 100_000 });
            ulong end = 0;
            foreach (var p in doc.RootElement.EnumerateObject())
            {
                if (p.Value.ValueKind == JsonValueKind.Object && p.Value.TryGetProperty("data_offsets", out var o) && o.ValueKind == JsonValueKind.Array && o.GetArrayLength() == 2
                    && o[1].ValueKind == JsonValueKind.Number && o[1].TryGetUInt64(out var e)) end = Math.Max(end, e);
            }
            if (end > 1 << 20) return data;
            c.TouchedData = true;
            if ((ulong)data.Length >= end) return data.AsSpan(0, (int)end).ToArray();
            var more = new byte[(int)end - data.Length];
            r.NextBytes(more);
            return [.. data, .. more];
        }
        catch (Exception e) when (e is JsonException or InvalidOperationException or FormatException)
        {
            return data;
        }
    }

    /// <summary>
    /// Re-signs a header with the fuzz key, keeping its raw form: the signed message is the canonical re-serialization
    /// without <c>__signature__</c>, so only that value changes. Null when the header does not parse or has no signature.
    /// </summary>
    internal static byte[]? Resign(byte[] header)
    {
        SafetensorsHeader parsed;
        try
        {
            parsed = SafetensorsHeader.Parse(header, fileLength: null);
        }
        catch (CryptoTensorsException)
        {
            return null;
        }
        if (parsed.Metadata is null || !parsed.Metadata.TryGetValue(ReservedFields.Signature, out var old) || old.Length == 0) return null;
        var message = CryptoTensorsReader.SignedMessage(parsed);
        Span<byte> sig = stackalloc byte[64];
        Corpus.Signer.Sign(message, sig);
        var text = Encoding.UTF8.GetString(header);
        var at = text.IndexOf("\"" + old + "\"", StringComparison.Ordinal);
        if (at < 0) return null;
        var replaced = string.Concat(text.AsSpan(0, at + 1), Base64Strict.Encode(sig), text.AsSpan(at + 1 + old.Length));
        return Encoding.UTF8.GetBytes(replaced);
    }

    // ---- re-signed structured edits

    private sealed class Parsed(Dictionary<string, string> meta, List<HeaderTensor> tensors, byte[] data)
    {
        public Dictionary<string, string> Meta { get; } = meta;
        public List<HeaderTensor> Tensors { get; } = tensors;
        public byte[] Data { get; set; } = data;
    }

    private static Parsed? ParseFile(byte[] file)
    {
        if (Split(file) is not { } s) return null;
        try
        {
            var h = SafetensorsHeader.Parse(s.Header, fileLength: null);
            var meta = h.Metadata?.ToDictionary(kv => kv.Key, kv => kv.Value, StringComparer.Ordinal) ?? new Dictionary<string, string>(StringComparer.Ordinal);
            return new Parsed(meta, h.Tensors.Select(t => new HeaderTensor(t.Name, t.Dtype, t.Shape, t.Begin, t.End)).ToList(), s.Data);
        }
        catch (CryptoTensorsException)
        {
            return null;
        }
    }

    /// <summary>Serializes and signs (metadata without <c>__signature__</c> signed when the base had one or <paramref name="forceSign"/>).</summary>
    private static byte[] Build(Parsed p, bool sign, Random r)
    {
        var meta = new Dictionary<string, string>(p.Meta, StringComparer.Ordinal);
        meta.Remove(ReservedFields.Signature);
        if (sign) meta[ReservedFields.Signature] = CryptoPlan.Sign(meta, p.Tensors, Corpus.Signer);
        var header = HeaderSerializer.Serialize(meta.Count == 0 && r.Next(2) == 0 ? null : meta, p.Tensors);
        return Join(Pad(header, r), p.Data);
    }

    private string Structured(Random r, FuzzCase c, string label, Func<Parsed, string?> edit)
    {
        if (ParseFile(c.File) is not { } p) return BitFlips(r, c);
        var signed = p.Meta.ContainsKey(ReservedFields.Signature) || p.Meta.ContainsKey(ReservedFields.Encryption);
        var what = edit(p);
        if (what is null) return BitFlips(r, c);
        c.File = Build(p, signed, r);
        if (signed) c.Resigned = true;
        return label + ":" + what;
    }

    private string CryptoKeys(Random r, FuzzCase c) => Structured(r, c, "crypto-keys", p =>
    {
        if (!p.Meta.TryGetValue(ReservedFields.CryptoKeys, out var json)) return null;
        JsonNode root;
        try
        {
            root = JsonNode.Parse(json)!;
        }
        catch (JsonException)
        {
            return null;
        }
        string what;
        if (r.Next(2) == 0 && root is JsonObject o)
        {
            // chunk_size and version: the values that size buffers and pick code paths.
            string[] chunkSizes = ["0", "1", "2", "3", "7", "16", "64", "4095", "4096", "4097", "65536", "2097152", "268435456", "268435457", "2147483591", "2147483647", "2147483648", "4294967296", "9223372036854775807", "18446744073709551615", "18446744073709551616", "-1", "1.0", "1e3", "\"64\"", "null", "true", "[]", "{}"];
            string[] versions = ["\"1\"", "\"2\"", "\"3\"", "\"\"", "1", "2", "null", "\"2 \"", "\"02\""];
            if (r.Next(3) > 0)
            {
                var v = chunkSizes[r.Next(chunkSizes.Length)];
                o["chunk_size"] = Raw(v);
                what = "chunk_size=" + v;
            }
            else
            {
                var v = versions[r.Next(versions.Length)];
                o["version"] = Raw(v);
                what = "version=" + v;
            }
            if (r.Next(4) == 0) { o.Remove("chunk_size"); what += ",no chunk_size"; }
        }
        else what = MutateTree(r, ref root!, preferTensors: false);
        p.Meta[ReservedFields.CryptoKeys] = Render(root);
        return what;
    });

    private string Encryption(Random r, FuzzCase c)
    {
        var result = Structured(r, c, "encryption", p =>
        {
            if (!p.Meta.TryGetValue(ReservedFields.Encryption, out var json)) return null;
            JsonNode root;
            try
            {
                root = JsonNode.Parse(json)!;
            }
            catch (JsonException)
            {
                return null;
            }
            if (root is not JsonObject o || o.Count == 0) return null;
            var names = o.Select(kv => kv.Key).ToList();
            var name = names[r.Next(names.Count)];
            string what;
            switch (r.Next(8))
            {
                case 0 or 1 or 2:
                {
                    // A field's bytes of another length: iv/tag/base_iv/tags/wrapped_key/key_iv/key_tag.
                    string[] fields = ["wrapped_key", "key_iv", "key_tag", "iv", "tag", "base_iv", "tags"];
                    var f = fields[r.Next(fields.Length)];
                    int[] lengths = [0, 1, 11, 12, 13, 15, 16, 17, 24, 31, 32, 33, 48, 64, 1000, 65536];
                    var len = r.Next(3) == 0 && o[name]?[f] is JsonValue jv && jv.TryGetValue<string>(out var cur) && Base64Strict.TryDecode(cur, out var bytes)
                        ? Math.Max(0, bytes.Length + r.Next(-17, 18)) : lengths[r.Next(lengths.Length)];
                    var b = new byte[len];
                    r.NextBytes(b);
                    if (o[name] is JsonObject e) e[f] = Convert.ToBase64String(b);
                    what = $"{name}.{f}={len} bytes";
                    break;
                }
                case 3:
                {
                    var other = names[r.Next(names.Count)];
                    var a = o[name]!.DeepClone();
                    o[name] = o[other]!.DeepClone();
                    o[other] = a;
                    what = $"swap {name} {other}";
                    break;
                }
                case 4:
                    o.Remove(name);
                    what = $"remove {name}";
                    break;
                case 5:
                    o["ghost." + r.Next(100)] = o[name]!.DeepClone();
                    what = $"extra entry copied from {name}";
                    break;
                default:
                    what = MutateTree(r, ref root!, preferTensors: false);
                    break;
            }
            p.Meta[ReservedFields.Encryption] = Render(root);
            return what;
        });
        c.PreservesTable = false;
        return result;
    }

    private string PolicyField(Random r, FuzzCase c) => Structured(r, c, "policy", p =>
    {
        var src = MakePolicy(r, out var label);
        p.Meta[ReservedFields.Policy] = r.Next(10) == 0 ? Render(Raw(DeepArray(r.Next(10, 3000)))) : new AccessPolicy(src, AccessPolicy.DefaultText).Serialize();
        return label;
    });

    private string Metadata(Random r, FuzzCase c)
    {
        var result = Structured(r, c, "metadata", p =>
        {
            switch (r.Next(5))
            {
                case 0:
                    p.Meta["note"] = new string('x', r.Next(1, 3) == 1 ? 70_000 : 1_000_000);
                    return "huge user string";
                case 1:
                    for (var i = 0; i < 5000; i++) p.Meta["k" + i] = "v";
                    return "5000 user keys";
                case 2:
                {
                    var reserved = ReservedFields.All[r.Next(ReservedFields.All.Count)];
                    p.Meta.Remove(reserved);
                    c.PreservesTable = false;
                    return "remove " + reserved;
                }
                case 3:
                    p.Meta["__extra__"] = "{}";
                    return "extra reserved key";
                default:
                    p.Meta["\u00e9\u0000\"\\/\ud83d\ude00"] = "\u2028\u0001";
                    return "odd characters";
            }
        });
        return result;
    }

    private string TensorTable(Random r, FuzzCase c)
    {
        var result = Structured(r, c, "tensors", p =>
        {
            if (p.Tensors.Count == 0) return null;
            var i = r.Next(p.Tensors.Count);
            var t = p.Tensors[i];
            string what;
            switch (r.Next(9))
            {
                case 0:
                {
                    // Same byte count, another shape (a valid edit of a re-signed file).
                    var shape = t.Shape.Count > 0 && t.Shape[0] > 1 ? new List<ulong> { 1 }.Concat(t.Shape).ToArray() : [.. t.Shape, 1];
                    p.Tensors[i] = t with { Shape = shape };
                    what = $"{t.Name} reshape";
                    break;
                }
                case 1:
                {
                    var rank = new[] { 9, 64, 65, 1000, 5000 }[r.Next(5)];
                    p.Tensors[i] = t with { Shape = Enumerable.Repeat(1UL, rank).ToArray() };
                    what = $"{t.Name} rank {rank}";
                    break;
                }
                case 2:
                {
                    ulong[] dims = [0, 1, 2, 3, 4096, uint.MaxValue, 1UL << 32, 1UL << 40, 1UL << 62, ulong.MaxValue];
                    var shape = Enumerable.Range(0, 1 + r.Next(4)).Select(_ => dims[r.Next(dims.Length)]).ToArray();
                    p.Tensors[i] = t with { Shape = shape };
                    what = $"{t.Name} shape [{string.Join(',', shape)}]";
                    break;
                }
                case 3:
                {
                    var dt = Dtypes.All[r.Next(Dtypes.All.Count)];
                    p.Tensors[i] = t with { Dtype = dt };
                    what = $"{t.Name} dtype {dt}";
                    break;
                }
                case 4:
                {
                    ulong[] vals = [0, t.Begin + 1, t.End - 1, t.End + 1, (ulong)p.Data.Length, (ulong)p.Data.Length + 1, int.MaxValue, 1UL << 31, 1UL << 32, long.MaxValue, ulong.MaxValue];
                    var b = r.Next(2) == 0 ? vals[r.Next(vals.Length)] : t.Begin;
                    var e = r.Next(2) == 0 ? vals[r.Next(vals.Length)] : t.End;
                    p.Tensors[i] = t with { Begin = b, End = e };
                    what = $"{t.Name} offsets [{b},{e}]";
                    break;
                }
                case 5:
                {
                    // The last tensor claims a huge size (re-signed): the data section does not hold it.
                    var last = p.Tensors[^1];
                    var claim = new ulong[] { 1UL << 20, (1UL << 31) - 1, 1UL << 31, 3UL << 30, 1UL << 40 }[r.Next(5)];
                    p.Tensors[^1] = last with { Dtype = Dtype.U8, Shape = [claim], End = last.Begin + claim };
                    what = $"{last.Name} claims {claim} bytes";
                    break;
                }
                case 6:
                {
                    var other = p.Tensors[r.Next(p.Tensors.Count)];
                    p.Tensors[i] = t with { Name = other.Name };
                    what = $"{t.Name} renamed {other.Name}";
                    break;
                }
                case 7:
                    p.Tensors.RemoveAt(i);
                    what = $"remove {t.Name}";
                    break;
                default:
                {
                    var names = new[] { "", " ", "__metadata__", "a\u0000b", new string('n', 70_000), "\u00e9\ud83d\ude00", "t\"q" };
                    var n = names[r.Next(names.Length)];
                    p.Tensors[i] = t with { Name = n };
                    what = $"{t.Name} renamed to a {n.Length}-char odd name";
                    break;
                }
            }
            if (r.Next(3) == 0)
            {
                // Fit the data section to the new table when that is small.
                var end = p.Tensors.Count == 0 ? 0 : p.Tensors.Max(x => x.End);
                if (end < 1 << 20)
                {
                    var data = new byte[(int)end];
                    p.Data.AsSpan(0, Math.Min(p.Data.Length, data.Length)).CopyTo(data);
                    p.Data = data;
                    c.TouchedData = true;
                }
            }
            return what;
        });
        c.PreservesTable = false;
        return result;
    }

    // ---- the 100,000-tensor header

    private FuzzCase BigCase(Random r)
    {
        var b = corpus.BigSeeds[r.Next(corpus.BigSeeds.Count)];
        var c = new FuzzCase { Kind = "big", Description = "", Base = b, File = b.Bytes };
        switch (r.Next(5))
        {
            case 0:
                c.Description = "as written";
                break;
            case 1:
                c.Description = BitFlips(r, c);
                break;
            case 2:
                c.Description = Truncate(r, c);
                break;
            case 3:
                c.Description = LengthPrefix(r, c);
                break;
            default:
                c.Description = Structured(r, c, "big-metadata", p =>
                {
                    p.Meta["note"] = "re-signed";
                    return "user key added";
                });
                break;
        }
        return c;
    }

    // ---------------------------------------------------------------- generic JSON tree mutation

    private static JsonNode Raw(string text) => JsonValue.Create(Mark + text + Mark);

    private static string Render(JsonNode? node)
    {
        var text = node is null ? "null" : node.ToJsonString(Json);
        if (text.Contains(Mark, StringComparison.Ordinal))
        {
            // "\u0001TEXT\u0001" (escaped by the serializer as \u0001) → TEXT, unquoted.
            var sb = new StringBuilder(text.Length);
            var i = 0;
            const string open = "\"\\u0001";
            const string close = "\\u0001\"";
            while (true)
            {
                var a = text.IndexOf(open, i, StringComparison.Ordinal);
                if (a < 0) break;
                var z = text.IndexOf(close, a + open.Length, StringComparison.Ordinal);
                if (z < 0) break;
                sb.Append(text, i, a - i);
                sb.Append(JsonUnescape(text.Substring(a + open.Length, z - a - open.Length)));
                i = z + close.Length;
            }
            sb.Append(text, i, text.Length - i);
            text = sb.ToString();
        }
        return text.Replace("\\u0002", "", StringComparison.Ordinal);
    }

    private static string JsonUnescape(string s) => JsonSerializer.Deserialize<string>("\"" + s + "\"")!;

    /// <summary>Mutates one node of the tree; returns a label. With <paramref name="preferTensors"/>, often picks the tensor entries' fields.</summary>
    private static string MutateTree(Random r, ref JsonNode root, bool preferTensors)
    {
        var nodes = new List<JsonNode>();
        Collect(root, nodes, 0);
        var top = root;
        if (preferTensors && r.Next(2) == 0)
        {
            var focused = nodes.Where(n => n.Parent is JsonObject po && po.Parent == top && n.GetPropertyName() is "shape" or "data_offsets" or "dtype"
                || n.Parent is JsonArray pa && pa.GetPropertyName() is "shape" or "data_offsets").ToList();
            if (focused.Count > 0) nodes = focused;
        }
        var target = nodes[r.Next(nodes.Count)];
        var replacement = r.Next(14) switch
        {
            0 or 1 => InterestingNumber(r, target),
            2 => Raw(DeepArray(new[] { 10, 63, 64, 65, 200, 1000, 3000 }[r.Next(7)])),
            3 => Raw(DeepObject(new[] { 10, 64, 65, 500 }[r.Next(4)])),
            4 => JsonValue.Create(new string((char)('a' + r.Next(26)), new[] { 0, 1, 100, 70_000, 300_000 }[r.Next(5)])),
            5 => null,
            6 => JsonValue.Create(r.Next(2) == 0),
            7 => new JsonObject(),
            8 => new JsonArray(),
            9 => JsonValue.Create(new[] { "F32", "F8_E4M3", "f32", "F33", "", "U8", "F4", "BOOL", "C64", "F6_E2M3" }[r.Next(10)]),
            10 => new JsonArray(Enumerable.Range(0, new[] { 0, 2, 9, 64, 65, 1000, 20_000 }[r.Next(7)]).Select(_ => (JsonNode?)JsonValue.Create(r.Next(3))).ToArray()),
            _ => (JsonNode?)"dup",
        };
        if (replacement is JsonValue dv && dv.TryGetValue<string>(out var ds) && ds == "dup")
        {
            // Duplicate a member of the target's object (a key twice), or delete the target.
            if (target.Parent is JsonObject po2 && target.GetPropertyName() is { } key)
            {
                if (r.Next(2) == 0)
                {
                    po2[key + DupMark] = target.DeepClone();
                    return $"duplicate key {Short(key)}";
                }
                po2.Remove(key);
                return $"delete key {Short(key)}";
            }
            if (target.Parent is JsonArray pa2)
            {
                if (r.Next(2) == 0) pa2.Add(target.DeepClone());
                else pa2.Remove(target);
                return "array length";
            }
            return "none";
        }
        var label = $"{Path(target)}={Short(replacement is null ? "null" : Render(replacement))}";
        if (target == root)
        {
            root = replacement ?? new JsonObject();
            return label;
        }
        if (target.Parent is JsonObject obj) obj[target.GetPropertyName()] = replacement;
        else if (target.Parent is JsonArray arr) arr[target.GetElementIndex()] = replacement;
        return label;
    }

    private static string Path(JsonNode n)
    {
        var p = n.GetPath();
        return p.Length > 60 ? p[..57] + "..." : p;
    }

    private static string Short(string s) => s.Length > 40 ? s[..37] + "..." : s;

    private static void Collect(JsonNode? n, List<JsonNode> into, int depth)
    {
        if (n is null || depth > 50 || into.Count > 20_000) return;
        into.Add(n);
        if (n is JsonObject o) foreach (var kv in o) Collect(kv.Value, into, depth + 1);
        else if (n is JsonArray a) foreach (var x in a) Collect(x, into, depth + 1);
    }

    private static JsonNode InterestingNumber(Random r, JsonNode target)
    {
        string[] raw = ["0", "1", "-1", "-0", "0.0", "1.5", "1e3", "1E400", "-1e400", "4294967295", "4294967296", "2147483647", "2147483648",
            "9223372036854775807", "9223372036854775808", "18446744073709551615", "18446744073709551616", "99999999999999999999999999999999", "0.000001", "12345678901234567890123456789e-10"];
        if (target is JsonValue v && v.TryGetValue<long>(out var n) && r.Next(2) == 0)
        {
            long[] deltas = [1, -1, 2, 8, -8, 4096, -4096];
            return Raw((n + deltas[r.Next(deltas.Length)]).ToString(CultureInfo.InvariantCulture));
        }
        return Raw(raw[r.Next(raw.Length)]);
    }

    private static string DeepArray(int depth) => new string('[', depth) + new string(']', depth);

    private static string DeepObject(int depth)
    {
        var sb = new StringBuilder();
        for (var i = 0; i < depth; i++) sb.Append("{\"a\":");
        sb.Append('1');
        sb.Append('}', depth);
        return sb.ToString();
    }

    // ---------------------------------------------------------------- policies

    private FuzzCase PolicyCase(Random r)
    {
        var src = MakePolicy(r, out var label);
        var input = MakeInput(r, out var inputLabel);
        return new FuzzCase { Kind = "policy", Description = label + " / " + inputLabel, PolicySource = src, PolicyInput = input };
    }

    private string MakePolicy(Random r, out string label)
    {
        switch (r.Next(10))
        {
            case < 4:
            {
                var src = corpus.Policies[r.Next(corpus.Policies.Count)];
                var n = 1 + r.Next(3);
                var edits = new List<string>();
                for (var i = 0; i < n; i++) src = MutatePolicyText(r, src, edits, corpus);
                label = "mutated(" + string.Join(",", edits) + ")";
                return src;
            }
            case < 9:
                return HostilePolicy(r, out label);
            default:
                label = "corpus";
                return corpus.Policies[r.Next(corpus.Policies.Count)];
        }
    }

    private static readonly string[] Tokens =
    [
        "(", ")", "[", "]", "{", "}", ",", ";", "\n", " if ", " not ", " some ", " every ", " in ", " := ", " = ", " == ", " != ", " < ", " + ", " - ", " * ", " / ", " % ",
        " | ", " & ", " with ", " else ", " contains ", "input.", "data.model.", "allow", "default ", "import ", "package ", "x", "_", "\"s\"", "`r`", "1", "-1",
        "1e309", "99999999999999999999999", "0.5", "true", "null", "set()", "count(", "regex.match(", "glob.match(", "sprintf(", "http.send(", "f(", "\\", "\"", "#",
        "\u00e9", "\ud83d", "\0",
    ];

    private static string MutatePolicyText(Random r, string src, List<string> edits, Corpus corpus)
    {
        if (src.Length == 0) return Tokens[r.Next(Tokens.Length)];
        var at = r.Next(src.Length + 1);
        switch (r.Next(6))
        {
            case 0:
            {
                var t = Tokens[r.Next(Tokens.Length)];
                edits.Add("insert " + t.Trim());
                return src.Insert(at, t);
            }
            case 1:
            {
                var len = Math.Min(src.Length - Math.Min(at, src.Length), 1 + r.Next(8));
                edits.Add("delete");
                return src.Remove(Math.Min(at, src.Length), len);
            }
            case 2:
            {
                var lines = src.Split('\n').ToList();
                var l = r.Next(lines.Count);
                lines.Insert(r.Next(lines.Count + 1), lines[l]);
                edits.Add("dup line");
                return string.Join('\n', lines);
            }
            case 3:
            {
                var other = corpus.Policies[r.Next(corpus.Policies.Count)].Split('\n');
                edits.Add("splice");
                return src.Insert(at, "\n" + other[r.Next(other.Length)] + "\n");
            }
            case 4:
            {
                var lines = src.Split('\n').ToList();
                lines.RemoveAt(r.Next(lines.Count));
                edits.Add("drop line");
                return string.Join('\n', lines);
            }
            default:
            {
                var t = Tokens[r.Next(Tokens.Length)];
                var n = new[] { 10, 100, 1000, 20_000 }[r.Next(4)];
                edits.Add($"repeat {t.Trim()}x{n}");
                return src.Insert(at, string.Concat(Enumerable.Repeat(t, n)));
            }
        }
    }

    private static string HostilePolicy(Random r, out string label)
    {
        const string head = "package model\nimport rego.v1\ndefault allow := false\n";
        int N(params int[] choices) => choices[r.Next(choices.Length)];
        switch (r.Next(22))
        {
            case 0:
            {
                var d = N(50, 64, 65, 500, 999, 1000, 5000, 50_000);
                label = $"parens {d}";
                return head + "allow if " + new string('(', d) + "true" + new string(')', d);
            }
            case 1:
            {
                var d = N(50, 64, 65, 500, 1000, 5000);
                label = $"array literal depth {d}";
                return head + "x := " + DeepArray(d) + "\nallow if count(x) == 1";
            }
            case 2:
            {
                var d = N(50, 65, 500, 2000);
                label = $"object literal depth {d}";
                return head + "x := " + DeepObject(d) + "\nallow if x";
            }
            case 3:
            {
                var n = N(1000, 100_000, 1_048_000, 1_048_577, 3_000_000);
                label = $"string literal {n}";
                return head + "s := \"" + new string('a', n) + "\"\nallow if count(s) > 0";
            }
            case 4:
            {
                string[] bombs = ["(a+)+$", "(a|aa)+$", "(a*)*b", "^(([a-z])+.)+[A-Z]([a-z])+$", "(x+x+)+y", "(.*a){20}", "a{1000}{1000}", "(?<=(a+)+)b", "\\p{L}{0,100000}", "(", "[z-a]", "a**", "(?P<n>a)", "\\"];
                var p = bombs[r.Next(bombs.Length)];
                label = $"regex bomb {p}";
                return head + $"allow if regex.match(`{p}`, input.context.s)\nallow if regex.match(input.context.p, input.context.s)";
            }
            case 5:
            {
                string[] globs = ["*a*a*a*a*a*a*a*a*a*b", new string('?', 3000), string.Concat(Enumerable.Repeat("[a-z]", 2000)), "**/**/**/**/**/**/**/x", "{a,{b,{c,{d,{e}}}}}", "[", "\\", new string('*', 5000) + "b", "{" + string.Join(',', Enumerable.Range(0, 5000)) + "}"];
                var g = globs[r.Next(globs.Length)];
                label = $"glob bomb {Short(g)}";
                return head + $"allow if glob.match(\"{g}\", [], input.context.s)\nallow if glob.match(input.context.p, [\".\"], input.context.s)";
            }
            case 6:
                label = "self recursion";
                return head + "f(x) := f(x)\nallow if f(1)";
            case 7:
                label = "mutual recursion";
                return head + "a if b\nb if a\nallow if a";
            case 8:
            {
                var n = N(10, 31, 32, 33, 100, 2000);
                label = $"call chain {n}";
                var sb = new StringBuilder(head);
                for (var i = 0; i < n; i++) sb.Append($"r{i} if r{i + 1}\n");
                sb.Append($"r{n} := true\nallow if r0\n");
                return sb.ToString();
            }
            case 9:
            {
                string[] unsupported = ["allow if { x := [y | some y in input.tensors]; count(x) > 0 }", "allow if http.send({\"url\": \"http://x\"})", "allow if true with input as {}",
                    "allow := true if false else := false", "p[x] := 1 if some x in [1]\nallow if p", "allow if opa.runtime()", "allow if { some x; x = 1 }", "allow if net.cidr_contains(\"10.0.0.0/8\", \"10.1.1.1\")",
                    "allow if numbers.range(1, 1000000000)", "allow if data.other.rule", "allow if input[_][_][_][_]", "allow if {1 | 2}", "allow if {1} & {2}"];
                var u = unsupported[r.Next(unsupported.Length)];
                label = "unsupported: " + Short(u);
                return head + u;
            }
            case 10:
            {
                string[] nums = ["1e308 * 1e308 > 0", "99999999999999999999999999 > 1", "9223372036854775807 + 1 > 0", "-9223372036854775808 - 1 < 0", "9223372036854775807 * 9223372036854775807 > 0",
                    "1 / 0 == 0", "1 % 0 == 0", "-9223372036854775808 / -1 > 0", "-9223372036854775808 % -1 == 0", "abs(-9223372036854775808) > 0", "to_number(\"1e400\") > 0",
                    "to_number(\"" + new string('9', 5000) + "\") > 0", "sum([1e308, 1e308]) > 0", "0.1 + 0.2 == 0.3", "1e-400 == 0", "sprintf(\"%d\", [1e300]) != \"\"", "max([]) == 0"];
                var e = nums[r.Next(nums.Length)];
                label = "numbers: " + Short(e);
                return head + "allow if " + e;
            }
            case 11:
            {
                var n = N(1000, 50_000, 200_000);
                label = $"array literal of {n}";
                return head + "x := [" + string.Join(",", Enumerable.Range(0, n)) + "]\nallow if count(x) > 0";
            }
            case 12:
            {
                var n = N(100, 1000, 5000);
                label = $"set literal of {n} and cross product";
                var lit = "{" + string.Join(",", Enumerable.Range(0, n)) + "}";
                return head + $"s := {lit}\nallow if {{\n  some a in s\n  some b in s\n  some c in s\n  a + b + c == -1\n}}";
            }
            case 13:
                label = "nested iteration over input";
                return head + "allow if {\n  some a in input.context.n\n  some b in input.context.n\n  some c in input.context.n\n  a == b + c + 1000000\n}";
            case 14:
            {
                var n = N(10, 50, 100);
                label = $"sprintf doubling x{n}";
                var sb = new StringBuilder(head + "s0 := \"xxxxxxxxxxxxxxxx\"\n");
                for (var i = 0; i < n; i++) sb.Append($"s{i + 1} := concat(\"\", [s{i}, s{i}])\n");
                sb.Append($"allow if count(s{n}) > 0\n");
                return sb.ToString();
            }
            case 15:
            {
                var n = N(10, 40, 200);
                label = $"set doubling x{n}";
                var sb = new StringBuilder(head + "a0 := [1, 2]\n");
                for (var i = 0; i < n; i++) sb.Append($"a{i + 1} := [a{i}, a{i}]\n");
                sb.Append($"allow if a{n} == a{n}\n");
                return sb.ToString();
            }
            case 16:
            {
                var n = N(100, 10_000, 200_000);
                label = $"{n} rules";
                var sb = new StringBuilder(head);
                for (var i = 0; i < n; i++) sb.Append($"allow if input.x == {i}\n");
                return sb.ToString();
            }
            case 17:
            {
                var n = N(100, 1000, 30_000);
                label = $"operator chain {n}";
                return head + "allow if 0" + string.Concat(Enumerable.Repeat(" + 1", n)) + " > 0";
            }
            case 18:
            {
                var n = N(100, 1000, 30_000);
                label = $"ref path {n}";
                return head + "allow if input" + string.Concat(Enumerable.Repeat(".a", n));
            }
            case 19:
            {
                label = "split/concat blowup";
                return head + "allow if {\n  xs := split(input.context.s, \"\")\n  ys := concat(input.context.s, xs)\n  count(ys) > 0\n  zs := sprintf(\"%v %v %v\", [xs, xs, xs])\n  count(zs) > 0\n}";
            }
            case 20:
            {
                var n = N(100, 2000, 100_000);
                label = $"{n} functions params";
                return head + "f(" + string.Join(", ", Enumerable.Range(0, n).Select(i => "a" + i)) + ") := 1\nallow if f(" + string.Join(", ", Enumerable.Repeat("1", n)) + ") == 1";
            }
            default:
            {
                label = "every over big input";
                return head + "allow if {\n  every x in input.context.n { every y in input.context.n { x != y + 1000000 } }\n}";
            }
        }
    }

    private string MakeInput(Random r, out string label)
    {
        switch (r.Next(10))
        {
            case < 4:
                label = "corpus input";
                return corpus.Inputs[r.Next(corpus.Inputs.Count)];
            case 4:
            {
                var d = new[] { 10, 63, 64, 65, 1000, 3000 }[r.Next(6)];
                label = $"input depth {d}";
                return "{\"context\":{\"n\":" + DeepArray(d) + ",\"s\":\"aaaa\"}}";
            }
            case 5:
            {
                var n = new[] { 1000, 10_000, 100_000, 300_000 }[r.Next(4)];
                label = $"input array {n}";
                return "{\"context\":{\"n\":[" + string.Join(",", Enumerable.Range(0, n)) + "],\"s\":\"ab\"}}";
            }
            case 6:
            {
                var n = new[] { 30, 1000, 100_000, 5_000_000 }[r.Next(4)];
                label = $"input string {n}";
                return "{\"context\":{\"s\":\"" + new string('a', n) + "!\",\"p\":\"(a+)+$\",\"n\":[1,2,3]}}";
            }
            case 7:
            {
                label = "input big numbers";
                return "{\"context\":{\"n\":[1e308,-1e308,18446744073709551616,99999999999999999999999999999,1e-400,-0,0.1],\"s\":\"x\"}, \"x\": 123456789012345678901234567890}";
            }
            case 8:
            {
                label = "input many keys";
                return "{\"context\":{" + string.Join(",", Enumerable.Range(0, 20_000).Select(i => $"\"k{i}\":{i}")) + "}}";
            }
            default:
            {
                label = "input pattern";
                string[] ps = ["(a+)+$", "*a*a*a*a*a*a*b", "[", "{a,b}", "**", "\\", new string('?', 2000)];
                return "{\"context\":{\"s\":\"" + new string('a', 40) + "!\",\"p\":" + JsonSerializer.Serialize(ps[r.Next(ps.Length)]) + ",\"n\":[1,2]}}";
            }
        }
    }
}
