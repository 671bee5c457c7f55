using ILGPU;
using ILGPU.Runtime;
using CryptoTensors.Gpu.Crypto;
using CryptoTensors.Gpu.Devices;
using CryptoTensors.Gpu.Loading;
using CryptoTensors.Gpu.Reading;

namespace CryptoTensors.Gpu.ILGPU;

/// <summary>
/// Loads tensors into one ILGPU buffer (tensors at 256-byte-aligned offsets, each exposed as a view) on any
/// accelerator: the same staging-ring pipeline as the CUDA driver path (page-locked slots, asynchronous copies on
/// accelerator streams), so host memory stays at the ring's size. With <see cref="DeviceLoadOptions.DecryptOn"/> =
/// <see cref="DecryptSite.Gpu"/> the ring carries ciphertext only and the AES-GCM kernels authenticate and decrypt
/// every chunk in device memory (ChaCha20-Poly1305 files fall back to the host, said in
/// <see cref="IlgpuModel.DecryptionNote"/>).
/// </summary>
public static class IlgpuLoader
{
    /// <summary>Bytes of ciphertext per kernel launch (cancellation is checked between launches).</summary>
    internal const long LaunchBytes = 64L << 20;

    /// <summary>Messages per kernel launch at most.</summary>
    internal const int LaunchItems = 1 << 16;

    /// <summary>Loads the selected tensors of <paramref name="reader"/> onto <paramref name="accelerator"/>.</summary>
    /// <exception cref="DecryptionException">A chunk's tag failed (on the host or the device): every destination is zeroed first.</exception>
    public static IlgpuModel Load(Accelerator accelerator, CryptoTensorsReader reader, DeviceLoadOptions? options = null, CancellationToken cancellationToken = default)
        => Load(accelerator, reader, options, null, cancellationToken);

    /// <summary>
    /// As <see cref="Load(Accelerator, CryptoTensorsReader, DeviceLoadOptions?, CancellationToken)"/>, with test hooks:
    /// the copy engine wrapped (to observe the ring), and the buffer of a failed load shown after it was zeroed, before it is freed.
    /// </summary>
    internal static IlgpuModel Load(Accelerator accelerator, CryptoTensorsReader reader, DeviceLoadOptions? options,
        Func<IlgpuCopyEngine, Devices.Staging.IDeviceCopyEngine>? wrapEngine, CancellationToken cancellationToken,
        Action<MemoryBuffer1D<byte, Stride1D.Dense>>? afterFailure = null)
    {
        ArgumentNullException.ThrowIfNull(accelerator);
        ArgumentNullException.ThrowIfNull(reader);
        options ??= new DeviceLoadOptions();
        var tensors = LoadWorkPlan.Select(reader, options.Tensors);
        var (site, note) = ChooseSite(accelerator, reader, options.DecryptOn);
        var layout = LoadWorkPlan.AlignedLayout(tensors, DeviceLoader.Alignment, out var size);
        accelerator.Bind();
        var arena = accelerator.Allocate1D<byte>(Math.Max(size, 1));
        try
        {
            using var engine = new IlgpuCopyEngine(accelerator, [arena]);
            var onDevice = site == DecryptSite.Gpu;
            var load = options with { Tensors = tensors.Select(t => t.Name).ToList(), DecryptOn = DecryptSite.Cpu, CopyCiphertext = onDevice };
            var stats = DeviceLoader.LoadInto(reader, t => (ulong)layout[t.Name].Offset, wrapEngine?.Invoke(engine) ?? engine, load, cancellationToken);
            if (onDevice) DecryptOnDevice(accelerator, arena.View, reader, tensors, layout, cancellationToken);
            return new IlgpuModel(accelerator, tensors, arena, layout, stats, site, note);
        }
        catch
        {
            // Fail closed: nothing of a failed load stays in device memory (neither ciphertext nor any plaintext).
            try
            {
                arena.MemSetToZero();
                accelerator.Synchronize();
                afterFailure?.Invoke(arena);
            }
            finally
            {
                arena.Dispose();
            }
            throw;
        }
    }

    /// <summary>Where this load decrypts, and why when it is not where it was asked to (null site: nothing to decrypt).</summary>
    internal static (DecryptSite? Site, string? Note) ChooseSite(Accelerator accelerator, CryptoTensorsReader reader, DecryptSite requested)
    {
        if (!reader.IsEncrypted || reader.Tensors.All(t => !t.IsEncrypted)) return (null, "the file holds no encrypted tensor: nothing to decrypt");
        if (requested == DecryptSite.Cpu) return (DecryptSite.Cpu, null);
        if (reader.Algorithm == AeadAlgorithm.ChaCha20Poly1305)
            return (DecryptSite.Cpu, "ChaCha20-Poly1305 has no device kernel: decrypted on the CPU");
        if (requested == DecryptSite.Gpu) return (DecryptSite.Gpu, null);
        return accelerator.AcceleratorType == AcceleratorType.Cuda
            ? (DecryptSite.Gpu, "Auto: AES-GCM on a CUDA accelerator decrypts on the device")
            : (DecryptSite.Cpu, $"Auto: the host decrypts for a {accelerator.AcceleratorType} accelerator");
    }

    /// <summary>
    /// The device pass over ciphertext already in <paramref name="data"/>: every chunk of every encrypted tensor (v2
    /// chunks, whole v1 tensors) as a work item, in launches of up to <see cref="LaunchBytes"/>; the first failing item
    /// in load order is thrown as the host path throws it (tensor and chunk named). The caller zeroes on failure.
    /// </summary>
    private static void DecryptOnDevice(Accelerator accelerator, ArrayView<byte> data, CryptoTensorsReader reader, IReadOnlyList<TensorDescriptor> tensors,
        Dictionary<string, (long Offset, long Length)> layout, CancellationToken cancellationToken)
    {
        var chunkSize = reader.CryptoKeys!.ChunkSize;
        var keySize = reader.Algorithm.KeySize();
        var keyIndex = new Dictionary<int, int>();
        var items = new List<GcmWorkItem>();
        var origin = new List<(string Tensor, long? Chunk)>();
        Span<byte> nonce = stackalloc byte[AeadAlgorithms.NonceSize];
        foreach (var t in tensors)
        {
            if (reader.CryptoOf(t.Name) is not { } crypto) continue;
            var (e, dek) = crypto;
            if (!keyIndex.TryGetValue(dek, out var k)) keyIndex[dek] = k = keyIndex.Count;
            var start = layout[t.Name].Offset;
            var length = t.ByteLength;
            if (chunkSize is { } cs)
            {
                var chunks = ChunkNonce.Count(length, cs);
                for (long c = 0; c < chunks; c++)
                {
                    // Validated before any byte was staged (ValidateEntry); checked again, never wrapped.
                    if (!ChunkNonce.TryDerive(e.BaseIv, c, nonce))
                        throw Errors.Create(ErrorCode.IvCounterOverflow, $"chunk index overflowed the IV counter ({chunks} chunks)", tensor: t.Name, field: "base_iv");
                    items.Add(GpuAesGcm.Item(start + c * cs, (int)Math.Min(cs, length - c * cs), k, nonce, e.Tags.AsSpan((int)(c * AeadAlgorithms.TagSize), AeadAlgorithms.TagSize)));
                    origin.Add((t.Name, c));
                }
            }
            else
            {
                if (length == 0 && e.Iv.Length == 0) continue; // an empty v1 tensor with empty iv/tag (§3.6), as the host path
                items.Add(GpuAesGcm.Item(start, (int)length, k, e.Iv, e.Tag));
                origin.Add((t.Name, null));
            }
        }
        if (items.Count == 0) return;

        var keys = GC.AllocateArray<byte>(keyIndex.Count * keySize, pinned: true);
        try
        {
            foreach (var (dek, k) in keyIndex) reader.DataKeyAt(dek).CopyTo(keys.AsSpan(k * keySize, keySize));
            using var gcm = new GpuAesGcm(accelerator);
            var list = items.ToArray();
            for (var first = 0; first < list.Length;)
            {
                cancellationToken.ThrowIfCancellationRequested();
                var end = first;
                long bytes = 0;
                while (end < list.Length && end - first < LaunchItems && (end == first || bytes + list[end].Length <= LaunchBytes)) bytes += list[end++].Length;
                var status = gcm.Decrypt(data, list.AsSpan(first, end - first), keys, keySize);
                for (var i = 0; i < status.Length; i++)
                {
                    if (status[i] == GcmKernels.Authenticated) continue;
                    var (tensor, chunk) = origin[first + i];
                    var error = Errors.Create(ErrorCode.DecryptionFailed, "decryption failed: authentication tag mismatch", tensor: tensor, chunk: chunk);
                    if (error is DecryptionException d && reader.ChangedSinceOpen() is { } changed) throw changed.WithCause(tensor, d);
                    throw error;
                }
                first = end;
            }
            cancellationToken.ThrowIfCancellationRequested();
        }
        finally
        {
            System.Security.Cryptography.CryptographicOperations.ZeroMemory(keys);
        }
    }
}

/// <summary>Tensors in one ILGPU buffer, each a 256-byte-aligned view of it. Dispose frees it.</summary>
public sealed class IlgpuModel : IDisposable
{
    private readonly MemoryBuffer1D<byte, Stride1D.Dense> _buffer;
    private readonly Dictionary<string, (long Offset, long Length)> _layout;

    internal IlgpuModel(Accelerator accelerator, IReadOnlyList<TensorDescriptor> tensors, MemoryBuffer1D<byte, Stride1D.Dense> buffer,
        Dictionary<string, (long Offset, long Length)> layout, Devices.StagingStatistics staging, DecryptSite? decryptedOn, string? decryptionNote)
    {
        Accelerator = accelerator;
        Tensors = tensors;
        Staging = staging;
        DecryptedOn = decryptedOn;
        DecryptionNote = decryptionNote;
        _buffer = buffer;
        _layout = layout;
    }

    /// <summary>The accelerator holding the buffer.</summary>
    public Accelerator Accelerator { get; }

    /// <summary>The tensors, in load order.</summary>
    public IReadOnlyList<TensorDescriptor> Tensors { get; }

    /// <summary>What the load used on the host.</summary>
    public Devices.StagingStatistics Staging { get; }

    /// <summary>Where the encrypted tensors were decrypted (<see cref="DecryptSite.Cpu"/> or <see cref="DecryptSite.Gpu"/>; null: none was encrypted).</summary>
    public DecryptSite? DecryptedOn { get; }

    /// <summary>Why decryption ran where it did when that was not simply what was asked (a fallback, an Auto choice); null otherwise.</summary>
    public string? DecryptionNote { get; }

    /// <summary>The buffer holding every tensor.</summary>
    public MemoryBuffer1D<byte, Stride1D.Dense> Buffer => _buffer;

    /// <summary>A tensor's bytes (reinterpret with <see cref="View{T}"/>).</summary>
    public ArrayView1D<byte, Stride1D.Dense> this[string name]
        => _layout.TryGetValue(name, out var l) ? _buffer.View.SubView(l.Offset, l.Length) : throw Errors.Create(ErrorCode.TensorNotFound, "tensor not loaded", tensor: name);

    /// <summary>A tensor's elements as a typed view; the element size must divide the byte length.</summary>
    public ArrayView<T> View<T>(string name) where T : unmanaged => this[name].AsContiguous().Cast<T>();

    /// <summary>Frees the buffer.</summary>
    public void Dispose() => _buffer.Dispose();
}
