using CryptoTensors.Gpu.Crypto;
using CryptoTensors.Gpu.Format;
using CryptoTensors.Gpu.Keys;

namespace CryptoTensors.Gpu.Writing;

/// <summary>
/// The crypto part of one write: a data key and nonces per selected tensor (drawn as the reference draws them:
/// DEK, then the data nonce, then the key-wrap nonce), the wrapped keys, and the tags filled in as data is sealed.
/// </summary>
internal sealed class CryptoPlan : IDisposable
{
    private readonly Dictionary<string, Job> _jobs = new(StringComparer.Ordinal);
    private readonly CryptoKeysField _keys;
    private readonly AccessPolicy _policy;
    private readonly SigningKey _signer;
    private readonly AeadAlgorithm _algorithm;
    private readonly SecretBuffer _deks;

    internal sealed class Job
    {
        public required int DekOffset { get; init; }
        public required EncryptionEntry Entry { get; init; }
    }

    private CryptoPlan(CryptoKeysField keys, AccessPolicy policy, SigningKey signer, AeadAlgorithm algorithm, SecretBuffer deks)
    {
        _keys = keys;
        _policy = policy;
        _signer = signer;
        _algorithm = algorithm;
        _deks = deks;
    }

    public long? ChunkSize => _keys.ChunkSize;

    public static CryptoPlan Create(List<TensorSource> order, HashSet<string> selected, MasterKey master, SigningKey signer, WriterOptions options, long? chunkSize)
    {
        var version = chunkSize is null ? "1" : "2";
        var keys = new CryptoKeysField(version, chunkSize, chunkSize is not null,
            new KeyDescriptor("oct", master.Alg, master.Kid, master.Jku),
            new KeyDescriptor("okp", signer.Alg, signer.Kid, signer.Jku));
        var keyLen = master.Algorithm.KeySize();
        var plan = new CryptoPlan(keys, options.Policy ?? AccessPolicy.Default, signer, master.Algorithm, new SecretBuffer(Math.Max(1, selected.Count) * keyLen));
        try
        {
            using var kek = new AeadCipher(master.Algorithm, master.Bytes);
            var rng = options.Random;
            var dekOffset = 0;
            foreach (var t in order)
            {
                if (!selected.Contains(t.Name)) continue;
                var dek = plan._deks.Span.Slice(dekOffset, keyLen);
                rng.Fill(dek, RandomPurpose.DataKey, t.Name);
                byte[] iv = [], tag = [], baseIv = [], tags = [];
                if (chunkSize is { } cs)
                {
                    var chunks = ChunkNonce.Count(t.ByteLength, cs);
                    if (chunks > uint.MaxValue) throw Errors.Create(ErrorCode.IvCounterOverflow, $"{chunks} chunks exceed the 32-bit chunk counter; use a larger chunk size", tensor: t.Name);
                    baseIv = new byte[AeadAlgorithms.NonceSize];
                    // The reference fails when base_iv's counter cannot hold every chunk; we re-draw instead.
                    var tries = 0;
                    do
                    {
                        if (++tries > 64) throw Errors.Create(ErrorCode.IvCounterOverflow, "random source keeps producing base nonces whose counter overflows", tensor: t.Name);
                        rng.Fill(baseIv, RandomPurpose.BaseNonce, t.Name);
                    }
                    while (!ChunkNonce.Fits(baseIv, chunks));
                    tags = new byte[chunks * AeadAlgorithms.TagSize];
                }
                else if (t.ByteLength > 0)
                {
                    iv = new byte[AeadAlgorithms.NonceSize];
                    rng.Fill(iv, RandomPurpose.DataNonce, t.Name);
                    tag = new byte[AeadAlgorithms.TagSize];
                }
                var keyIv = new byte[AeadAlgorithms.NonceSize];
                rng.Fill(keyIv, RandomPurpose.KeyWrapNonce, t.Name);
                var wrapped = new byte[keyLen];
                var keyTag = new byte[AeadAlgorithms.TagSize];
                kek.Encrypt(keyIv, dek, wrapped, keyTag);
                plan._jobs[t.Name] = new Job
                {
                    DekOffset = dekOffset,
                    Entry = new EncryptionEntry { WrappedKey = wrapped, KeyIv = keyIv, KeyTag = keyTag, Iv = iv, Tag = tag, BaseIv = baseIv, Tags = tags },
                };
                dekOffset += keyLen;
            }
            return plan;
        }
        catch
        {
            plan.Dispose();
            throw;
        }
    }

    public bool TryGet(string name, out Job job) => _jobs.TryGetValue(name, out job!);

    /// <summary>
    /// Seals one work item in place: chunk <paramref name="chunk"/> of a v2 tensor (its tag goes to its slot of
    /// <c>tags</c>), or a whole v1 tensor when <paramref name="chunk"/> is -1. Thread-safe for distinct items.
    /// </summary>
    public void Seal(Job job, long chunk, Span<byte> data)
    {
        var e = job.Entry;
        if (chunk < 0 && data.IsEmpty) return; // §3.6: empty v1 tensor: iv "" and tag ""
        using var cipher = new AeadCipher(_algorithm, _deks.Span.Slice(job.DekOffset, _algorithm.KeySize()));
        if (chunk < 0)
        {
            cipher.Encrypt(e.Iv, data, data, e.Tag);
            return;
        }
        Span<byte> nonce = stackalloc byte[AeadAlgorithms.NonceSize];
        ChunkNonce.TryDerive(e.BaseIv, chunk, nonce);
        cipher.Encrypt(nonce, data, data, e.Tags.AsSpan((int)(chunk * AeadAlgorithms.TagSize), AeadAlgorithms.TagSize));
    }

    /// <summary>Adds the four reserved fields; with <paramref name="placeholder"/> the signature is a same-length stand-in.</summary>
    public void AddFields(Dictionary<string, string> metadata, IReadOnlyList<HeaderTensor> tensors, bool placeholder)
    {
        metadata[ReservedFields.CryptoKeys] = _keys.Serialize();
        metadata[ReservedFields.Encryption] = EncryptionEntry.Serialize(_jobs.ToDictionary(kv => kv.Key, kv => kv.Value.Entry, StringComparer.Ordinal), _keys.ChunkSize is not null);
        metadata[ReservedFields.Policy] = _policy.Serialize();
        metadata.Remove(ReservedFields.Signature);
        if (placeholder)
        {
            metadata[ReservedFields.Signature] = new string('A', 86) + "==";
            return;
        }
        metadata[ReservedFields.Signature] = Sign(metadata, tensors, _signer);
    }

    /// <summary>Signs the canonical header (metadata without <c>__signature__</c>, tensors in file order); returns padded base64.</summary>
    internal static string Sign(IReadOnlyDictionary<string, string> metadataWithoutSignature, IEnumerable<HeaderTensor> tensors, SigningKey signer)
    {
        var message = HeaderSerializer.Serialize(metadataWithoutSignature, tensors);
        Span<byte> signature = stackalloc byte[Ed25519.SignatureSize];
        signer.Sign(message, signature);
        return Base64Strict.Encode(signature);
    }

    public void Dispose() => _deks.Dispose();
}
