using System.Collections;
using System.Diagnostics.CodeAnalysis;
using System.Runtime.InteropServices;

namespace CryptoTensors.Gpu.Format;

/// <summary>
/// <c>__metadata__</c> of a parsed header: a read-only string map whose large values (the per-tensor reserved fields
/// of many-tensor models) are unescaped from the stored header only when first read, so opening a file does not build
/// strings it parses straight from the header bytes (<see cref="SafetensorsHeader.TryGetStoredValue"/>). Every value
/// was already validated by the parse; reading one cannot fail. Safe for concurrent readers.
/// </summary>
internal sealed class HeaderMetadata : IReadOnlyDictionary<string, string>
{
    private readonly byte[] _header;
    private readonly List<RawMetadataEntry> _entries = [];
    private readonly List<string?> _values = [];
    private readonly Dictionary<string, int> _index = new(StringComparer.Ordinal);

    /// <param name="header">The stored header the raw ranges of the entries point into (never written again).</param>
    internal HeaderMetadata(byte[] header) => _header = header;

    /// <summary>
    /// Adds an entry (while parsing); false when its key is already there. <paramref name="value"/> null defers unescaping
    /// the raw value to its first read: only for ranges the plain scanner validated.
    /// </summary>
    internal bool TryAdd(RawMetadataEntry entry, string? value)
    {
        if (!_index.TryAdd(entry.Key, _entries.Count)) return false;
        _entries.Add(entry);
        _values.Add(value);
        return true;
    }

    /// <summary>The entries with the stored forms of their keys and values, in stored order.</summary>
    internal IReadOnlyList<RawMetadataEntry> Entries => _entries;

    /// <summary>The value of entry <paramref name="i"/>, unescaped now if it has not been yet.</summary>
    internal string ValueAt(int i)
    {
        var value = Volatile.Read(ref CollectionsMarshal.AsSpan(_values)[i]);
        if (value is not null) return value;
        var raw = _entries[i].RawValue;
        value = PlainHeaderParser.Unescape(_header.AsSpan(raw.Start, raw.Length), _entries[i].ValueEscaped)
            ?? throw new InvalidOperationException("a metadata value the scanner accepted did not unescape");
        return Interlocked.CompareExchange(ref CollectionsMarshal.AsSpan(_values)[i], value, null) ?? value;
    }

    /// <summary>The stored (still JSON-escaped) bytes of a value.</summary>
    internal bool TryGetStored(string key, out ReadOnlyMemory<byte> stored)
    {
        if (!_index.TryGetValue(key, out var i))
        {
            stored = default;
            return false;
        }
        var raw = _entries[i].RawValue;
        stored = _header.AsMemory(raw.Start, raw.Length);
        return true;
    }

    /// <inheritdoc/>
    public string this[string key] => _index.TryGetValue(key, out var i) ? ValueAt(i) : throw new KeyNotFoundException($"no metadata key '{key}'");

    /// <inheritdoc/>
    public IEnumerable<string> Keys => _entries.Select(e => e.Key);

    /// <inheritdoc/>
    public IEnumerable<string> Values => Enumerable.Range(0, _entries.Count).Select(ValueAt);

    /// <inheritdoc/>
    public int Count => _entries.Count;

    /// <inheritdoc/>
    public bool ContainsKey(string key) => _index.ContainsKey(key);

    /// <inheritdoc/>
    public bool TryGetValue(string key, [MaybeNullWhen(false)] out string value)
    {
        if (_index.TryGetValue(key, out var i))
        {
            value = ValueAt(i);
            return true;
        }
        value = null;
        return false;
    }

    /// <inheritdoc/>
    public IEnumerator<KeyValuePair<string, string>> GetEnumerator()
    {
        for (var i = 0; i < _entries.Count; i++) yield return new KeyValuePair<string, string>(_entries[i].Key, ValueAt(i));
    }

    IEnumerator IEnumerable.GetEnumerator() => GetEnumerator();
}
