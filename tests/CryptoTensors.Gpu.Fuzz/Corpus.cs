using System.Text.Json;
using System.Text.Json.Nodes;
using CryptoTensors.Gpu.Crypto;
using CryptoTensors.Gpu.Format;
using CryptoTensors.Gpu.Keys;
using CryptoTensors.Gpu.Writing;

namespace CryptoTensors.Gpu.Fuzz;

/// <summary>A base file to mutate: its bytes, the keys that open it, and its tensors' plaintext hashes where known.</summary>
internal sealed class Seed
{
    public required string Name { get; init; }
    public required byte[] Bytes { get; init; }
    public MasterKey? Master { get; init; }
    public VerificationKey? Verify { get; init; }
    /// <summary>Tensor name → (byte length, SHA-256 hex) of the plaintext, when known.</summary>
    public Dictionary<string, (long Length, byte[] Sha)>? Expected { get; init; }
    /// <summary>A big base (the 100,000-tensor header): only cheap mutations.</summary>
    public bool Big { get; init; }
}

/// <summary>Everything cases are made from.</summary>
internal sealed class Corpus
{
    public List<Seed> Seeds { get; } = [];
    public List<Seed> BigSeeds { get; } = [];
    public List<string> Policies { get; } = [];
    public List<string> Inputs { get; } = [];

    /// <summary>The fixed fuzz keys: re-signed cases are signed with <see cref="Signer"/>.</summary>
    public static SigningKey Signer { get; } = SigningKey.FromSeed(Enumerable.Range(0, 32).Select(i => (byte)(0xA0 + i)).ToArray(), "fuzz-sign");

    public static MasterKey Aes256 { get; } = MasterKey.FromBytes(Enumerable.Range(0, 32).Select(i => (byte)(0x10 + i)).ToArray(), AeadAlgorithm.Aes256Gcm, "fuzz-enc");
    public static MasterKey Aes128 { get; } = MasterKey.FromBytes(Enumerable.Range(0, 16).Select(i => (byte)(0x30 + i)).ToArray(), AeadAlgorithm.Aes128Gcm, "fuzz-enc-128");
    public static MasterKey ChaCha { get; } = MasterKey.FromBytes(Enumerable.Range(0, 32).Select(i => (byte)(0x50 + i)).ToArray(), AeadAlgorithm.ChaCha20Poly1305, "fuzz-enc-chacha");

    public static MasterKey KeyByKid(string? kid) => kid switch
    {
        "fuzz-enc-128" => Aes128,
        "fuzz-enc-chacha" => ChaCha,
        _ => Aes256,
    };

    public static Corpus Load(string corpusDir, string vectorsDir, bool big)
    {
        var c = new Corpus();
        c.LoadVectors(vectorsDir);
        var files = Path.Combine(corpusDir, "files");
        if (Directory.Exists(files))
        {
            foreach (var f in Directory.GetFiles(files, "*.safetensors").Order(StringComparer.Ordinal))
            {
                var sidecar = JsonNode.Parse(File.ReadAllText(Path.ChangeExtension(f, ".json")))!;
                var kid = sidecar["enc_kid"]?.GetValue<string>();
                c.Seeds.Add(new Seed
                {
                    Name = "corpus/" + Path.GetFileNameWithoutExtension(f),
                    Bytes = File.ReadAllBytes(f),
                    Master = kid is null ? null : KeyByKid(kid),
                    Verify = kid is null ? null : Signer.Public,
                    Expected = sidecar["tensors"]!.AsObject().ToDictionary(kv => kv.Key,
                        kv => (kv.Value!["nbytes"]!.GetValue<long>(), Convert.FromHexString(kv.Value!["sha256"]!.GetValue<string>())), StringComparer.Ordinal),
                });
            }
        }
        foreach (var p in Directory.GetFiles(Path.Combine(corpusDir, "policies"), "*.rego").Order(StringComparer.Ordinal)) c.Policies.Add(File.ReadAllText(p));
        foreach (var p in Directory.GetFiles(Path.Combine(corpusDir, "inputs"), "*.json").Order(StringComparer.Ordinal)) c.Inputs.Add(File.ReadAllText(p));
        if (c.Policies.Count == 0 || c.Inputs.Count == 0 || c.Seeds.Count == 0) throw new InvalidOperationException($"empty corpus in {corpusDir} / {vectorsDir}");
        if (big) c.BigSeeds.AddRange(CorpusWriter.BigSeeds());
        return c;
    }

    private void LoadVectors(string dir)
    {
        var index = Path.Combine(dir, "index.json");
        if (!File.Exists(index)) return;
        using var doc = JsonDocument.Parse(File.ReadAllText(index));
        foreach (var v in doc.RootElement.GetProperty("vectors").EnumerateArray())
        {
            var name = v.GetProperty("name").GetString()!;
            var vdir = Path.Combine(dir, name);
            var expectedPath = Path.Combine(vdir, "expected.json");
            if (!File.Exists(expectedPath)) continue;
            using var e = JsonDocument.Parse(File.ReadAllText(expectedPath));
            var root = e.RootElement;
            var file = Path.Combine(vdir, root.TryGetProperty("file", out var fe) ? fe.GetString()! : "model.safetensors");
            if (!File.Exists(file)) continue;
            MasterKey? master = null;
            VerificationKey? verify = null;
            if (root.TryGetProperty("keys", out var keys) && keys.ValueKind == JsonValueKind.Object)
            {
                try
                {
                    if (keys.TryGetProperty("enc", out var enc) && enc.ValueKind == JsonValueKind.String) master = Jwk.LoadMasterKey(Path.Combine(vdir, enc.GetString()!));
                    if (keys.TryGetProperty("sign", out var sign) && sign.ValueKind == JsonValueKind.String) verify = Jwk.LoadVerificationKey(Path.Combine(vdir, sign.GetString()!));
                }
                catch (CryptoTensorsException)
                {
                    // A vector whose keys are themselves malformed: mutate it keyless.
                }
            }
            Dictionary<string, (long, byte[])>? expected = null;
            if (root.GetProperty("expect").GetString() == "ok" && root.TryGetProperty("tensors", out var ts))
            {
                expected = new Dictionary<string, (long, byte[])>(StringComparer.Ordinal);
                foreach (var t in ts.EnumerateArray())
                    expected[t.GetProperty("name").GetString()!] = (t.GetProperty("nbytes").GetInt64(), Convert.FromHexString(t.GetProperty("sha256").GetString()!));
            }
            Seeds.Add(new Seed { Name = "vector/" + name, Bytes = File.ReadAllBytes(file), Master = master, Verify = verify, Expected = expected });
        }
    }
}

/// <summary>Deterministic writer randomness, so the corpus and the big seeds are the same bytes on every run.</summary>
internal sealed class SeededRandomSource(int seed) : IRandomSource
{
    private readonly Random _random = new(seed);

    public void Fill(Span<byte> destination, RandomPurpose purpose, string tensor) => _random.NextBytes(destination);
}

/// <summary>Writes the seed corpus files (kept in the repository) and the big seeds (made at run time).</summary>
internal static class CorpusWriter
{
    private sealed record Spec(string Name, MasterKey? Master, int Version, long ChunkSize, Func<List<TensorSource>> Tensors, string[]? EncryptOnly = null);

    private static byte[] Data(int n, int seed)
    {
        var b = new byte[n];
        new Random(seed).NextBytes(b);
        return b;
    }

    private static TensorSource T(string name, Dtype dtype, ulong[] shape, int seed)
    {
        dtype.TryByteSize(shape, out var n);
        return TensorSource.FromMemory(name, dtype, shape, Data((int)n, seed));
    }

    private static List<TensorSource> Mixed() =>
    [
        T("embed.weight", Dtype.F32, [16, 8], 1),
        T("norm.bf16", Dtype.BF16, [40], 2),
        T("scalar", Dtype.F64, [], 3),
        T("empty", Dtype.F32, [0, 3], 4),
        T("mask", Dtype.BOOL, [13], 5),
        T("f4", Dtype.F4, [3, 6], 6),
        T("ids", Dtype.I64, [5, 3], 7),
        T("h.0.attn.w", Dtype.F16, [24, 9], 8),
    ];

    private static List<TensorSource> Tiny(int n) => Enumerable.Range(0, n).Select(i => T($"t{i:D4}", Dtype.U8, [(ulong)(1 + i % 4)], 100 + i)).ToList();

    private static IEnumerable<Spec> Specs() =>
    [
        new("plain-mixed", null, 2, 0, Mixed),
        new("v1-aes256-mixed", Corpus.Aes256, 1, 0, Mixed),
        new("v2-chacha-chunk64", Corpus.ChaCha, 2, 64, Mixed),
        new("v2-aes128-chunk16", Corpus.Aes128, 2, 16, Mixed),
        new("v2-aes256-partial-chunk32", Corpus.Aes256, 2, 32, Mixed, ["embed.weight", "scalar", "empty", "f4"]),
        new("v1-aes256-partial", Corpus.Aes256, 1, 0, Mixed, ["norm.bf16", "ids"]),
        new("v2-aes256-tiny300-chunk2", Corpus.Aes256, 2, 2, () => Tiny(300)),
        new("v2-aes256-default-chunk", Corpus.Aes256, 2, CryptoKeysField.DefaultChunkSize, Mixed),
    ];

    public static void Write(string dir)
    {
        Directory.CreateDirectory(dir);
        var seed = 0;
        foreach (var s in Specs())
        {
            var path = Path.Combine(dir, s.Name + ".safetensors");
            var tensors = s.Tensors();
            var options = s.Master is null
                ? new WriterOptions { Random = new SeededRandomSource(++seed), Metadata = new Dictionary<string, string> { ["format"] = "pt", ["note"] = "fuzz seed" } }
                : new WriterOptions
                {
                    MasterKey = s.Master, SigningKey = Corpus.Signer, FormatVersion = s.Version, ChunkSize = s.ChunkSize,
                    EncryptOnly = s.EncryptOnly, Random = new SeededRandomSource(++seed),
                    Metadata = new Dictionary<string, string> { ["format"] = "pt", ["note"] = "fuzz seed" },
                    Policy = new AccessPolicy("package model\nimport rego.v1\ndefault allow := false\nallow if input.device == \"cpu\"", AccessPolicy.DefaultText),
                };
            CryptoTensorsWriter.Write(path, tensors, options);
            var sidecar = new JsonObject { ["enc_kid"] = s.Master?.Kid };
            var ts = new JsonObject();
            foreach (var t in tensors)
            {
                var b = new byte[t.ByteLength];
                t.Read(0, b);
                ts[t.Name] = new JsonObject { ["nbytes"] = t.ByteLength, ["sha256"] = Convert.ToHexStringLower(System.Security.Cryptography.SHA256.HashData(b)) };
            }
            sidecar["tensors"] = ts;
            File.WriteAllText(Path.ChangeExtension(path, ".json"), sidecar.ToJsonString(new JsonSerializerOptions { WriteIndented = true }) + "\n");
        }
    }

    /// <summary>The big seeds, written at run time: 100,000 one-byte tensors, encrypted (v2, chunk 1) and plain.</summary>
    public static IEnumerable<Seed> BigSeeds()
    {
        var tmp = Path.Combine(Path.GetTempPath(), $"ctfuzz-big-{Environment.ProcessId}");
        Directory.CreateDirectory(tmp);
        try
        {
            var tensors = Enumerable.Range(0, 100_000).Select(i => TensorSource.FromMemory($"layer.{i}", Dtype.U8, [1], new[] { (byte)i })).ToList();
            var expected = tensors.ToDictionary(t => t.Name, t =>
            {
                var b = new byte[1];
                t.Read(0, b);
                return (1L, System.Security.Cryptography.SHA256.HashData(b));
            }, StringComparer.Ordinal);
            var enc = Path.Combine(tmp, "enc");
            CryptoTensorsWriter.Write(enc, tensors, new WriterOptions { MasterKey = Corpus.Aes256, SigningKey = Corpus.Signer, ChunkSize = 1, Random = new SeededRandomSource(7) });
            var plain = Path.Combine(tmp, "plain");
            CryptoTensorsWriter.Write(plain, tensors, new WriterOptions());
            return
            [
                new Seed { Name = "big/100k-v2-chunk1", Bytes = File.ReadAllBytes(enc), Master = Corpus.Aes256, Verify = Corpus.Signer.Public, Expected = expected, Big = true },
                new Seed { Name = "big/100k-plain", Bytes = File.ReadAllBytes(plain), Expected = expected, Big = true },
            ];
        }
        finally
        {
            Directory.Delete(tmp, recursive: true);
        }
    }
}
