using System.Buffers.Binary;
using CryptoTensors.Gpu.Crypto;
using CryptoTensors.Gpu.Format;
using CryptoTensors.Gpu.Keys;
using CryptoTensors.Gpu.Reading;

namespace CryptoTensors.Gpu.Writing;

/// <summary>
/// Key rotation (FORMAT.md §5.6): re-wraps every data key under a new master key and re-signs with a new signing
/// key. Only the header changes; the data section is copied unchanged. The input is fully opened first
/// (signature, policy, every unwrap). The new master key must use the same algorithm string as the old one —
/// the data cannot change algorithm without re-encryption. Atomic: temporary file beside the output, then rename.
/// <para>
/// The old policy is evaluated as at any open (the reference does the same), against the input document that the
/// old keys' <see cref="ReaderOptions"/> describe. The key owner may pass <c>evaluateOldPolicy: false</c>: rotation needs
/// the old master key for every unwrap, and a policy cannot bind the holder of that key (it could unwrap the data
/// keys by hand), so skipping it gives nothing away; it lets the owner replace an expired or over-strict policy.
/// </para>
/// </summary>
public static class Rewrapper
{
    /// <summary>Rewraps <paramref name="input"/> into <paramref name="output"/> (which may be the same path).</summary>
    /// <param name="input">The encrypted file.</param>
    /// <param name="output">The rotated file (may be <paramref name="input"/>).</param>
    /// <param name="oldKeys">The old master and verification keys, and the input the old policy is evaluated against.</param>
    /// <param name="newMasterKey">The new master key (same algorithm string as the old one).</param>
    /// <param name="newSigningKey">The new signing key.</param>
    /// <param name="newPolicy">A policy replacing the old one, or null to keep it.</param>
    /// <param name="evaluateOldPolicy">False to rotate without evaluating the old policy (see the class remarks).</param>
    /// <param name="random">Randomness for the new key-wrap nonces (default: the system's).</param>
    /// <param name="cancellationToken">Cancels the copy of the data section.</param>
    public static void Rewrap(string input, string output, ReaderOptions oldKeys, MasterKey newMasterKey, SigningKey newSigningKey,
        AccessPolicy? newPolicy = null, bool evaluateOldPolicy = true, IRandomSource? random = null, CancellationToken cancellationToken = default)
    {
        random ??= SystemRandomSource.Instance;
        ArgumentNullException.ThrowIfNull(oldKeys);
        if (!evaluateOldPolicy) oldKeys = oldKeys.WithoutPolicyEvaluation();
        using var reader = CryptoTensorsReader.Open(input, oldKeys);
        if (!reader.IsEncrypted)
            throw Errors.Create(ErrorCode.NotEncrypted, "the file is not encrypted, cannot rewrap");
        if (!string.IsNullOrEmpty(newMasterKey.Alg) && !string.Equals(newMasterKey.Alg, reader.MasterKeyAlg, StringComparison.Ordinal))
            throw Errors.Create(ErrorCode.AlgorithmMismatch, $"algorithm mismatch: the data is encrypted with '{reader.MasterKeyAlg}', the new master key is '{newMasterKey.Alg}'", field: "alg");

        var old = reader.CryptoKeys!;
        var keys = old with
        {
            WrittenChunkSize = old.WrittenChunkSize || old.Version == "2",
            Enc = new KeyDescriptor("oct", newMasterKey.Alg, newMasterKey.Kid, newMasterKey.Jku),
            Sign = new KeyDescriptor("okp", newSigningKey.Alg, newSigningKey.Kid, newSigningKey.Jku),
        };
        var entries = new Dictionary<string, EncryptionEntry>(StringComparer.Ordinal);
        using (var kek = new AeadCipher(newMasterKey.Algorithm, newMasterKey.Bytes))
        {
            foreach (var (name, e) in reader.Entries)
            {
                var keyIv = new byte[AeadAlgorithms.NonceSize];
                random.Fill(keyIv, RandomPurpose.KeyWrapNonce, name);
                var dek = reader.DataKey(name);
                var wrapped = new byte[dek.Length];
                var tag = new byte[AeadAlgorithms.TagSize];
                kek.Encrypt(keyIv, dek, wrapped, tag);
                entries[name] = new EncryptionEntry { WrappedKey = wrapped, KeyIv = keyIv, KeyTag = tag, Iv = e.Iv, Tag = e.Tag, BaseIv = e.BaseIv, Tags = e.Tags };
            }
        }

        var metadata = reader.Header.Metadata!.ToDictionary(kv => kv.Key, kv => kv.Value, StringComparer.Ordinal);
        metadata[ReservedFields.CryptoKeys] = keys.Serialize();
        metadata[ReservedFields.Encryption] = EncryptionEntry.Serialize(entries, keys.ChunkSize is not null);
        if (newPolicy is not null) metadata[ReservedFields.Policy] = newPolicy.Serialize();
        metadata.Remove(ReservedFields.Signature);
        var tensors = reader.Header.Tensors.Select(t => new HeaderTensor(t.Name, t.Dtype, t.Shape, t.Begin, t.End)).ToList();
        metadata[ReservedFields.Signature] = CryptoPlan.Sign(metadata, tensors, newSigningKey);
        var header = HeaderSerializer.Pad(HeaderSerializer.Serialize(metadata, tensors));

        using var file = new AtomicFile(output);
        Span<byte> prefix = stackalloc byte[8];
        BinaryPrimitives.WriteUInt64LittleEndian(prefix, (ulong)header.Length);
        file.Stream.Write(prefix);
        file.Stream.Write(header);
        var buffer = new byte[4 << 20];
        for (long pos = 0; pos < reader.Header.DataLength; pos += buffer.Length)
        {
            cancellationToken.ThrowIfCancellationRequested();
            var n = (int)Math.Min(buffer.Length, reader.Header.DataLength - pos);
            if (CryptoTensorsReader.ReadExactly(reader.FileHandle, buffer.AsSpan(0, n), reader.Header.DataStart + pos) != n)
                throw Errors.Create(ErrorCode.IncompleteBuffer, "the input ended early: it changed while being rewrapped");
            file.Stream.Write(buffer, 0, n);
        }
        // The data section is copied as it is: plain tensors in it are authenticated by nothing, so a change of the input
        // during the copy (length or modification time) fails the rotation rather than signing the changed bytes' header.
        reader.EnsureUnchanged(null);
        file.Commit();
    }
}
