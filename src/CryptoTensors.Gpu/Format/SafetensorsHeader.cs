using System.Buffers.Binary;
using System.Text;
using System.Text.Json;
using System.Text.Unicode;

namespace CryptoTensors.Gpu.Format;

/// <summary>
/// A parsed and validated safetensors header (FORMAT.md §1.5). Parsing is defensive: the header length is
/// bounded before anything is allocated, the JSON depth is bounded, every size is overflow-checked, duplicate
/// keys are rejected, and offsets must tile the data section exactly.
/// </summary>
public sealed class SafetensorsHeader
{
    /// <summary>The largest header the reference accepts (bytes, padding included).</summary>
    public const long MaxHeaderLength = 100_000_000;

    private const int MaxJsonDepth = 64;
    private readonly Dictionary<string, TensorInfo> _byName;

    private SafetensorsHeader(long headerLength, Dictionary<string, string>? metadata, List<TensorInfo> ordered)
    {
        HeaderLength = headerLength;
        Metadata = metadata;
        Tensors = ordered;
        _byName = new Dictionary<string, TensorInfo>(ordered.Count, StringComparer.Ordinal);
        foreach (var t in ordered) _byName.Add(t.Name, t);
        DataLength = ordered.Count == 0 ? 0 : (long)ordered[^1].End;
    }

    /// <summary>N: the header length in bytes, padding included.</summary>
    public long HeaderLength { get; }

    /// <summary>Absolute file offset of the data section (8 + N).</summary>
    public long DataStart => 8 + HeaderLength;

    /// <summary>Length of the data section the tensors cover.</summary>
    public long DataLength { get; }

    /// <summary>All of <c>__metadata__</c> (user and reserved keys), or null when absent or <c>null</c>.</summary>
    public IReadOnlyDictionary<string, string>? Metadata { get; }

    /// <summary>Tensors in offset order (ties between empty tensors broken by dtype descending, then name).</summary>
    public IReadOnlyList<TensorInfo> Tensors { get; }

    /// <summary>Looks a tensor up by name.</summary>
    public bool TryGetTensor(string name, out TensorInfo tensor) => _byName.TryGetValue(name, out tensor!);

    /// <summary>
    /// Reads the 8-byte length prefix and checks it against the file length (steps 1-3 of §1.5).
    /// </summary>
    public static long ReadHeaderLength(ReadOnlySpan<byte> prefix, long fileLength)
    {
        if (prefix.Length < 8 || fileLength < 8)
            throw Errors.Create(ErrorCode.HeaderTooSmall, $"header too small: the file has {fileLength} bytes, fewer than the 8-byte length prefix");
        var n = BinaryPrimitives.ReadUInt64LittleEndian(prefix);
        if (n > MaxHeaderLength)
            throw Errors.Create(ErrorCode.HeaderTooLarge, $"header too large: {n} bytes (limit {MaxHeaderLength})");
        if (8 + (long)n > fileLength)
            throw Errors.Create(ErrorCode.InvalidHeaderLength, $"invalid header length: {n} bytes of header but only {fileLength - 8} bytes after the prefix");
        return (long)n;
    }

    /// <summary>
    /// Parses and validates header JSON. When <paramref name="fileLength"/> is given, also checks that the data
    /// section is exactly covered (step 8 of §1.5); the header-only variant (rotation) passes null.
    /// </summary>
    public static SafetensorsHeader Parse(ReadOnlySpan<byte> header, long? fileLength)
    {
        if (header.Length > MaxHeaderLength)
            throw Errors.Create(ErrorCode.HeaderTooLarge, $"header too large: {header.Length} bytes (limit {MaxHeaderLength})");
        if (!Utf8.IsValid(header))
            throw Errors.Create(ErrorCode.InvalidUtf8, "invalid UTF-8 in header");

        Dictionary<string, string>? metadata = null;
        var tensors = new List<TensorInfo>();
        var seen = new HashSet<string>(StringComparer.Ordinal);
        var reader = new Utf8JsonReader(header, new JsonReaderOptions { MaxDepth = MaxJsonDepth, CommentHandling = JsonCommentHandling.Disallow });
        try
        {
            Expect(ref reader, JsonTokenType.StartObject, "header must be a JSON object");
            while (true)
            {
                Read(ref reader);
                if (reader.TokenType == JsonTokenType.EndObject) break;
                var key = reader.GetString()!;
                if (!seen.Add(key))
                    throw Errors.Create(ErrorCode.DuplicateKey, $"invalid JSON in header: duplicate key '{key}'", field: key);
                if (key == "__metadata__") metadata = ReadMetadata(ref reader);
                else tensors.Add(ReadTensor(ref reader, key));
            }
            if (reader.Read())
                throw Errors.Create(ErrorCode.InvalidJson, "invalid JSON in header: trailing characters after the object");
        }
        catch (JsonException e)
        {
            // Only exceeding MaxDepth is a nesting error; a truncated document also mentions "depth" in its message.
            var code = reader.CurrentDepth >= MaxJsonDepth - 1 ? ErrorCode.NestingTooDeep : ErrorCode.InvalidJson;
            throw Errors.Create(code, $"invalid JSON in header at byte {reader.BytesConsumed}: {e.Message}", inner: e);
        }
        catch (InvalidOperationException e)
        {
            throw Errors.Create(ErrorCode.InvalidJson, $"invalid JSON in header at byte {reader.BytesConsumed}: {e.Message}", inner: e);
        }

        tensors.Sort(OffsetOrder.Instance);
        ulong previousEnd = 0;
        foreach (var t in tensors)
        {
            if (t.Begin != previousEnd || t.End < t.Begin)
                throw Errors.Create(ErrorCode.InvalidOffset, $"invalid offset [{t.Begin},{t.End}): expected it to start at {previousEnd}", tensor: t.Name, field: "data_offsets");
            var err = t.Dtype.TryByteSize(t.ShapeU64, out var size);
            if (err == ErrorCode.ValidationOverflow)
                throw Errors.Create(ErrorCode.ValidationOverflow, "overflow computing the byte size of the shape", tensor: t.Name, field: "shape");
            if (err == ErrorCode.MisalignedSlice)
                throw Errors.Create(ErrorCode.MisalignedSlice, $"{t.Dtype.Name()} elements do not fill whole bytes", tensor: t.Name, field: "shape");
            if (t.End - t.Begin != size)
                throw Errors.Create(ErrorCode.TensorInvalidInfo, $"offsets span {t.End - t.Begin} bytes but {t.Dtype.Name()}{FormatShape(t.ShapeU64)} needs {size}", tensor: t.Name, field: "data_offsets");
            previousEnd = t.End;
        }
        if (previousEnd > long.MaxValue - (ulong)header.Length - 8)
            throw Errors.Create(ErrorCode.ValidationOverflow, "data section larger than a file can be");

        var result = new SafetensorsHeader(header.Length, metadata, tensors);
        if (fileLength is { } len && result.DataStart + result.DataLength != len)
            throw Errors.Create(ErrorCode.IncompleteBuffer,
                $"incomplete metadata, file not fully covered: tensors end at byte {result.DataStart + result.DataLength}, file has {len}");
        return result;
    }

    internal static string FormatShape(IReadOnlyList<ulong> shape) => "[" + string.Join(',', shape) + "]";

    private static Dictionary<string, string>? ReadMetadata(ref Utf8JsonReader reader)
    {
        Read(ref reader);
        if (reader.TokenType == JsonTokenType.Null) return null;
        if (reader.TokenType != JsonTokenType.StartObject)
            throw Errors.Create(ErrorCode.InvalidJson, "invalid JSON in header: __metadata__ must be an object of strings", field: "__metadata__");
        var map = new Dictionary<string, string>(StringComparer.Ordinal);
        while (true)
        {
            Read(ref reader);
            if (reader.TokenType == JsonTokenType.EndObject) return map;
            var key = reader.GetString()!;
            Read(ref reader);
            if (reader.TokenType != JsonTokenType.String)
                throw Errors.Create(ErrorCode.InvalidJson, $"invalid JSON in header: metadata value of '{key}' is not a string", field: "__metadata__");
            if (!map.TryAdd(key, reader.GetString()!))
                throw Errors.Create(ErrorCode.DuplicateKey, $"invalid JSON in header: duplicate metadata key '{key}'", field: "__metadata__");
        }
    }

    private static TensorInfo ReadTensor(ref Utf8JsonReader reader, string name)
    {
        Read(ref reader);
        if (reader.TokenType != JsonTokenType.StartObject)
            throw Errors.Create(ErrorCode.InvalidJson, "invalid JSON in header: tensor entry must be an object", tensor: name);
        Dtype? dtype = null;
        ulong[]? shape = null;
        ulong[]? offsets = null;
        while (true)
        {
            Read(ref reader);
            if (reader.TokenType == JsonTokenType.EndObject) break;
            var field = reader.GetString()!;
            switch (field)
            {
                case "dtype":
                    if (dtype is not null) throw Duplicate(name, field);
                    Read(ref reader);
                    if (reader.TokenType != JsonTokenType.String)
                        throw Errors.Create(ErrorCode.InvalidJson, "invalid JSON in header: dtype must be a string", tensor: name, field: field);
                    var dn = reader.GetString()!;
                    if (!Dtypes.TryParse(dn, out var d))
                        throw Errors.Create(ErrorCode.UnknownDtype, $"invalid JSON in header: unknown dtype '{dn}'", tensor: name, field: field);
                    dtype = d;
                    break;
                case "shape":
                    if (shape is not null) throw Duplicate(name, field);
                    shape = ReadU64Array(ref reader, name, field);
                    break;
                case "data_offsets":
                    if (offsets is not null) throw Duplicate(name, field);
                    offsets = ReadU64Array(ref reader, name, field);
                    if (offsets.Length != 2)
                        throw Errors.Create(ErrorCode.InvalidJson, $"invalid JSON in header: data_offsets must hold exactly 2 integers, not {offsets.Length}", tensor: name, field: field);
                    break;
                default:
                    // Unknown fields are ignored by the reference (serde), and are not signed.
                    Read(ref reader);
                    if (!reader.TrySkip()) throw new JsonException("incomplete value");
                    break;
            }
        }
        if (dtype is null || shape is null || offsets is null)
        {
            var missing = dtype is null ? "dtype" : shape is null ? "shape" : "data_offsets";
            throw Errors.Create(ErrorCode.InvalidJson, $"invalid JSON in header: missing field `{missing}`", tensor: name, field: missing);
        }
        return new TensorInfo(name, dtype.Value, shape, offsets[0], offsets[1]);
    }

    private static CryptoTensorsException Duplicate(string tensor, string field)
        => Errors.Create(ErrorCode.DuplicateKey, $"invalid JSON in header: duplicate field `{field}`", tensor: tensor, field: field);

    private static ulong[] ReadU64Array(ref Utf8JsonReader reader, string tensor, string field)
    {
        Read(ref reader);
        if (reader.TokenType != JsonTokenType.StartArray)
            throw Errors.Create(ErrorCode.InvalidJson, $"invalid JSON in header: {field} must be an array of unsigned integers", tensor: tensor, field: field);
        var values = new List<ulong>(4);
        while (true)
        {
            Read(ref reader);
            if (reader.TokenType == JsonTokenType.EndArray) return values.ToArray();
            if (reader.TokenType != JsonTokenType.Number || !IsPlainInteger(reader.ValueSpan) || !reader.TryGetUInt64(out var v))
                throw Errors.Create(ErrorCode.InvalidJson, $"invalid JSON in header: {field} must hold unsigned 64-bit integers", tensor: tensor, field: field);
            values.Add(v);
        }
    }

    private static bool IsPlainInteger(ReadOnlySpan<byte> raw)
    {
        foreach (var b in raw) if (b is < (byte)'0' or > (byte)'9') return false;
        return true;
    }

    private static void Read(ref Utf8JsonReader reader)
    {
        if (!reader.Read()) throw new JsonException("unexpected end of header");
    }

    private static void Expect(ref Utf8JsonReader reader, JsonTokenType type, string message)
    {
        if (!reader.Read() || reader.TokenType != type) throw Errors.Create(ErrorCode.InvalidJson, "invalid JSON in header: " + message);
    }

    /// <summary>(begin, end) ascending; ties (only empty tensors) by dtype descending then UTF-8 name: the writer's order.</summary>
    private sealed class OffsetOrder : IComparer<TensorInfo>
    {
        public static readonly OffsetOrder Instance = new();

        public int Compare(TensorInfo? x, TensorInfo? y)
        {
            var c = x!.Begin.CompareTo(y!.Begin);
            if (c != 0) return c;
            c = x.End.CompareTo(y.End);
            if (c != 0) return c;
            return WriterOrder.Compare(x.Dtype, x.Name, y.Dtype, y.Name);
        }
    }
}

/// <summary>The reference writer's tensor order: dtype descending (enum order), then name by UTF-8 bytes.</summary>
public static class WriterOrder
{
    /// <summary>Compares two tensors in writer order.</summary>
    public static int Compare(Dtype dx, string nx, Dtype dy, string ny)
    {
        var c = ((int)dy).CompareTo((int)dx);
        return c != 0 ? c : Utf8Order.Instance.Compare(nx, ny);
    }
}
