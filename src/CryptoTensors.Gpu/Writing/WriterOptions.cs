using CryptoTensors.Gpu.Crypto;
using CryptoTensors.Gpu.Keys;

namespace CryptoTensors.Gpu.Writing;

/// <summary>How a file is written. Without keys the file is plain safetensors.</summary>
public sealed class WriterOptions
{
    /// <summary>The master key (wraps data keys; its algorithm encrypts the data). Not disposed by the writer.</summary>
    public MasterKey? MasterKey { get; init; }

    /// <summary>The Ed25519 key that signs the header. Not disposed by the writer.</summary>
    public SigningKey? SigningKey { get; init; }

    /// <summary>1 (monolithic) or 2 (chunked, the default).</summary>
    public int FormatVersion { get; init; } = 2;

    /// <summary>
    /// The largest v2 chunk size the writer accepts: 256 MiB. Each chunk is encrypted in one call through a staging
    /// buffer of its size, so the bound keeps a writer's memory bounded; larger chunks give no speed (the default
    /// 2 MiB already amortises the per-chunk tag). Readers accept any chunk size the format allows.
    /// </summary>
    public const long MaxChunkSize = 256L << 20;

    /// <summary>v2 chunk size in bytes (default 2 MiB, 1 to <see cref="MaxChunkSize"/>); ignored for v1.</summary>
    public long ChunkSize { get; init; } = CryptoKeysField.DefaultChunkSize;

    /// <summary>Encrypt only these tensors (names that are not tensors are ignored); null = all. If none is selected the file is written plain and unsigned, as the reference does.</summary>
    public IReadOnlyCollection<string>? EncryptOnly { get; init; }

    /// <summary>The access policy (default: the reference's allow-all text for both fields).</summary>
    public AccessPolicy? Policy { get; init; }

    /// <summary>User metadata (string to string). Reserved crypto keys in it are replaced. Null writes no <c>__metadata__</c> in a plain file.</summary>
    public IReadOnlyDictionary<string, string>? Metadata { get; init; }

    /// <summary>Randomness (default: the OS CSPRNG).</summary>
    public IRandomSource Random { get; init; } = SystemRandomSource.Instance;
}
