using System.Runtime.CompilerServices;
using System.Security.Cryptography;
using CryptoTensors.Gpu.Crypto;
using CryptoTensors.Gpu.Format;
using CryptoTensors.Gpu.Keys;
using CryptoTensors.Gpu.Policy;
using Microsoft.Win32.SafeHandles;

namespace CryptoTensors.Gpu.Reading;

/// <summary>A tensor as the reader lists it.</summary>
/// <param name="Name">Tensor name.</param>
/// <param name="Dtype">Element type.</param>
/// <param name="Shape">Shape.</param>
/// <param name="ByteLength">Plaintext byte length.</param>
/// <param name="IsEncrypted">Whether the tensor's bytes are encrypted (and authenticated) in this file.</param>
public sealed record TensorDescriptor(string Name, Dtype Dtype, IReadOnlyList<ulong> Shape, long ByteLength, bool IsEncrypted);

/// <summary>
/// An open CryptoTensors (or plain safetensors) file. <see cref="Open"/> parses and validates the header, and for
/// encrypted files resolves the keys, verifies the signature, evaluates the policy and unwraps every data key —
/// in that order, so nothing is unwrapped or decrypted before the signature and the policy pass. Tensor bytes are
/// read on demand, decrypted straight into the caller's buffer; nothing is cached. Any authentication failure
/// throws <see cref="DecryptionException"/> naming the tensor and chunk, and the destination is zeroed.
/// </summary>
public sealed class CryptoTensorsReader : IDisposable
{
    private readonly SafeFileHandle _file;
    private readonly Dictionary<string, TensorCrypto> _crypto;
    private readonly SecretBuffer? _deks;
    private readonly AeadAlgorithm _algorithm;
    private readonly FileStamp _stamp;
    // References to the keys and the file handle: one held by the owner until Dispose, one per operation in flight
    // (Lease). The last one released zeroes the data keys and closes the handle, so Dispose racing reads never frees
    // what a read still uses: reads already in flight complete, reads that start after Dispose throw ObjectDisposedException.
    private int _references = 1;
    private int _disposeRequested;

    internal sealed record TensorCrypto(EncryptionEntry Entry, int DekOffset);

    private CryptoTensorsReader(string path, SafeFileHandle file, FileStamp stamp, SafetensorsHeader header, HeaderCrypto hc)
    {
        var (keys, policy, crypto, deks, algorithm, masterAlg) = hc;
        Path = path;
        _file = file;
        _stamp = stamp;
        FileLength = stamp.Length;
        Header = header;
        CryptoKeys = keys;
        Policy = policy;
        _crypto = crypto;
        _deks = deks;
        _algorithm = algorithm;
        MasterKeyAlg = masterAlg;
        Tensors = Describe(header, crypto);
        var meta = header.Metadata;
        Metadata = meta is null ? new Dictionary<string, string>() : Select(meta, reserved: false);
        // Built on first use: it holds __encryption__, whose string opening never needs.
        _reservedMetadata = new Lazy<IReadOnlyDictionary<string, string>>(() => meta is null ? new Dictionary<string, string>() : Select(meta, reserved: true));
    }

    private readonly Lazy<IReadOnlyDictionary<string, string>> _reservedMetadata;

    /// <summary>The entries of <paramref name="meta"/> with reserved keys, or those without; only their values are read.</summary>
    private static Dictionary<string, string> Select(IReadOnlyDictionary<string, string> meta, bool reserved)
        => meta.Keys.Where(k => ReservedFields.IsReserved(k) == reserved).ToDictionary(k => k, k => meta[k], StringComparer.Ordinal);

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static TensorDescriptor[] Describe(SafetensorsHeader header, Dictionary<string, TensorCrypto> crypto)
    {
        var result = new TensorDescriptor[header.Tensors.Count];
        for (var i = 0; i < result.Length; i++)
        {
            var t = header.Tensors[i];
            result[i] = new TensorDescriptor(t.Name, t.Dtype, t.Shape, t.ByteLength, crypto.ContainsKey(t.Name));
        }
        return result;
    }

    /// <summary>The file path.</summary>
    public string Path { get; }

    /// <summary>The file length at open.</summary>
    public long FileLength { get; }

    /// <summary>The validated safetensors header.</summary>
    public SafetensorsHeader Header { get; }

    /// <summary>Tensors in file (offset) order.</summary>
    public IReadOnlyList<TensorDescriptor> Tensors { get; }

    /// <summary>User metadata: the <c>__metadata__</c> keys that do not start with <c>__</c>.</summary>
    public IReadOnlyDictionary<string, string> Metadata { get; }

    /// <summary>Reserved metadata: the keys that start with <c>__</c> (crypto fields included).</summary>
    public IReadOnlyDictionary<string, string> ReservedMetadata => _reservedMetadata.Value;

    /// <summary>True when the file has <c>__encryption__</c> (and so was signed and verified at open).</summary>
    public bool IsEncrypted => CryptoKeys is not null;

    /// <summary>The parsed <c>__crypto_keys__</c> of an encrypted file.</summary>
    public CryptoKeysField? CryptoKeys { get; }

    /// <summary>The parsed <c>__policy__</c> of an encrypted file.</summary>
    public AccessPolicy? Policy { get; }

    internal string? MasterKeyAlg { get; }

    /// <summary>
    /// Opens and authenticates a file. Throws a <see cref="CryptoTensorsException"/> subclass on any refusal.
    /// </summary>
    public static CryptoTensorsReader Open(string path, ReaderOptions? options = null)
    {
        options ??= new ReaderOptions();
        var file = OpenSource(path, FileShare.Read | FileShare.Delete);
        try
        {
            // Taken before the header is read: a change from here on (length or modification time) is detected by reads.
            var stamp = FileStamp.Of(file);
            var length = stamp.Length;
            var headerBytes = ReadHeaderBytes(file, length);
            // Work on the larger parts of a big header starts on the other cores while the header is parsed: the
            // signature check (where the verification key is given) and the parse of __encryption__. Each result is used
            // only once the parsed header shows it was computed on exactly the right bytes.
            var signature = SpeculativeSignature.Start(headerBytes, options.VerificationKey);
            var encryption = SpeculativeEncryption.Start(headerBytes);
            var header = SafetensorsHeader.ParseOwned(headerBytes, length);
            return new CryptoTensorsReader(path, file, stamp, header, Authenticate(path, header, options, signature, encryption));
        }
        catch
        {
            file.Dispose();
            throw;
        }
    }

    /// <summary>
    /// Opens a model file for reading. A directory is refused as such: the OS's own answer ("Access to the path …
    /// is denied") would name the wrong cause.
    /// </summary>
    internal static SafeFileHandle OpenSource(string path, FileShare share)
    {
        ArgumentNullException.ThrowIfNull(path);
        if (Directory.Exists(path)) throw new IOException($"'{path}' is a directory, not a file");
        return File.OpenHandle(path, FileMode.Open, FileAccess.Read, share);
    }

    /// <summary>Reads, bounds-checks and validates the header of an open file (FORMAT.md §1.5), before any tensor access.</summary>
    internal static SafetensorsHeader ReadHeader(SafeFileHandle file, long length)
        => SafetensorsHeader.ParseOwned(ReadHeaderBytes(file, length), length);

    /// <summary>The header bytes of an open file, their length bounds-checked against the file (FORMAT.md §1.5 steps 1-3).</summary>
    private static byte[] ReadHeaderBytes(SafeFileHandle file, long length)
    {
        Span<byte> prefix = stackalloc byte[8];
        var got = length >= 8 ? ReadExactly(file, prefix, 0) : 0;
        var n = (int)SafetensorsHeader.ReadHeaderLength(prefix[..got], length);
        // The parsed header keeps this buffer (its raw strings feed the signed message), so it is not pooled.
        var headerBytes = GC.AllocateUninitializedArray<byte>(n);
        if (ReadExactly(file, headerBytes, 8) != n) throw FileChanged();
        return headerBytes;
    }

    /// <summary>The result of authenticating a header: everything needed to decrypt its tensors.</summary>
    internal sealed record HeaderCrypto(CryptoKeysField? Keys, AccessPolicy? Policy, Dictionary<string, TensorCrypto> Crypto,
        SecretBuffer? Deks, AeadAlgorithm Algorithm, string? MasterAlg);

    /// <summary>
    /// Checks the reserved fields, resolves keys, verifies the signature, evaluates the policy and unwraps every data
    /// key, in that order (FORMAT.md §4.3). <paramref name="name"/> is the file name given to the policy;
    /// <paramref name="earlySignature"/>, a signature check started before the header was parsed, used only where it checked
    /// exactly the canonical message; <paramref name="earlyEncryption"/>, a parse of <c>__encryption__</c> started then,
    /// used only where it parsed exactly the stored value.
    /// </summary>
    internal static HeaderCrypto Authenticate(string name, SafetensorsHeader header, ReaderOptions options, SpeculativeSignature? earlySignature = null,
        SpeculativeEncryption? earlyEncryption = null)
    {
        var meta = header.Metadata;
        if (meta is null || !meta.ContainsKey(ReservedFields.Encryption))
        {
            var stray = meta?.Keys.FirstOrDefault(k => k is ReservedFields.CryptoKeys or ReservedFields.Policy or ReservedFields.Signature);
            if (stray is not null)
                throw Errors.Create(ErrorCode.StrippedEncryption, $"{stray} is present but __encryption__ is not: refusing a stripped (downgraded) encrypted file", field: ReservedFields.Encryption);
            if (options.RequireEncrypted || options.RequireAllTensorsEncrypted)
                throw Errors.Create(ErrorCode.NotEncrypted, "the file is not encrypted and signed, and the caller requires it");
            return new HeaderCrypto(null, null, [], null, default, null);
        }

        if (!meta.TryGetValue(ReservedFields.CryptoKeys, out var keysJson))
            throw Errors.Create(ErrorCode.InvalidCryptoField, "missing __crypto_keys__ in an encrypted file", field: ReservedFields.CryptoKeys);
        if (!meta.TryGetValue(ReservedFields.Signature, out var signatureText))
            throw Errors.Create(ErrorCode.MissingSignature, "missing __signature__ in an encrypted file", field: ReservedFields.Signature);
        if (!meta.TryGetValue(ReservedFields.Policy, out var policyJson))
            throw Errors.Create(ErrorCode.InvalidCryptoField, "missing __policy__ in an encrypted file", field: ReservedFields.Policy);

        var keys = CryptoKeysField.Parse(keysJson);
        var registry = options.Keys ?? KeyRegistry.CreateDefault();
        var encJku = options.FollowHeaderKeyLocations ? keys.Enc.Jku : null;
        var signJku = options.FollowHeaderKeyLocations ? keys.Sign.Jku : null;

        MasterKey? ownedMaster = null;
        try
        {
            var master = options.MasterKey ?? (ownedMaster = registry.GetMasterKey(encJku, keys.Enc.Kid));
            var verify = options.VerificationKey ?? registry.GetVerificationKey(signJku, keys.Sign.Kid);

            // __encryption__ (untrusted JSON, like the whole header at this point) is parsed on another core while the
            // signature is checked; its result or error is looked at only once the signature and the policy have passed,
            // so errors keep the reference's order and no data key is unwrapped before both.
            var parse = earlyEncryption is null ? StartParallelParse(header) : null;
            AccessPolicy policy;
            try
            {
                VerifySignature(header, signatureText, verify, earlySignature, KidMismatch("verification key", verify.Kid, keys.Sign.Kid));
                policy = AccessPolicy.Parse(policyJson);
                PolicyGate.EnsureAllowed(policy, name, keys, options, master.Source ?? KeySources.Direct);
            }
            catch
            {
                parse?.ContinueWith(static t => _ = t.Exception, CancellationToken.None,
                    TaskContinuationOptions.OnlyOnFaulted | TaskContinuationOptions.ExecuteSynchronously, TaskScheduler.Default);
                throw;
            }

            var entries = parse is not null ? parse.GetAwaiter().GetResult()
                : (header.TryGetStoredValue(ReservedFields.Encryption, out var stored) ? earlyEncryption?.TryGetResult(stored) : null) ?? ParseEncryption(header);
            if (options.RequireAllTensorsEncrypted) EnsureAllEncrypted(header, entries);
            var (crypto, deks) = UnwrapAll(entries, header, master, KidMismatch("master key", master.Kid, keys.Enc.Kid));
            return new HeaderCrypto(keys, policy, crypto, deks, master.Algorithm, master.Alg);
        }
        finally
        {
            ownedMaster?.Dispose();
        }
    }

    /// <summary>
    /// Refuses a file with any tensor stored in plain (<see cref="ReaderOptions.RequireAllTensorsEncrypted"/>): the
    /// signature covers the header only, so plain tensor bytes are not authenticated by anything.
    /// </summary>
    internal static void EnsureAllEncrypted(SafetensorsHeader header, IReadOnlyDictionary<string, EncryptionEntry> crypto)
    {
        var plain = header.Tensors.Where(t => !crypto.ContainsKey(t.Name)).Select(t => t.Name).ToList();
        if (plain.Count == 0) return;
        throw Errors.Create(ErrorCode.NotEncrypted,
            $"{plain.Count} of {header.Tensors.Count} tensors are stored in plain (not authenticated by the signature) and the caller requires every tensor encrypted",
            tensor: plain[0]);
    }

    /// <summary>Parsing of a large <c>__encryption__</c> started on the thread pool, or null where it is small or there is one core.</summary>
    private static Task<Dictionary<string, EncryptionEntry>>? StartParallelParse(SafetensorsHeader header)
        => Environment.ProcessorCount > 1 && header.TryGetStoredValue(ReservedFields.Encryption, out var stored) && stored.Length >= ParallelParseBytes
            ? Task.Run(() => ParseEncryption(header))
            : null;

    /// <summary><c>__encryption__</c> parsed from its stored bytes in the header (no string built for what writers emit).</summary>
    private static Dictionary<string, EncryptionEntry> ParseEncryption(SafetensorsHeader header)
        => header.TryGetStoredValue(ReservedFields.Encryption, out var stored)
            ? EncryptionEntry.ParseStored(stored.Span, () => header.Metadata![ReservedFields.Encryption])
            : throw new InvalidOperationException("__encryption__ is missing after it was checked");

    /// <summary>From this many stored bytes of <c>__encryption__</c> (about 80 tensors) its parsing overlaps the signature check.</summary>
    private const int ParallelParseBytes = 16 << 10;

    /// <summary>
    /// The message the reference signs (FORMAT.md §4.1): the canonical re-serialization of the header without
    /// <c>__signature__</c>, never the raw header slice (strings already stored canonically are copied as they are).
    /// </summary>
    internal static byte[] SignedMessage(SafetensorsHeader header)
    {
        using var message = CanonicalMessage(header);
        return message.WrittenSpan.ToArray();
    }

    /// <summary><see cref="SignedMessage"/> in a pooled buffer the caller disposes.</summary>
    private static PooledBufferWriter CanonicalMessage(SafetensorsHeader header)
    {
        var message = new PooledBufferWriter((int)Math.Min(header.HeaderLength + 64, int.MaxValue));
        try
        {
            header.WriteCanonical(message, ReservedFields.Signature);
            return message;
        }
        catch
        {
            message.Dispose();
            throw;
        }
    }

    /// <summary>
    /// The clause appended to a signature or unwrap failure when the key used carries another kid than the header
    /// names (a key given directly is used whatever its kid): the likeliest cause of the failure, said plainly.
    /// </summary>
    private static string KidMismatch(string what, string? keyKid, string? headerKid)
        => keyKid is not null && headerKid is not null && !string.Equals(keyKid, headerKid, StringComparison.Ordinal)
            ? $" (the {what} used has kid '{keyKid}' but the header names kid '{headerKid}')"
            : "";

    private static void VerifySignature(SafetensorsHeader header, string signatureText, VerificationKey key, SpeculativeSignature? early, string kidMismatch)
    {
        if (!Base64Strict.TryDecode(signatureText, out var signature) || signature.Length != Ed25519.SignatureSize)
            throw Errors.Create(ErrorCode.InvalidSignatureFormat, "invalid signature format: expected padded standard base64 of 64 bytes", field: ReservedFields.Signature);
        // Where the guess verified exactly the canonical message, its verdict counts, and the message is never built.
        var verified = early?.TryGetResult(header, signature, key) ?? VerifyCanonical(header, signature, key);
        if (!verified)
            throw Errors.Create(ErrorCode.SignatureMismatch, "signature verification failed" + kidMismatch, field: ReservedFields.Signature);
    }

    private static bool VerifyCanonical(SafetensorsHeader header, ReadOnlySpan<byte> signature, VerificationKey key)
    {
        using var message = CanonicalMessage(header);
        return Ed25519.Verify(key.PublicKey, message.WrittenSpan, signature);
    }

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static (Dictionary<string, TensorCrypto>, SecretBuffer) UnwrapAll(Dictionary<string, EncryptionEntry> entries, SafetensorsHeader header, MasterKey master, string kidMismatch)
    {
        var keyLen = master.Algorithm.KeySize();
        var deks = new SecretBuffer(Math.Max(1, entries.Count) * keyLen);
        var result = new Dictionary<string, TensorCrypto>(entries.Count, StringComparer.Ordinal);
        try
        {
            using var kek = new AeadCipher(master.Algorithm, master.Bytes);
            var offset = 0;
            foreach (var (name, e) in entries)
            {
                if (e.WrappedKey.Length != keyLen)
                    throw Errors.Create(ErrorCode.KeyUnwrapFailed, $"invalid key length: wrapped data key is {e.WrappedKey.Length} bytes, {master.Alg} needs {keyLen}", tensor: name, field: "wrapped_key");
                var dek = deks.Span.Slice(offset, keyLen);
                if (!kek.TryDecrypt(e.KeyIv, e.WrappedKey, e.KeyTag, dek))
                    throw Errors.Create(ErrorCode.KeyUnwrapFailed, "failed to unwrap the data key: authentication failed (wrong master key or tampered key_iv/key_tag/wrapped_key)" + kidMismatch, tensor: name, field: "wrapped_key");
                // Entries naming no tensor are unwrapped (as the reference does) but not kept.
                if (header.TryGetTensor(name, out _)) result[name] = new TensorCrypto(e, offset);
                offset += keyLen;
            }
            return (result, deks);
        }
        catch
        {
            deks.Dispose();
            throw;
        }
    }

    /// <summary>Describes a tensor; throws <see cref="ErrorCode.TensorNotFound"/> if there is none of that name.</summary>
    public TensorDescriptor GetTensor(string name)
        => Header.TryGetTensor(name, out var t)
            ? new TensorDescriptor(t.Name, t.Dtype, t.Shape, t.ByteLength, _crypto.ContainsKey(name))
            : throw Errors.Create(ErrorCode.TensorNotFound, "tensor not found", tensor: name);

    /// <summary>Reads (and decrypts and authenticates) a whole tensor into a new array.</summary>
    public byte[] ReadTensor(string name)
    {
        var t = Info(name);
        if (t.ByteLength > Array.MaxLength)
            throw Errors.Create(ErrorCode.TensorTooLarge, $"the tensor holds {t.ByteLength} bytes, more than one array can ({Array.MaxLength}); read it with ReadTensor(name, span) or ReadInto", tensor: name);
        var buffer = GC.AllocateUninitializedArray<byte>((int)t.ByteLength);
        ReadTensor(name, buffer);
        return buffer;
    }

    /// <summary>
    /// Reads a whole tensor into <paramref name="destination"/>, whose length must equal the tensor's byte length.
    /// On failure the destination is zeroed.
    /// </summary>
    public void ReadTensor(string name, Span<byte> destination)
    {
        using var lease = Lease();
        var t = Info(name);
        if (destination.Length != t.ByteLength)
            throw Errors.Create(ErrorCode.DestinationSize, $"destination is {destination.Length} bytes, tensor is {t.ByteLength}", tensor: name);
        try
        {
            ReadAt(destination, Header.DataStart + (long)t.Begin, name);
            if (_crypto.TryGetValue(name, out var c)) DecryptInPlace(name, c, destination);
            else EnsureUnchanged(name);
        }
        catch (DecryptionException e) when (ChangedSinceOpen() is { } changed)
        {
            destination.Clear();
            throw changed.WithCause(name, e);
        }
        catch
        {
            destination.Clear();
            throw;
        }
    }

    /// <summary>
    /// Decrypts tensor <paramref name="name"/> into memory the caller owns and keeps valid for the call:
    /// host memory when <paramref name="stream"/> is null (all chunks in parallel, straight into the destination),
    /// or device memory of the stream's device otherwise (chunks decrypted into a page-locked staging ring and
    /// copied with <c>cuMemcpyHtoDAsync</c> on <paramref name="stream"/>; pass a <paramref name="ring"/> to reuse
    /// one across calls). Returns when the bytes are in place; on any failure the destination is zeroed.
    /// </summary>
    /// <param name="name">The tensor.</param>
    /// <param name="destination">Host address, or device address (<c>CUdeviceptr</c>) when <paramref name="stream"/> is given.</param>
    /// <param name="byteLength">Must equal the tensor's byte length.</param>
    /// <param name="stream">The CUDA stream to copy on, or null for host memory.</param>
    /// <param name="ring">A staging ring to reuse (device destinations only).</param>
    /// <param name="cancellationToken">Cancels the read (the destination is then zeroed).</param>
    public void ReadInto(string name, IntPtr destination, long byteLength, Devices.Cuda.CudaStream? stream = null,
        Devices.Staging.StagingRing? ring = null, CancellationToken cancellationToken = default)
    {
        using var lease = Lease();
        var t = GetTensor(name);
        if (byteLength != t.ByteLength)
            throw Errors.Create(ErrorCode.DestinationSize, $"destination is {byteLength} bytes, tensor is {t.ByteLength}", tensor: name);
        if (destination == IntPtr.Zero && byteLength > 0) throw new ArgumentNullException(nameof(destination));
        if (stream is null)
        {
            Loading.ModelLoader.LoadInto(this, _ => new Loading.TensorDestination(destination, byteLength), new Loading.LoadOptions { Tensors = [name] }, cancellationToken);
            return;
        }
        using var engine = new Devices.Staging.CudaCopyEngine(stream);
        Devices.DeviceLoader.LoadInto(this, _ => (ulong)destination, engine, new Devices.DeviceLoadOptions { Tensors = [name], Ring = ring }, cancellationToken);
    }

    /// <summary>Asynchronous <see cref="ReadTensor(string, Span{byte})"/>.</summary>
    public async ValueTask ReadTensorAsync(string name, Memory<byte> destination, CancellationToken cancellationToken = default)
    {
        using var lease = Lease();
        var t = Info(name);
        if (destination.Length != t.ByteLength)
            throw Errors.Create(ErrorCode.DestinationSize, $"destination is {destination.Length} bytes, tensor is {t.ByteLength}", tensor: name);
        try
        {
            var offset = Header.DataStart + (long)t.Begin;
            var done = 0;
            while (done < destination.Length)
            {
                var n = await RandomAccess.ReadAsync(_file, destination[done..], offset + done, cancellationToken).ConfigureAwait(false);
                if (n == 0) throw FileChanged(name);
                done += n;
            }
            if (_crypto.TryGetValue(name, out var c)) DecryptInPlace(name, c, destination.Span);
            else EnsureUnchanged(name);
        }
        catch (DecryptionException e) when (ChangedSinceOpen() is { } changed)
        {
            destination.Span.Clear();
            throw changed.WithCause(name, e);
        }
        catch
        {
            destination.Span.Clear();
            throw;
        }
    }

    /// <summary>
    /// Reads bytes <c>[offset, offset + destination.Length)</c> of a tensor. For chunked (v2) tensors only the chunks
    /// covering the range are read and authenticated (each tag checked); whole chunks inside the range are decrypted
    /// straight into <paramref name="destination"/>, the partial chunks at its edges through a cleared scratch buffer.
    /// A v1 tensor has one tag over all of it, so it is decrypted whole (into scratch) and the range copied.
    /// On failure the destination is zeroed.
    /// </summary>
    public void ReadRange(string name, long offset, Span<byte> destination)
    {
        using var lease = Lease();
        var t = Info(name);
        if (offset < 0 || offset > t.ByteLength || destination.Length > t.ByteLength - offset)
            throw Errors.Create(ErrorCode.DestinationSize, $"range [{offset},{offset + destination.Length}) is outside the tensor's {t.ByteLength} bytes", tensor: name);
        var fileStart = Header.DataStart + (long)t.Begin;
        try
        {
            if (!_crypto.TryGetValue(name, out var c))
            {
                ReadAt(destination, fileStart + offset, name);
                EnsureUnchanged(name);
                return;
            }
            ValidateEntry(name, c.Entry, t.ByteLength, CryptoKeys!.ChunkSize);
            if (CryptoKeys.ChunkSize is not { } cs)
            {
                var whole = System.Buffers.ArrayPool<byte>.Shared.Rent((int)t.ByteLength);
                try
                {
                    ReadTensor(name, whole.AsSpan(0, (int)t.ByteLength));
                    whole.AsSpan((int)offset, destination.Length).CopyTo(destination);
                }
                finally
                {
                    CryptographicOperations.ZeroMemory(whole);
                    System.Buffers.ArrayPool<byte>.Shared.Return(whole);
                }
                return;
            }
            if (destination.IsEmpty) return;
            using var cipher = new AeadCipher(_algorithm, DataKeyAt(c.DekOffset));
            var first = offset / cs;
            var last = (offset + destination.Length - 1) / cs;
            byte[]? scratch = null;
            try
            {
                for (var i = first; i <= last; i++)
                {
                    var chunkStart = i * cs;
                    var chunkLen = (int)Math.Min(cs, t.ByteLength - chunkStart);
                    var inside = chunkStart >= offset && chunkStart + chunkLen <= offset + destination.Length;
                    Span<byte> target;
                    if (inside) target = destination.Slice((int)(chunkStart - offset), chunkLen);
                    // The scratch holds one chunk, never more than the tensor: a signed chunk_size of 2 GiB over a small
                    // tensor must not allocate 2 GiB.
                    else target = (scratch ??= GC.AllocateUninitializedArray<byte>((int)Math.Min(cs, t.ByteLength), pinned: true)).AsSpan(0, chunkLen);
                    ReadAt(target, fileStart + chunkStart, name);
                    DecryptChunk(name, cipher, c.Entry, target, i);
                    if (!inside)
                    {
                        var from = Math.Max(offset, chunkStart);
                        var to = Math.Min(offset + destination.Length, chunkStart + chunkLen);
                        target.Slice((int)(from - chunkStart), (int)(to - from)).CopyTo(destination[(int)(from - offset)..]);
                    }
                }
            }
            finally
            {
                if (scratch is not null) CryptographicOperations.ZeroMemory(scratch);
            }
        }
        catch (DecryptionException e) when (ChangedSinceOpen() is { } changed)
        {
            destination.Clear();
            throw changed.WithCause(name, e);
        }
        catch
        {
            destination.Clear();
            throw;
        }
    }

    /// <summary>
    /// Reads several byte ranges of one tensor (e.g. one tensor-parallel rank's rows), concatenated into
    /// <paramref name="destination"/>; only the chunks covering them are decrypted.
    /// </summary>
    public void ReadSlice(string name, IReadOnlyList<(long Offset, long Length)> ranges, Span<byte> destination)
    {
        using var lease = Lease();
        var total = 0L;
        foreach (var (_, length) in ranges) total += length;
        if (total != destination.Length)
            throw Errors.Create(ErrorCode.DestinationSize, $"destination is {destination.Length} bytes, the ranges cover {total}", tensor: name);
        var at = 0;
        try
        {
            foreach (var (o, l) in ranges)
            {
                ReadRange(name, o, destination.Slice(at, (int)l));
                at += (int)l;
            }
        }
        catch
        {
            destination.Clear();
            throw;
        }
    }

    private TensorInfo Info(string name)
        => Header.TryGetTensor(name, out var t) ? t : throw Errors.Create(ErrorCode.TensorNotFound, "tensor not found", tensor: name);

    private void DecryptInPlace(string name, TensorCrypto c, Span<byte> data)
    {
        var dek = _deks!.Span.Slice(c.DekOffset, _algorithm.KeySize());
        using var cipher = new AeadCipher(_algorithm, dek);
        var e = c.Entry;
        ValidateEntry(name, e, data.Length, CryptoKeys!.ChunkSize);
        if (CryptoKeys.ChunkSize is not { } chunkSize)
        {
            DecryptWhole(name, cipher, e, data, data);
            return;
        }

        var chunks = ChunkNonce.Count(data.Length, chunkSize);
        if (chunks >= 2 && Environment.ProcessorCount > 1)
        {
            DecryptChunksParallel(name, c.DekOffset, e, data, chunkSize, chunks);
            return;
        }
        for (long i = 0; i < chunks; i++) DecryptChunk(name, cipher, e, ChunkOf(data, chunkSize, i), i);
    }

    /// <summary>Decrypts chunk <paramref name="i"/> of a v2 tensor from <paramref name="input"/> into <paramref name="output"/> (may be the same memory).</summary>
    internal static void DecryptChunk(string name, AeadCipher cipher, EncryptionEntry e, ReadOnlySpan<byte> input, Span<byte> output, long i)
    {
        Span<byte> nonce = stackalloc byte[AeadAlgorithms.NonceSize];
        ChunkNonce.TryDerive(e.BaseIv, i, nonce);
        if (!cipher.TryDecrypt(nonce, input, e.Tags.AsSpan((int)(i * AeadAlgorithms.TagSize), AeadAlgorithms.TagSize), output))
            throw Errors.Create(ErrorCode.DecryptionFailed, "decryption failed: authentication tag mismatch", tensor: name, chunk: i);
    }

    /// <summary>Decrypts a whole v1 tensor (an empty one with empty iv/tag is accepted as is, §3.6).</summary>
    internal static void DecryptWhole(string name, AeadCipher cipher, EncryptionEntry e, ReadOnlySpan<byte> input, Span<byte> output)
    {
        if (input.Length == 0 && e.Iv.Length == 0) return;
        if (!cipher.TryDecrypt(e.Iv, input, e.Tag, output))
            throw Errors.Create(ErrorCode.DecryptionFailed, "decryption failed: authentication tag mismatch", tensor: name);
    }

    private static void DecryptChunk(string name, AeadCipher cipher, EncryptionEntry e, Span<byte> chunk, long i)
        => DecryptChunk(name, cipher, e, chunk, chunk, i);

    private static Span<byte> ChunkOf(Span<byte> data, long chunkSize, long i)
    {
        var start = (int)(i * chunkSize);
        return data.Slice(start, (int)Math.Min(chunkSize, data.Length - start));
    }

    /// <summary>Chunks of one tensor across the thread pool, one cipher per worker.</summary>
    private unsafe void DecryptChunksParallel(string name, int dekOffset, EncryptionEntry e, Span<byte> data, long chunkSize, long chunks)
    {
        var algorithm = _algorithm;
        var deks = _deks!;
        try
        {
            fixed (byte* p = data)
            {
                var ptr = (IntPtr)p;
                var length = data.Length;
                Parallel.For(0L, chunks, () => new AeadCipher(algorithm, deks.Span.Slice(dekOffset, algorithm.KeySize())), (i, _, cipher) =>
                {
                    DecryptChunk(name, cipher, e, ChunkOf(new Span<byte>((void*)ptr, length), chunkSize, i), i);
                    return cipher;
                }, cipher => cipher.Dispose());
            }
        }
        catch (AggregateException ae) when (ae.InnerExceptions.OfType<CryptoTensorsException>().Any())
        {
            throw ae.InnerExceptions.OfType<CryptoTensorsException>().OrderBy(x => x.Chunk).First();
        }
    }

    internal ReadOnlySpan<byte> DataKey(string name) => _deks!.Span.Slice(_crypto[name].DekOffset, _algorithm.KeySize());

    /// <summary>The crypto state the parallel loader needs for one tensor: entry and data-key offset, or null for plain.</summary>
    internal (EncryptionEntry Entry, int DekOffset)? CryptoOf(string name)
        => _crypto.TryGetValue(name, out var c) ? (c.Entry, c.DekOffset) : null;

    internal AeadAlgorithm Algorithm => _algorithm;

    internal ReadOnlySpan<byte> DataKeyAt(int dekOffset) => _deks!.Span.Slice(dekOffset, _algorithm.KeySize());

    /// <summary>Checks the nonce/tag fields of a tensor before any of its chunks is decrypted (the reader's rules).</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    internal static void ValidateEntry(string name, EncryptionEntry e, long length, long? chunkSize)
    {
        if (chunkSize is not { } cs)
        {
            if (length == 0 && e.Iv.Length == 0 && e.Tag.Length == 0) return;
            if (e.Iv.Length != AeadAlgorithms.NonceSize || e.Tag.Length != AeadAlgorithms.TagSize)
                throw Errors.Create(ErrorCode.MissingNonceOrTag, $"missing or malformed iv/tag (iv {e.Iv.Length} bytes, tag {e.Tag.Length} bytes)", tensor: name, field: "iv");
            if (length > int.MaxValue)
                throw Errors.Create(ErrorCode.TensorTooLarge, $"v1 (monolithic) tensors above 2 GiB cannot be authenticated in one AEAD call; this one claims {length} bytes", tensor: name);
            return;
        }
        var chunks = ChunkNonce.Count(length, cs);
        if (e.BaseIv.Length < AeadAlgorithms.NonceSize || (length == 0 && e.BaseIv.Length != AeadAlgorithms.NonceSize))
            throw Errors.Create(ErrorCode.MissingNonceOrTag, $"missing or malformed base_iv ({e.BaseIv.Length} bytes)", tensor: name, field: "base_iv");
        if (e.Tags.Length < chunks * AeadAlgorithms.TagSize)
            throw Errors.Create(ErrorCode.MissingNonceOrTag, $"missing tag for chunk {e.Tags.Length / AeadAlgorithms.TagSize} of {chunks}", tensor: name, chunk: e.Tags.Length / AeadAlgorithms.TagSize, field: "tags");
        if (!ChunkNonce.Fits(e.BaseIv, chunks))
            throw Errors.Create(ErrorCode.IvCounterOverflow, $"chunk index overflowed the IV counter ({chunks} chunks)", tensor: name, field: "base_iv");
    }

    internal EncryptionEntry? Entry(string name) => _crypto.TryGetValue(name, out var c) ? c.Entry : null;

    internal IReadOnlyDictionary<string, EncryptionEntry> Entries => _crypto.ToDictionary(kv => kv.Key, kv => kv.Value.Entry, StringComparer.Ordinal);

    internal SafeFileHandle FileHandle => _file;

    internal static int ReadExactly(SafeFileHandle file, Span<byte> buffer, long offset)
    {
        var done = 0;
        while (done < buffer.Length)
        {
            var n = RandomAccess.Read(file, buffer[done..], offset + done);
            if (n == 0) break;
            done += n;
        }
        return done;
    }

    /// <summary>Fills <paramref name="buffer"/> from <paramref name="offset"/>; a short read (the file shrank) is <see cref="ErrorCode.IncompleteBuffer"/> naming <paramref name="tensor"/>.</summary>
    internal void ReadAt(Span<byte> buffer, long offset, string tensor)
    {
        if (ReadExactly(_file, buffer, offset) != buffer.Length) throw FileChanged(tensor);
    }

    internal static CryptoTensorsException FileChanged(string? tensor = null)
        => Errors.Create(ErrorCode.IncompleteBuffer, "the file ended early: it was truncated or changed while being read", tensor: tensor);

    /// <summary>
    /// What a read reports when the file is no longer the one opened: <see cref="ErrorCode.IncompleteBuffer"/> when it
    /// is shorter, <see cref="ErrorCode.FileChanged"/> when it is longer or was written (its modification time moved),
    /// or null when it looks unchanged. A file replaced by a rename is not a change: the reader keeps the file it opened.
    /// </summary>
    internal FileChange? ChangedSinceOpen()
    {
        FileStamp now;
        try
        {
            now = FileStamp.Of(_file);
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            return new FileChange(ErrorCode.FileChanged, "the file could not be examined after the read: " + e.Message);
        }
        if (now.Length < _stamp.Length) return new FileChange(ErrorCode.IncompleteBuffer, "the file ended early: it was truncated or changed while being read");
        if (now != _stamp)
            return new FileChange(ErrorCode.FileChanged, now.Length != _stamp.Length
                ? $"the file changed while being read: it grew from {_stamp.Length} to {now.Length} bytes since it was opened"
                : "the file changed while being read: it was written to since it was opened (its modification time moved)");
        return null;
    }

    /// <summary>
    /// Throws when the file changed since open (<see cref="ChangedSinceOpen"/>). Called after plain bytes are read:
    /// nothing authenticates them, so the file's length and modification time are the only evidence they are the
    /// bytes that were opened (best effort: a writer that keeps both defeats it; see docs/SECURITY.md).
    /// </summary>
    internal void EnsureUnchanged(string? tensor)
    {
        if (ChangedSinceOpen() is { } changed) throw changed.ToException(tensor);
    }

    /// <summary>A change of the file since open, turned into an error naming the tensor being read.</summary>
    internal sealed record FileChange(ErrorCode Code, string Message)
    {
        public CryptoTensorsException ToException(string? tensor) => Errors.Create(Code, Message, tensor: tensor);

        /// <summary>A tag failure explained by the change (the bytes were not the ones signed because the file changed).</summary>
        public CryptoTensorsException WithCause(string tensor, CryptoTensorsException tagFailure)
            => Errors.Create(Code, Message + (tagFailure.Chunk is { } c ? $" (chunk {c} failed authentication)" : " (it failed authentication)"), tensor: tensor);
    }

    /// <summary>An operation's reference to the keys and the file handle (see <see cref="Lease"/>).</summary>
    internal readonly struct ReaderLease : IDisposable
    {
        private readonly CryptoTensorsReader? _reader;

        internal ReaderLease(CryptoTensorsReader reader) => _reader = reader;

        public void Dispose() => _reader?.Release();
    }

    /// <summary>
    /// Takes a reference to the data keys and the file handle for one operation; throws
    /// <see cref="ObjectDisposedException"/> once <see cref="Dispose"/> was called. Every public read and every loader
    /// holds one for its whole duration, so nothing it uses is zeroed or closed under it.
    /// </summary>
    internal ReaderLease Lease()
    {
        while (true)
        {
            var n = Volatile.Read(ref _references);
            ObjectDisposedException.ThrowIf(Volatile.Read(ref _disposeRequested) != 0 || n <= 0, this);
            if (Interlocked.CompareExchange(ref _references, n + 1, n) == n) return new ReaderLease(this);
        }
    }

    private void Release()
    {
        if (Interlocked.Decrement(ref _references) != 0) return;
        _deks?.Dispose();
        _file.Dispose();
    }

    /// <summary>Whether <see cref="Dispose"/> was called (the keys may live on until the reads in flight end).</summary>
    internal bool IsDisposeRequested => Volatile.Read(ref _disposeRequested) != 0;

    /// <summary>
    /// Closes the reader. Reads that start afterwards throw <see cref="ObjectDisposedException"/>; reads and loads
    /// already in flight complete normally, and the last of them zeroes the data keys and closes the file (at once when
    /// none is in flight). Safe to call from any thread, any number of times.
    /// </summary>
    public void Dispose()
    {
        if (Interlocked.Exchange(ref _disposeRequested, 1) != 0) return;
        Release();
    }
}
