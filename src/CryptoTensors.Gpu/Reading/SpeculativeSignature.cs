using System.Buffers;
using CryptoTensors.Gpu.Crypto;
using CryptoTensors.Gpu.Format;
using CryptoTensors.Gpu.Keys;

namespace CryptoTensors.Gpu.Reading;

/// <summary>
/// The signature check of <see cref="CryptoTensorsReader.Open"/> started on another core before the header is parsed,
/// on a guess of the signed message: the raw header without its <c>"__signature__"</c> member and without its padding.
/// That is the signed message exactly when the stored header is the canonical serialization (FORMAT.md §4.1), as every
/// writer emits it. The guess is used only once the canonical message has been rebuilt from the parsed header and found
/// equal to it byte for byte, for the same signature and key (<see cref="TryGetResult(SafetensorsHeader, ReadOnlySpan{byte}, VerificationKey)"/>); otherwise it is discarded and
/// the canonical message is verified as usual. So what is verified never depends on the raw bytes, only when.
/// </summary>
internal sealed class SpeculativeSignature
{
    /// <summary>Below this header size the verification is short and the thread hop is not worth it.</summary>
    internal const int MinHeaderBytes = 16 << 10;

    private static ReadOnlySpan<byte> Member => ",\"__signature__\":\""u8;

    /// <summary>Characters of the padded base64 of a 64-byte signature.</summary>
    private const int SignatureChars = 88;

    private readonly byte[] _header;
    private readonly VerificationKey _key;
    private readonly Task<Guess?> _guess;

    /// <summary>Where the guessed message was cut out of the header, the signature found there and whether it verified.</summary>
    private sealed record Guess(int Cut, int CutEnd, int End, byte[] Signature, bool Verified);

    private SpeculativeSignature(byte[] header, VerificationKey key)
    {
        _header = header;
        _key = key;
        _guess = Task.Run(Run);
    }

    /// <summary>
    /// Starts the check where it can help: a key known before the header is parsed, a header of at least
    /// <see cref="MinHeaderBytes"/>, and more than one core. Null otherwise. <paramref name="header"/> must not change.
    /// </summary>
    public static SpeculativeSignature? Start(byte[] header, VerificationKey? key)
        => key is not null && header.Length >= MinHeaderBytes && Environment.ProcessorCount > 1 ? new SpeculativeSignature(header, key) : null;

    /// <summary>Finds the signature member and verifies the message without it. Never throws: any failure is no guess.</summary>
    private Guess? Run()
    {
        try
        {
            ReadOnlySpan<byte> h = _header;
            var cut = h.IndexOf(Member);
            if (cut < 0) return null;
            var valueStart = cut + Member.Length;
            if (h.Length - valueStart <= SignatureChars || h[valueStart + SignatureChars] != (byte)'"') return null;
            if (!Base64Strict.TryDecodeUtf8(h.Slice(valueStart, SignatureChars), out var signature) || signature.Length != Ed25519.SignatureSize) return null;
            var cutEnd = valueStart + SignatureChars + 1;
            var end = h.Length;
            while (end > cutEnd && h[end - 1] == (byte)' ') end--;
            var length = cut + (end - cutEnd);
            var message = ArrayPool<byte>.Shared.Rent(Math.Max(1, length));
            try
            {
                h[..cut].CopyTo(message);
                h[cutEnd..end].CopyTo(message.AsSpan(cut));
                return new Guess(cut, cutEnd, end, signature, Ed25519.Verify(_key.PublicKey, message.AsSpan(0, length), signature));
            }
            finally
            {
                ArrayPool<byte>.Shared.Return(message);
            }
        }
        catch (Exception)
        {
            return null; // e.g. a verifier that failed to load: the usual check runs and reports it
        }
    }

    /// <summary>
    /// The verification result for the canonical message of <paramref name="header"/>, <paramref name="signature"/> and
    /// <paramref name="key"/>, when the guess was exactly that message, signature and key; null when it was not (or no
    /// guess was made), and the caller verifies the canonical message itself.
    /// </summary>
    public bool? TryGetResult(SafetensorsHeader header, ReadOnlySpan<byte> signature, VerificationKey key)
    {
        var g = _guess.GetAwaiter().GetResult();
        if (g is null || !ReferenceEquals(key, _key) || !signature.SequenceEqual(g.Signature)) return null;
        // The canonical message is compared, as it is serialized, with exactly the bytes the guess verified, and never
        // kept: a many-tensor header costs no second copy of itself (issue 18, the fuzzer's memory bound).
        using var compare = PooledBufferWriter.Comparing(_header, 0, g.Cut, g.CutEnd, g.End - g.CutEnd);
        header.WriteCanonical(compare, ReservedFields.Signature);
        return compare.MatchesExpected ? g.Verified : null;
    }

    /// <summary>
    /// <see cref="TryGetResult(SafetensorsHeader, ReadOnlySpan{byte}, VerificationKey)"/> given the canonical message
    /// itself (<paramref name="message"/>), with <paramref name="signature"/> and <paramref name="key"/>.
    /// </summary>
    public bool? TryGetResult(ReadOnlySpan<byte> message, ReadOnlySpan<byte> signature, VerificationKey key)
    {
        var g = _guess.GetAwaiter().GetResult();
        if (g is null || !ReferenceEquals(key, _key) || !signature.SequenceEqual(g.Signature)) return null;
        ReadOnlySpan<byte> h = _header;
        var tail = g.End - g.CutEnd;
        if (message.Length != g.Cut + tail
            || !message[..g.Cut].SequenceEqual(h[..g.Cut])
            || !message[g.Cut..].SequenceEqual(h[g.CutEnd..g.End]))
            return null;
        return g.Verified;
    }
}
