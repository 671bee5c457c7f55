using System.Text.Json;

namespace CryptoTensors.Gpu.Reading;

/// <summary>
/// A model split into shards by a Hugging Face <c>model.safetensors.index.json</c> (<c>{"metadata":{…},
/// "weight_map":{"tensor":"shard file"}}</c>). Every shard is opened (and, when encrypted, authenticated) with the same
/// options; each tensor is read from the shard the index names, and the index must agree with the shards.
/// </summary>
public sealed class ShardedModel : IDisposable
{
    /// <summary>The index file name Hugging Face uses.</summary>
    public const string IndexFileName = "model.safetensors.index.json";

    private readonly Dictionary<string, CryptoTensorsReader> _byTensor;

    private ShardedModel(string directory, IReadOnlyDictionary<string, CryptoTensorsReader> shards, Dictionary<string, CryptoTensorsReader> byTensor, string indexJson)
    {
        Directory = directory;
        Shards = shards;
        _byTensor = byTensor;
        IndexJson = indexJson;
        Tensors = shards.Values.SelectMany(r => r.Tensors).ToArray();
    }

    /// <summary>The directory of the index.</summary>
    public string Directory { get; }

    /// <summary>The open shards by file name.</summary>
    public IReadOnlyDictionary<string, CryptoTensorsReader> Shards { get; }

    /// <summary>Every tensor of every shard.</summary>
    public IReadOnlyList<TensorDescriptor> Tensors { get; }

    /// <summary>The index file's text (copied as is when a sharded model is re-encoded).</summary>
    public string IndexJson { get; }

    /// <summary>True when <paramref name="path"/> is a directory holding an index, or an index file.</summary>
    public static bool IsSharded(string path)
        => System.IO.Directory.Exists(path) ? File.Exists(System.IO.Path.Combine(path, IndexFileName)) : path.EndsWith(".index.json", StringComparison.Ordinal);

    /// <summary>Opens every shard named by the index at <paramref name="path"/> (a directory or the index file).</summary>
    public static ShardedModel Open(string path, ReaderOptions? options = null)
    {
        var indexPath = System.IO.Directory.Exists(path) ? System.IO.Path.Combine(path, IndexFileName) : path;
        var dir = System.IO.Path.GetDirectoryName(System.IO.Path.GetFullPath(indexPath))!;
        var text = File.ReadAllText(indexPath);
        var map = ParseWeightMap(text);
        var shards = new Dictionary<string, CryptoTensorsReader>(StringComparer.Ordinal);
        try
        {
            foreach (var file in map.Values.Distinct(StringComparer.Ordinal))
            {
                if (file.Contains('/', StringComparison.Ordinal) || file.Contains('\\', StringComparison.Ordinal) || file is "." or "..")
                    throw Errors.Create(ErrorCode.InvalidJson, $"shard name '{file}' is not a plain file name", field: "weight_map");
                shards[file] = CryptoTensorsReader.Open(System.IO.Path.Combine(dir, file), options);
            }
            var byTensor = new Dictionary<string, CryptoTensorsReader>(StringComparer.Ordinal);
            foreach (var (tensor, file) in map)
            {
                var shard = shards[file];
                shard.GetTensor(tensor); // TensorNotFound when the index names a tensor its shard lacks
                byTensor[tensor] = shard;
            }
            foreach (var (file, shard) in shards)
            {
                foreach (var t in shard.Tensors)
                {
                    if (!map.TryGetValue(t.Name, out var named) || named != file)
                        throw Errors.Create(ErrorCode.InvalidJson, $"shard '{file}' holds a tensor the index does not map to it", tensor: t.Name, field: "weight_map");
                }
            }
            return new ShardedModel(dir, shards, byTensor, text);
        }
        catch
        {
            foreach (var s in shards.Values) s.Dispose();
            throw;
        }
    }

    internal static Dictionary<string, string> ParseWeightMap(string json)
    {
        try
        {
            using var doc = JsonDocument.Parse(json, new JsonDocumentOptions { MaxDepth = 16, AllowDuplicateProperties = false });
            if (doc.RootElement.ValueKind != JsonValueKind.Object || !doc.RootElement.TryGetProperty("weight_map", out var wm) || wm.ValueKind != JsonValueKind.Object)
                throw Errors.Create(ErrorCode.InvalidJson, "index has no 'weight_map' object", field: "weight_map");
            var map = new Dictionary<string, string>(StringComparer.Ordinal);
            foreach (var p in wm.EnumerateObject())
            {
                if (p.Value.ValueKind != JsonValueKind.String) throw Errors.Create(ErrorCode.InvalidJson, "weight_map values must be file names", tensor: p.Name, field: "weight_map");
                map[p.Name] = p.Value.GetString()!;
            }
            return map;
        }
        catch (JsonException e)
        {
            throw Errors.Create(ErrorCode.InvalidJson, $"index is not valid JSON: {e.Message}", field: "weight_map", inner: e);
        }
    }

    /// <summary>The shard holding a tensor.</summary>
    public CryptoTensorsReader ShardOf(string tensor)
        => _byTensor.TryGetValue(tensor, out var r) ? r : throw Errors.Create(ErrorCode.TensorNotFound, "tensor not found in any shard", tensor: tensor);

    /// <summary>Reads a whole tensor (see <see cref="CryptoTensorsReader.ReadTensor(string, Span{byte})"/>).</summary>
    public void ReadTensor(string name, Span<byte> destination) => ShardOf(name).ReadTensor(name, destination);

    /// <summary>Reads a whole tensor into a new array.</summary>
    public byte[] ReadTensor(string name) => ShardOf(name).ReadTensor(name);

    /// <inheritdoc />
    public void Dispose()
    {
        foreach (var s in Shards.Values) s.Dispose();
    }
}
