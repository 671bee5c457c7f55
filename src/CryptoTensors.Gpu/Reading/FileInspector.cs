using CryptoTensors.Gpu.Crypto;
using CryptoTensors.Gpu.Format;

namespace CryptoTensors.Gpu.Reading;

/// <summary>What a file says about itself, read without keys and without verifying anything.</summary>
/// <param name="Path">The file.</param>
/// <param name="FileLength">Its length.</param>
/// <param name="Header">The validated safetensors header.</param>
/// <param name="CryptoKeys">The parsed <c>__crypto_keys__</c>, when present and parsable.</param>
/// <param name="Policy">The parsed <c>__policy__</c>, when present and parsable.</param>
/// <param name="EncryptedTensors">Names of tensors listed in <c>__encryption__</c> that exist in the header.</param>
/// <param name="HasSignature">Whether <c>__signature__</c> is present (not whether it verifies).</param>
public sealed record FileSummary(string Path, long FileLength, SafetensorsHeader Header, CryptoKeysField? CryptoKeys,
    AccessPolicy? Policy, IReadOnlySet<string> EncryptedTensors, bool HasSignature)
{
    /// <summary>Whether the file carries <c>__encryption__</c>.</summary>
    public bool IsEncrypted => Header.Metadata?.ContainsKey(ReservedFields.Encryption) == true;
}

/// <summary>Reads a file's layout and crypto metadata without keys (for <c>ctensors inspect</c>).</summary>
public static class FileInspector
{
    /// <summary>Parses and validates the container, then the reserved fields (unverified).</summary>
    public static FileSummary Inspect(string path)
    {
        using var file = CryptoTensorsReader.OpenSource(path, FileShare.Read);
        var length = RandomAccess.GetLength(file);
        var header = CryptoTensorsReader.ReadHeader(file, length);
        var meta = header.Metadata;
        CryptoKeysField? keys = null;
        AccessPolicy? policy = null;
        var encrypted = new HashSet<string>(StringComparer.Ordinal);
        if (meta is not null)
        {
            if (meta.TryGetValue(ReservedFields.CryptoKeys, out var k)) keys = CryptoKeysField.Parse(k);
            if (meta.TryGetValue(ReservedFields.Policy, out var p)) policy = AccessPolicy.Parse(p);
            if (meta.TryGetValue(ReservedFields.Encryption, out var e))
            {
                foreach (var name in EncryptionEntry.Parse(e).Keys)
                {
                    if (header.TryGetTensor(name, out _)) encrypted.Add(name);
                }
            }
        }
        return new FileSummary(path, length, header, keys, policy, encrypted, meta?.ContainsKey(ReservedFields.Signature) == true);
    }
}
