using System.Runtime.CompilerServices;
using System.Buffers;
using System.Buffers.Binary;
using System.Runtime.InteropServices;
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

    private const int MaxJsonDepth = HeaderLimits.MaxJsonDepth;
    private readonly Dictionary<string, TensorInfo> _byName;
    private readonly byte[] _raw;
    private readonly HeaderMetadata? _metadata;

    private SafetensorsHeader(byte[] raw, long headerLength, HeaderMetadata? metadata, List<TensorInfo> ordered, Dictionary<string, TensorInfo> byName)
    {
        _raw = raw;
        HeaderLength = headerLength;
        _metadata = metadata;
        Tensors = ordered;
        _byName = byName;
        DataLength = ordered.Count == 0 ? 0 : (long)ordered[^1].End;
    }

    /// <summary>N: the header length in bytes, padding included.</summary>
    public long HeaderLength { get; }

    /// <summary>Absolute file offset of the data section (8 + N).</summary>
    public long DataStart => 8 + HeaderLength;

    /// <summary>Length of the data section the tensors cover.</summary>
    public long DataLength { get; }

    /// <summary>All of <c>__metadata__</c> (user and reserved keys), or null when absent or <c>null</c>.</summary>
    public IReadOnlyDictionary<string, string>? Metadata => _metadata;

    /// <summary>
    /// The stored bytes of a metadata value: its content between the quotes, still JSON-escaped, as a slice of the header
    /// (valid while this header lives). Lets <c>__encryption__</c> be parsed without building its string.
    /// </summary>
    internal bool TryGetStoredValue(string key, out ReadOnlyMemory<byte> stored)
    {
        stored = default;
        return _metadata is not null && _metadata.TryGetStored(key, out stored);
    }

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
            throw Errors.Create(ErrorCode.HeaderTooLarge, $"not a safetensors file: its first 8 bytes give a header length of {n} bytes, above the {MaxHeaderLength}-byte limit");
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
        return ParseOwned(header.ToArray(), fileLength);
    }

    /// <summary>
    /// <see cref="Parse(ReadOnlySpan{byte}, long?)"/> of a buffer the caller hands over: the header keeps it (the raw
    /// strings of the canonical re-serialization, <see cref="WriteCanonical"/>), so it must never be written again.
    /// </summary>
    /// <remarks>
    /// Headers as writers emit them take <see cref="PlainHeaderParser"/>, a scanner for the plain subset of JSON they use,
    /// which declines anything else; the general parser (<see cref="Utf8JsonReader"/>) then parses and reports errors.
    /// <paramref name="allowPlain"/> false forces the general parser (tests compare the two).
    /// </remarks>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    internal static SafetensorsHeader ParseOwned(byte[] header, long? fileLength, bool allowPlain = true)
    {
        if (header.Length > MaxHeaderLength)
            throw Errors.Create(ErrorCode.HeaderTooLarge, $"header too large: {header.Length} bytes (limit {MaxHeaderLength})");
        if (!Utf8.IsValid(header))
            throw Errors.Create(ErrorCode.InvalidUtf8, "invalid UTF-8 in header");

        HeaderMetadata? metadata = null;
        List<TensorInfo> tensors = [];
        Dictionary<string, TensorInfo> byName = null!;
        var plain = allowPlain && PlainHeaderParser.TryParse(header, out metadata, out tensors, out byName);
        if (!plain)
        {
            // The scanner declined, maybe late in a large header after building most of its tables: before the general
            // parser builds them all again, a token scan that allocates nothing refuses a header that is not JSON at all
            // (a flipped bit in a 30 MB header must not cost two full parses).
            if (allowPlain) EnsureWellFormedJson(header);
            ParseGeneral(header, out metadata, out tensors, out byName);
        }

        if (!IsInOffsetOrder(tensors)) tensors.Sort(OffsetOrder.Instance);
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

        var result = new SafetensorsHeader(header, header.Length, metadata, tensors, byName) { ParsedPlain = plain };
        if (fileLength is { } len && result.DataStart + result.DataLength != len)
            throw Errors.Create(ErrorCode.IncompleteBuffer,
                $"incomplete metadata, file not fully covered: tensors end at byte {result.DataStart + result.DataLength}, file has {len}");
        return result;
    }

    /// <summary>Refuses a header that is not well-formed JSON (the general parser's message and codes), allocating nothing.</summary>
    private static void EnsureWellFormedJson(byte[] header)
    {
        var reader = new Utf8JsonReader(header, new JsonReaderOptions { MaxDepth = MaxJsonDepth, CommentHandling = JsonCommentHandling.Disallow });
        try
        {
            while (reader.Read())
            {
            }
        }
        catch (JsonException e)
        {
            var code = reader.CurrentDepth >= MaxJsonDepth - 1 ? ErrorCode.NestingTooDeep : ErrorCode.InvalidJson;
            throw Errors.Create(code, $"invalid JSON in header at byte {reader.BytesConsumed}: {e.Message}", inner: e);
        }
    }

    /// <summary>The general parser: any JSON, every refusal with its error code.</summary>
    internal static void ParseGeneral(byte[] header, out HeaderMetadata? metadata, out List<TensorInfo> tensors, out Dictionary<string, TensorInfo> byName)
    {
        metadata = null;
        var metadataSeen = false;
        tensors = [];
        byName = new Dictionary<string, TensorInfo>(StringComparer.Ordinal);
        var reader = new Utf8JsonReader(header, new JsonReaderOptions { MaxDepth = MaxJsonDepth, CommentHandling = JsonCommentHandling.Disallow });
        try
        {
            Expect(ref reader, JsonTokenType.StartObject, "header must be a JSON object");
            while (true)
            {
                Read(ref reader);
                if (reader.TokenType == JsonTokenType.EndObject) break;
                if (reader.ValueTextEquals("__metadata__"u8))
                {
                    if (metadataSeen)
                        throw Errors.Create(ErrorCode.DuplicateKey, "invalid JSON in header: duplicate key '__metadata__'", field: "__metadata__");
                    metadataSeen = true;
                    metadata = ReadMetadata(ref reader, header);
                    continue;
                }
                if (tensors.Count == HeaderLimits.MaxTensorCount)
                    throw Errors.Create(ErrorCode.LimitExceeded, $"the header lists more than {HeaderLimits.MaxTensorCount} tensors");
                var rawName = RawOf(ref reader, header);
                var key = reader.GetString()!;
                ref var slot = ref CollectionsMarshal.GetValueRefOrAddDefault(byName, key, out var exists);
                if (exists)
                    throw Errors.Create(ErrorCode.DuplicateKey, $"invalid JSON in header: duplicate key '{key}'", field: key);
                var tensor = ReadTensor(ref reader, key, rawName);
                slot = tensor;
                tensors.Add(tensor);
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
    }

    /// <summary>Whether the plain-subset scanner parsed this header (for tests).</summary>
    internal bool ParsedPlain { get; private init; }

    /// <summary>True when <paramref name="tensors"/> already are in <see cref="OffsetOrder"/> (as every writer emits them), so sorting can be skipped.</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static bool IsInOffsetOrder(List<TensorInfo> tensors)
    {
        for (var i = 1; i < tensors.Count; i++)
        {
            if (OffsetOrder.Instance.Compare(tensors[i - 1], tensors[i]) > 0) return false;
        }
        return true;
    }

    /// <summary>Where the current string token's raw (still escaped) bytes lie in the header, and whether they are already canonical.</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static RawString RawOf(ref Utf8JsonReader reader, byte[] header)
    {
        var raw = reader.ValueSpan; // a slice of the header: the reader runs over one contiguous buffer
        if (raw.IsEmpty) return new RawString(0, 0, true);
        if (!header.AsSpan().Overlaps(raw, out var start)) throw new InvalidOperationException("a JSON token outside the header");
        return new RawString(start, raw.Length, !reader.ValueIsEscaped || CanonicalJson.IsCanonicalEscaped(raw));
    }

    /// <summary>
    /// Writes the canonical (serde_json compact, FORMAT.md §1.6 and §4.1) serialization of this header: <c>__metadata__</c>
    /// first, its keys in UTF-8 order without <paramref name="excludedMetadataKey"/>, then the tensors in offset order,
    /// each <c>{"dtype","shape","data_offsets"}</c>. Strings whose stored form is already canonical are copied from the
    /// header as they are; any other string is re-escaped from its parsed value.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    internal void WriteCanonical(PooledBufferWriter output, string? excludedMetadataKey)
    {
        output.Write("{"u8);
        var first = true;
        if (_metadata is not null)
        {
            output.Write("\"__metadata__\":{"u8);
            var entries = _metadata.Entries;
            var order = new int[entries.Count];
            for (var i = 0; i < order.Length; i++) order[i] = i;
            Array.Sort(order, (x, y) => Utf8Order.Instance.Compare(entries[x].Key, entries[y].Key));
            var firstEntry = true;
            foreach (var i in order)
            {
                var e = entries[i];
                if (e.Key == excludedMetadataKey) continue;
                if (!firstEntry) output.Write(","u8);
                firstEntry = false;
                output.Write("\""u8);
                WriteStringContent(output, e.RawKey, e.Key);
                output.Write("\":\""u8);
                // A value is unescaped (from the stored header) only where its stored form is not canonical.
                if (e.RawValue.Canonical) output.Write(_raw.AsSpan(e.RawValue.Start, e.RawValue.Length));
                else CanonicalJson.WriteEscapedContent(output, _metadata.ValueAt(i));
                output.Write("\""u8);
            }
            output.Write("}"u8);
            first = false;
        }
        foreach (var t in Tensors)
        {
            output.Write(first ? "\""u8 : ",\""u8);
            first = false;
            WriteStringContent(output, t.RawName, t.Name);
            output.Write("\":{\"dtype\":\""u8);
            output.Write(t.Dtype.Utf8Name());
            output.Write("\",\"shape\":["u8);
            for (var i = 0; i < t.ShapeU64.Length; i++)
            {
                if (i > 0) output.Write(","u8);
                output.WriteNumber(t.ShapeU64[i]);
            }
            output.Write("],\"data_offsets\":["u8);
            output.WriteNumber(t.Begin);
            output.Write(","u8);
            output.WriteNumber(t.End);
            output.Write("]}"u8);
        }
        output.Write("}"u8);
    }

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private void WriteStringContent(PooledBufferWriter output, RawString raw, string value)
    {
        if (raw.Canonical) output.Write(_raw.AsSpan(raw.Start, raw.Length));
        else CanonicalJson.WriteEscapedContent(output, value);
    }

    internal static string FormatShape(IReadOnlyList<ulong> shape) => "[" + string.Join(',', shape) + "]";

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static HeaderMetadata? ReadMetadata(ref Utf8JsonReader reader, byte[] header)
    {
        Read(ref reader);
        if (reader.TokenType == JsonTokenType.Null) return null;
        if (reader.TokenType != JsonTokenType.StartObject)
            throw Errors.Create(ErrorCode.InvalidJson, "invalid JSON in header: __metadata__ must be an object of strings", field: "__metadata__");
        var map = new HeaderMetadata(header);
        while (true)
        {
            Read(ref reader);
            if (reader.TokenType == JsonTokenType.EndObject) return map;
            if (map.Count == HeaderLimits.MaxMetadataEntries)
                throw Errors.Create(ErrorCode.LimitExceeded, $"__metadata__ holds more than {HeaderLimits.MaxMetadataEntries} entries", field: "__metadata__");
            var rawKey = RawOf(ref reader, header);
            var key = reader.GetString()!;
            Read(ref reader);
            if (reader.TokenType != JsonTokenType.String)
                throw Errors.Create(ErrorCode.InvalidJson, $"invalid JSON in header: metadata value of '{key}' is not a string", field: "__metadata__");
            var rawValue = RawOf(ref reader, header);
            var entry = new RawMetadataEntry(key, rawKey, rawValue, reader.ValueIsEscaped);
            if (!map.TryAdd(entry, reader.GetString()!))
                throw Errors.Create(ErrorCode.DuplicateKey, $"invalid JSON in header: duplicate metadata key '{key}'", field: "__metadata__");
        }
    }

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static TensorInfo ReadTensor(ref Utf8JsonReader reader, string name, RawString rawName)
    {
        Read(ref reader);
        if (reader.TokenType != JsonTokenType.StartObject)
            throw Errors.Create(ErrorCode.InvalidJson, "invalid JSON in header: tensor entry must be an object", tensor: name);
        Dtype? dtype = null;
        ulong[]? shape = null;
        ulong begin = 0, end = 0;
        var haveOffsets = false;
        Span<ulong> values = stackalloc ulong[8];
        while (true)
        {
            Read(ref reader);
            if (reader.TokenType == JsonTokenType.EndObject) break;
            if (reader.ValueTextEquals("dtype"u8))
            {
                const string field = "dtype";
                if (dtype is not null) throw Duplicate(name, field);
                Read(ref reader);
                if (reader.TokenType != JsonTokenType.String)
                    throw Errors.Create(ErrorCode.InvalidJson, "invalid JSON in header: dtype must be a string", tensor: name, field: field);
                if (!TryParseDtype(ref reader, out var d))
                    throw Errors.Create(ErrorCode.UnknownDtype, $"invalid JSON in header: unknown dtype '{reader.GetString()}'", tensor: name, field: field);
                dtype = d;
            }
            else if (reader.ValueTextEquals("shape"u8))
            {
                const string field = "shape";
                if (shape is not null) throw Duplicate(name, field);
                // Dimensions past the bound are only counted, never stored: a rank is refused before it sizes anything.
                var count = ReadU64Array(ref reader, name, field, values, out var large, limit: HeaderLimits.MaxRank);
                if (count > HeaderLimits.MaxRank)
                    throw Errors.Create(ErrorCode.LimitExceeded, $"shape has {count} dimensions, more than the {HeaderLimits.MaxRank} allowed", tensor: name, field: field);
                shape = large ?? values[..count].ToArray();
            }
            else if (reader.ValueTextEquals("data_offsets"u8))
            {
                const string field = "data_offsets";
                if (haveOffsets) throw Duplicate(name, field);
                var pair = values[..2];
                var count = ReadU64Array(ref reader, name, field, pair, out _, limit: 2);
                if (count != 2)
                    throw Errors.Create(ErrorCode.InvalidJson, $"invalid JSON in header: data_offsets must hold exactly 2 integers, not {count}", tensor: name, field: field);
                (begin, end) = (pair[0], pair[1]);
                haveOffsets = true;
            }
            else
            {
                // Unknown fields are ignored by the reference (serde), and are not signed.
                Read(ref reader);
                if (!reader.TrySkip()) throw new JsonException("incomplete value");
            }
        }
        if (dtype is null || shape is null || !haveOffsets)
        {
            var missing = dtype is null ? "dtype" : shape is null ? "shape" : "data_offsets";
            throw Errors.Create(ErrorCode.InvalidJson, $"invalid JSON in header: missing field `{missing}`", tensor: name, field: missing);
        }
        return new TensorInfo(name, dtype.Value, shape, begin, end) { RawName = rawName };
    }

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static bool TryParseDtype(ref Utf8JsonReader reader, out Dtype dtype)
    {
        if (!reader.ValueIsEscaped) return Dtypes.TryParseUtf8(reader.ValueSpan, out dtype);
        return Dtypes.TryParse(reader.GetString(), out dtype);
    }

    private static CryptoTensorsException Duplicate(string tensor, string field)
        => Errors.Create(ErrorCode.DuplicateKey, $"invalid JSON in header: duplicate field `{field}`", tensor: tensor, field: field);

    /// <summary>
    /// Reads an array of unsigned integers into <paramref name="buffer"/>; returns how many it held. Past the buffer's
    /// length the values go to <paramref name="large"/> (all of them), unless <paramref name="limit"/> is reached, when
    /// the rest are only counted.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static int ReadU64Array(ref Utf8JsonReader reader, string tensor, string field, scoped Span<ulong> buffer, out ulong[]? large, int limit = int.MaxValue)
    {
        large = null;
        List<ulong>? spill = null;
        Read(ref reader);
        if (reader.TokenType != JsonTokenType.StartArray)
            throw Errors.Create(ErrorCode.InvalidJson, $"invalid JSON in header: {field} must be an array of unsigned integers", tensor: tensor, field: field);
        var count = 0;
        while (true)
        {
            Read(ref reader);
            if (reader.TokenType == JsonTokenType.EndArray)
            {
                large = spill?.ToArray();
                return count;
            }
            if (reader.TokenType != JsonTokenType.Number || !IsPlainInteger(reader.ValueSpan) || !reader.TryGetUInt64(out var v))
                throw Errors.Create(ErrorCode.InvalidJson, $"invalid JSON in header: {field} must hold unsigned 64-bit integers", tensor: tensor, field: field);
            if (count < buffer.Length) buffer[count] = v;
            else if (count < limit)
            {
                spill ??= new List<ulong>(buffer.ToArray());
                spill.Add(v);
            }
            count++;
        }
    }

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static bool IsPlainInteger(ReadOnlySpan<byte> raw)
    {
        foreach (var b in raw) if (b is < (byte)'0' or > (byte)'9') return false;
        return true;
    }

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
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

        [MethodImpl(MethodImplOptions.AggressiveOptimization)]
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

/// <summary>A string of a parsed header as stored: where its escaped bytes lie, and whether they are the canonical escaping (§1.6).</summary>
internal readonly record struct RawString(int Start, int Length, bool Canonical);

/// <summary>A <c>__metadata__</c> entry: its key, the stored forms of key and value, and whether the stored value holds escapes.</summary>
internal readonly record struct RawMetadataEntry(string Key, RawString RawKey, RawString RawValue, bool ValueEscaped);

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
