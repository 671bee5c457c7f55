namespace CryptoTensors.Gpu.Format;

/// <summary>A tensor entry to serialize: name, dtype, shape and offsets.</summary>
internal readonly record struct HeaderTensor(string Name, Dtype Dtype, IReadOnlyList<ulong> Shape, ulong Begin, ulong End);

/// <summary>
/// Serializes a header object as the reference does (FORMAT.md §1.4 step 5, §4.1): <c>__metadata__</c> first
/// (keys in UTF-8 byte order), then the tensors in the order given, each <c>{"dtype","shape","data_offsets"}</c>.
/// </summary>
internal static class HeaderSerializer
{
    /// <summary>The unpadded compact JSON (also the signed message when metadata excludes <c>__signature__</c>).</summary>
    public static byte[] Serialize(IReadOnlyDictionary<string, string>? metadata, IEnumerable<HeaderTensor> tensors, int sizeHint = 4096)
    {
        var w = new CompactJsonWriter(Math.Max(sizeHint, 256));
        w.StartObject();
        if (metadata is not null)
        {
            w.Name("__metadata__");
            w.StartObject();
            foreach (var key in metadata.Keys.OrderBy(k => k, Utf8Order.Instance)) w.Property(key, metadata[key]);
            w.EndObject();
        }
        foreach (var t in tensors)
        {
            w.Name(t.Name);
            w.StartObject();
            w.Name("dtype");
            w.String(t.Dtype.Name());
            w.Name("shape");
            w.StartArray();
            foreach (var d in t.Shape) w.Number(d);
            w.EndArray();
            w.Name("data_offsets");
            w.StartArray();
            w.Number(t.Begin);
            w.Number(t.End);
            w.EndArray();
            w.EndObject();
        }
        w.EndObject();
        return w.ToArray();
    }

    /// <summary>Pads with spaces to a multiple of 8 and checks the 100 MB limit.</summary>
    public static byte[] Pad(byte[] json)
    {
        var padded = (json.Length + 7) / 8 * 8;
        if (padded > SafetensorsHeader.MaxHeaderLength)
            throw Errors.Create(ErrorCode.HeaderTooLarge, $"header too large: {padded} bytes (limit {SafetensorsHeader.MaxHeaderLength})");
        if (padded == json.Length) return json;
        var result = new byte[padded];
        json.CopyTo(result, 0);
        result.AsSpan(json.Length).Fill((byte)' ');
        return result;
    }
}
