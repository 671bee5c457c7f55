using System.Runtime.InteropServices;
using CryptoTensors.Gpu.Crypto;
using CryptoTensors.Gpu.Format;

namespace CryptoTensors.Gpu.Reading;

/// <summary>
/// The parse of <c>__encryption__</c> (an entry per tensor: the larger part of a many-tensor header) started on another
/// core before the header is parsed, from where its stored value appears to begin in the raw header. Its result is used
/// only once the header parser has found that value to start at exactly that byte and to hold exactly the bytes parsed
/// (<see cref="TryGetResult"/>): then it is what parsing the stored value gives. Otherwise it is discarded and the value is
/// parsed as usual. Like every parse of <c>__encryption__</c>, its result is looked at only after the signature and the
/// policy have passed.
/// </summary>
internal sealed class SpeculativeEncryption
{
    private static ReadOnlySpan<byte> Member => "\"__encryption__\":\""u8;

    private readonly byte[] _header;
    private readonly Task<Guess?> _guess;

    /// <summary>Where the parsed text starts in the header, how many bytes the parse read, and what it read.</summary>
    private sealed record Guess(int Start, int Consumed, Dictionary<string, EncryptionEntry> Entries);

    private SpeculativeEncryption(byte[] header)
    {
        _header = header;
        _guess = Task.Run(Run);
    }

    /// <summary>
    /// Starts the parse where it can help: a header of at least <see cref="SpeculativeSignature.MinHeaderBytes"/> and
    /// more than one core. Null otherwise. <paramref name="header"/> must not change.
    /// </summary>
    public static SpeculativeEncryption? Start(byte[] header)
        => header.Length >= SpeculativeSignature.MinHeaderBytes && Environment.ProcessorCount > 1 ? new SpeculativeEncryption(header) : null;

    /// <summary>The fast parse of the stored form from the first <c>"__encryption__":"</c>. Never throws: any failure is no guess.</summary>
    private Guess? Run()
    {
        try
        {
            ReadOnlySpan<byte> h = _header;
            var at = h.IndexOf(Member);
            if (at < 0) return null;
            var start = at + Member.Length;
            var entries = EncryptionEntry.TryParsePlainPrefix(h[start..], inString: true, out var consumed);
            return entries is null ? null : new Guess(start, consumed, entries);
        }
        catch (Exception)
        {
            return null;
        }
    }

    /// <summary>
    /// The entries of <paramref name="stored"/> (the stored <c>__encryption__</c> value, as the header parser found it in
    /// this header), when the guess parsed exactly that value; null when it did not, and the caller parses it.
    /// </summary>
    public Dictionary<string, EncryptionEntry>? TryGetResult(ReadOnlyMemory<byte> stored)
    {
        if (!MemoryMarshal.TryGetArray(stored, out var segment) || !ReferenceEquals(segment.Array, _header)) return null;
        var g = _guess.GetAwaiter().GetResult();
        // The same start, and nothing but whitespace after the object: what EncryptionEntry.TryParsePlain(stored) returns.
        if (g is null || segment.Offset != g.Start || g.Consumed > segment.Count || !JsonScan.Ends(stored.Span, g.Consumed)) return null;
        return g.Entries;
    }
}
