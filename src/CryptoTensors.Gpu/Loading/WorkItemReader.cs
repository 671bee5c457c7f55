using System.Collections.Concurrent;
using System.Runtime.CompilerServices;
using System.Security.Cryptography;
using CryptoTensors.Gpu.Crypto;
using CryptoTensors.Gpu.Reading;

namespace CryptoTensors.Gpu.Loading;

/// <summary>
/// Produces the plaintext of one work item, for the host and device loaders alike: from a guarded file mapping
/// (<see cref="FileMapping"/>) or by positional reads, decrypting when the tensor is encrypted.
/// </summary>
internal static class WorkItemReader
{
    /// <summary>
    /// Fills <paramref name="destination"/> (the item's length) with the item's plaintext. With a mapping and the
    /// accelerated backend the ciphertext is decrypted straight from the mapping (one pass); otherwise it is first
    /// copied into <paramref name="staging"/> when given and large enough (a cache-resident buffer, so the destination
    /// is written once) or into <paramref name="destination"/> and decrypted in place. Pages of the mapping the item
    /// covered are released afterwards.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public static void Read<T>(CryptoTensorsReader reader, FileMapping? mapping, LoadTarget<T> t, LoadWorkItem item, DataKeyCipherCache ciphers,
        Span<byte> destination, StagingBuffer? staging)
    {
        var fileOffset = t.FileOffset + item.Offset;
        var name = t.Tensor.Name;
        if (t.Entry is not { } e)
        {
            if (mapping is not null) mapping.CopyTo(fileOffset, destination, name);
            else reader.ReadAt(destination, fileOffset, name);
        }
        else
        {
            var cipher = ciphers.For(t.DekOffset);
            if (mapping is not null && cipher.DecryptsFromMapping)
            {
                DecryptFromMapping(mapping, cipher, e, fileOffset, destination, item.Chunk, name);
            }
            else
            {
                var input = staging is not null && destination.Length <= StagingBuffer.MaxBytes ? staging.Get(destination.Length) : destination;
                if (mapping is not null) mapping.CopyTo(fileOffset, input, name);
                else reader.ReadAt(input, fileOffset, name);
                if (item.Chunk < 0) CryptoTensorsReader.DecryptWhole(name, cipher, e, input, destination);
                else CryptoTensorsReader.DecryptChunk(name, cipher, e, input, destination, item.Chunk);
            }
        }
        mapping?.Release(fileOffset, destination.Length);
    }

    /// <summary>
    /// Ends a parallel load: throws the first failure in file order (as <see cref="ErrorCode.IncompleteBuffer"/> when the
    /// file shrank under <paramref name="mapping"/>: a cut file shows up as zeros, a failed tag, as well as a fault), or,
    /// without failures, checks that the mapped file is still whole (bytes past a new end in its last page read as zeros).
    /// </summary>
    /// <remarks>
    /// Beyond truncation, the file's stamp (<see cref="CryptoTensorsReader.ChangedSinceOpen"/>) is checked: a tag failure
    /// on a file that changed since open is reported as the change (<see cref="ErrorCode.FileChanged"/>), not as a
    /// decryption failure, and a load with plain tensors (which nothing authenticates) fails when the file changed.
    /// </remarks>
    public static void Complete<T>(CryptoTensorsReader reader, IReadOnlyList<LoadTarget<T>> targets, ConcurrentBag<(int Item, Exception Error)> errors, FileMapping? mapping)
    {
        if (!errors.IsEmpty)
        {
            var first = errors.OrderBy(e => e.Item).First().Error;
            if (mapping is not null && first is CryptoTensorsException c) mapping.EnsureIntact(c.Tensor);
            if (first is DecryptionException d && reader.ChangedSinceOpen() is { } changed) throw changed.WithCause(d.Tensor ?? "?", d);
            throw first;
        }
        mapping?.EnsureIntact();
        foreach (var t in targets)
        {
            if (t.Entry is not null) continue;
            reader.EnsureUnchanged(t.Tensor.Name);
            break;
        }
    }

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void DecryptFromMapping(FileMapping mapping, AeadCipher cipher, EncryptionEntry e, long fileOffset, Span<byte> destination, long chunk, string name)
    {
        scoped Span<byte> derived = stackalloc byte[AeadAlgorithms.NonceSize];
        scoped ReadOnlySpan<byte> nonce, tag;
        if (chunk < 0)
        {
            if (destination.Length == 0 && e.Iv.Length == 0) return; // an empty v1 tensor with empty iv/tag (§3.6)
            nonce = e.Iv;
            tag = e.Tag;
        }
        else
        {
            ChunkNonce.TryDerive(e.BaseIv, chunk, derived);
            nonce = derived;
            tag = e.Tags.AsSpan((int)(chunk * AeadAlgorithms.TagSize), AeadAlgorithms.TagSize);
        }
        if (!mapping.TryDecrypt(cipher, nonce, fileOffset, tag, destination, name))
            throw Errors.Create(ErrorCode.DecryptionFailed, "decryption failed: authentication tag mismatch", tensor: name, chunk: chunk < 0 ? null : chunk);
    }
}

/// <summary>
/// A worker's cache-resident buffer for copy-then-decrypt (it only ever holds ciphertext), allocated on first use, so
/// loads that decrypt straight from a mapping never allocate it; zeroed on dispose.
/// </summary>
internal sealed class StagingBuffer : IDisposable
{
    /// <summary>Items larger than this are decrypted in place in their destination instead.</summary>
    public const int MaxBytes = 8 << 20;

    private byte[]? _buffer;

    /// <summary>The first <paramref name="length"/> bytes (at most <see cref="MaxBytes"/>), growing the buffer when needed.</summary>
    public Span<byte> Get(int length)
    {
        if (_buffer is null || _buffer.Length < length)
        {
            if (_buffer is not null) CryptographicOperations.ZeroMemory(_buffer);
            _buffer = GC.AllocateUninitializedArray<byte>(Math.Max(length, 64 << 10), pinned: true);
        }
        return _buffer.AsSpan(0, length);
    }

    /// <inheritdoc />
    public void Dispose()
    {
        if (_buffer is not null) CryptographicOperations.ZeroMemory(_buffer);
    }
}
