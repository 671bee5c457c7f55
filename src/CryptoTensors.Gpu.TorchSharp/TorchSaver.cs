using System.Runtime.InteropServices;
using CryptoTensors.Gpu.Format;
using CryptoTensors.Gpu.Writing;
using TorchSharp;
using static TorchSharp.torch;

namespace CryptoTensors.Gpu.TorchSharp;

/// <summary>
/// Saves TorchSharp tensors as a CryptoTensors file (or, without keys, a plain safetensors file), like the reference's
/// <c>save_file</c>: tensor names as given, shapes as the tensors' shapes, <see cref="WriterOptions.Metadata"/> as the
/// file's metadata, tensors ordered as the reference orders them. The file is written by
/// <see cref="CryptoTensorsWriter"/>, streaming and atomically: each tensor is read by range straight from its memory
/// (CPU tensors through their data pointer, with no copy of the tensor or of the model; CUDA tensors copied to the host
/// in pieces of at most 8 MiB), encrypted into a temporary file beside <c>path</c> that is renamed over it only when
/// complete. Every check (dtypes, devices, names, keys, options) is made before anything is written: a refused call
/// leaves no file.
/// </summary>
/// <remarks>
/// <para>Non-contiguous tensors (a transposed or strided view) and tensors with a lazy conjugate/negative bit are
/// written as their logical values: one contiguous copy of that tensor (on its own device) is made when the writer
/// reaches it and released as soon as its last byte is written.</para>
/// <para>The tensors must not be modified (in place, resized or <c>set_</c>) while a save runs, on any thread or CUDA
/// stream: the file would then hold a mixture of old and new values (still a valid, signed file). Queued CUDA work
/// that writes a tensor must be finished first (e.g. <c>torch.cuda.synchronize()</c>): the pieces are copied from
/// the writer's worker threads, on their current (default) streams. Their memory is kept alive for the whole call (each tensor is held through a handle of the saver's own on the same
/// storage), so a caller that disposes its tensors meanwhile does not free memory that is being read.</para>
/// </remarks>
public static class TorchSaver
{
    /// <summary>The largest piece of a CUDA tensor copied to the host at once.</summary>
    public const int DevicePieceBytes = 8 << 20;

    /// <summary>
    /// Writes <paramref name="tensors"/> to <paramref name="path"/> with <paramref name="options"/> (keys, format
    /// version, chunk size, partial encryption, policy, metadata); without keys the file is plain safetensors.
    /// </summary>
    /// <param name="tensors">Name to tensor (CPU or CUDA, strided, of a dtype <see cref="DtypeOf"/> maps). Not disposed; not modified.</param>
    /// <param name="path">The output file, replaced atomically when complete.</param>
    /// <param name="options">How the file is written (<c>new WriterOptions()</c> for a plain file).</param>
    /// <param name="progress">Progress, reported after each written window of data.</param>
    /// <param name="cancellationToken">Cancels the save; the target is then left untouched.</param>
    /// <exception cref="NotSupportedException">A tensor's dtype has no safetensors dtype, or it is sparse, quantized or on an unsupported device (the message names the tensor).</exception>
    /// <exception cref="ArgumentException">A tensor is null or disposed.</exception>
    /// <exception cref="CryptoTensorsException">The writer refused the names or options (duplicate or reserved name, keys, chunk size).</exception>
    public static void Save(IReadOnlyDictionary<string, Tensor> tensors, string path, WriterOptions options,
        IProgress<TensorProgress>? progress = null, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(tensors);
        ArgumentException.ThrowIfNullOrEmpty(path);
        ArgumentNullException.ThrowIfNull(options);
        TorchRuntime.EnsureInitialized();
        var sources = new List<TorchTensorSource>(tensors.Count);
        try
        {
            foreach (var (name, tensor) in tensors) sources.Add(new TorchTensorSource(name, tensor, staged: ForceStagedCopy));
            CryptoTensorsWriter.Write(path, sources, options, progress, cancellationToken);
        }
        finally
        {
            foreach (var s in sources) s.Dispose();
        }
    }

    /// <summary>
    /// Writes <paramref name="module"/>'s state dict (its parameters and persistent buffers, named as
    /// <c>state_dict()</c> names them) to <paramref name="path"/>, as <see cref="Save"/> does; it loads back with
    /// <see cref="TorchLoader.LoadStateDict"/>. A tensor shared under two names (tied weights) is written under each.
    /// </summary>
    /// <param name="module">The module; not modified.</param>
    /// <param name="path">The output file, replaced atomically when complete.</param>
    /// <param name="options">How the file is written (<c>new WriterOptions()</c> for a plain file).</param>
    /// <param name="progress">Progress, reported after each written window of data.</param>
    /// <param name="cancellationToken">Cancels the save; the target is then left untouched.</param>
    public static void SaveStateDict(nn.Module module, string path, WriterOptions options,
        IProgress<TensorProgress>? progress = null, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(module);
        TorchRuntime.EnsureInitialized();
        // state_dict() hands out the module's own tensors (not copies): they are read, never disposed, here.
        Save(module.state_dict(), path, options, progress, cancellationToken);
    }

    /// <summary>
    /// The safetensors dtype of a TorchSharp scalar type (the inverse of <see cref="TorchLoader.ScalarTypeOf"/>); throws
    /// <see cref="NotSupportedException"/> naming the tensor for ComplexFloat64 (safetensors has no complex128) and the
    /// quantized types.
    /// </summary>
    public static Dtype DtypeOf(ScalarType type, string tensor = "") => type switch
    {
        ScalarType.Bool => Dtype.BOOL,
        ScalarType.Byte => Dtype.U8,
        ScalarType.Int8 => Dtype.I8,
        ScalarType.Int16 => Dtype.I16,
        ScalarType.Int32 => Dtype.I32,
        ScalarType.Int64 => Dtype.I64,
        ScalarType.Float16 => Dtype.F16,
        ScalarType.BFloat16 => Dtype.BF16,
        ScalarType.Float32 => Dtype.F32,
        ScalarType.Float64 => Dtype.F64,
        ScalarType.ComplexFloat32 => Dtype.C64,
        ScalarType.ComplexFloat64 => throw new NotSupportedException($"tensor '{tensor}': dtype ComplexFloat64 (complex128) has no safetensors dtype (safetensors has C64 only); convert it, e.g. to ComplexFloat32, or split it into real and imaginary Float64 tensors"),
        ScalarType.QInt8 or ScalarType.QUInt8 or ScalarType.QInt32 => throw new NotSupportedException($"tensor '{tensor}': quantized dtype {type} has no safetensors dtype; dequantize it, or save its integer representation and its scale and zero point as tensors"),
        _ => throw new NotSupportedException($"tensor '{tensor}': TorchSharp dtype {type} has no safetensors dtype"),
    };

    /// <summary>Tests only: read CPU tensors through the CUDA path (pieces copied through <c>.cpu()</c> of narrows of the flattened tensor).</summary>
    internal static bool ForceStagedCopy { get; set; }

    /// <summary>Tests only: the piece size of the staged path (default <see cref="DevicePieceBytes"/>).</summary>
    internal static int StagedPieceBytes { get; set; } = DevicePieceBytes;

    /// <summary>
    /// A tensor read by range for the writer. It holds its own handle on the caller's storage (a detached alias), so the
    /// memory stays alive even if the caller disposes its tensor during the save; disposed by <see cref="Save"/>.
    /// </summary>
    private sealed class TorchTensorSource : TensorSource, IDisposable
    {
        private readonly Tensor _alias;
        private readonly bool _onCpu;
        private readonly bool _needsCopy;
        private readonly bool _staged;
        private readonly int _elementSize;
        private readonly Lock _gate = new();
        private Tensor? _contiguous;
        private long _served;
        private bool _disposed;

        public TorchTensorSource(string name, Tensor tensor, bool staged)
            : base(name, Check(name, tensor), tensor.shape.Select(d => checked((ulong)d)).ToArray())
        {
            _onCpu = tensor.device_type == DeviceType.CPU;
            _staged = staged || !_onCpu;
            _needsCopy = !tensor.is_contiguous() || tensor.is_conj() || tensor.is_neg();
            _elementSize = checked((int)tensor.element_size());
            if (_elementSize != Dtype.BitSize() / 8)
                throw new InvalidOperationException($"tensor '{name}': TorchSharp reports {_elementSize}-byte elements for {tensor.dtype}, safetensors {Dtype.Name()} has {Dtype.BitSize() / 8}");
            if (tensor.numel() * _elementSize != ByteLength)
                throw new InvalidOperationException($"tensor '{name}': {tensor.numel()} elements of {_elementSize} bytes do not make the {ByteLength} bytes of its shape");
            // Our own handle on the same storage: no copy, and the storage lives until we dispose it.
            _alias = tensor.detach();
        }

        /// <summary>Checks what can be checked before anything is allocated and returns the tensor's safetensors dtype.</summary>
        private static Dtype Check(string name, Tensor tensor)
        {
            ArgumentNullException.ThrowIfNull(name);
            if (tensor is null) throw new ArgumentException($"tensor '{name}' is null", nameof(tensor));
            if (tensor.IsInvalid) throw new ArgumentException($"tensor '{name}' has been disposed", nameof(tensor));
            var dtype = DtypeOf(tensor.dtype, name);
            if (tensor.is_sparse) throw new NotSupportedException($"tensor '{name}' is sparse: safetensors holds dense tensors (call to_dense() first)");
            if (tensor.device_type is not (DeviceType.CPU or DeviceType.CUDA))
                throw new NotSupportedException($"tensor '{name}' is on device type {tensor.device_type}: CPU and CUDA tensors can be saved");
            return dtype;
        }

        public override void Read(long offset, Span<byte> destination)
        {
            if (destination.IsEmpty) return;
            if (offset < 0 || offset + destination.Length > ByteLength) throw new ArgumentOutOfRangeException(nameof(offset));
            if (!_needsCopy)
            {
                Copy(_alias, offset, destination);
                return;
            }
            var contiguous = Acquire();
            Copy(contiguous, offset, destination);
            Release(destination.Length);
        }

        private void Copy(Tensor source, long offset, Span<byte> destination)
        {
            if (_staged) CopyStaged(source, offset, destination);
            else CopyHost(source, offset, destination);
        }

        /// <summary>A CPU tensor's bytes, straight from its memory (data pointer read per call, storage offset included).</summary>
        private static unsafe void CopyHost(Tensor source, long offset, Span<byte> destination)
        {
            var p = NativeMethods.THSTensor_data(source.Handle);
            if (p == IntPtr.Zero) throw new InvalidOperationException("TorchSharp returned no data pointer for a non-empty tensor");
            new ReadOnlySpan<byte>((byte*)p + offset, destination.Length).CopyTo(destination);
        }

        public void Dispose()
        {
            lock (_gate)
            {
                if (_disposed) return;
                _disposed = true;
                _contiguous?.Dispose();
                _contiguous = null;
                _alias.Dispose();
            }
        }

        /// <summary>The tensor's contiguous copy, made by the first reader and shared by the others.</summary>
        private Tensor Acquire()
        {
            lock (_gate)
            {
                ObjectDisposedException.ThrowIf(_disposed, this);
                return _contiguous ??= MakeContiguous(_alias);
            }
        }

        /// <summary>Counts bytes served; the copy is released once every byte has been read (each range is read once).</summary>
        private void Release(int bytes)
        {
            lock (_gate)
            {
                _served += bytes;
                if (_served < ByteLength) return;
                _contiguous?.Dispose();
                _contiguous = null;
                _served = 0;
            }
        }

        /// <summary>
        /// Device to host in pieces of at most <see cref="StagedPieceBytes"/>: each piece is a narrow of the flattened
        /// (contiguous) tensor covering the whole elements that hold the range's bytes, copied with <c>.cpu()</c>.
        /// </summary>
        private void CopyStaged(Tensor source, long offset, Span<byte> destination)
        {
            var es = (long)_elementSize;
            var pieceElements = Math.Max(1, StagedPieceBytes / es);
            using var flat = source.view(-1);
            long done = 0;
            while (done < destination.Length)
            {
                var start = offset + done;
                var first = start / es;
                var end = Math.Min(offset + destination.Length, (first + pieceElements) * es);
                var last = (end + es - 1) / es;
                using var piece = flat.narrow(0, first, last - first);
                using var host = piece.cpu();
                var bytes = HostSpan(host, checked((int)((last - first) * es)));
                var n = (int)(end - start);
                bytes.Slice((int)(start - first * es), n).CopyTo(destination.Slice((int)done, n));
                done += n;
            }
        }

        private static Tensor MakeContiguous(Tensor t)
        {
            var owned = new List<Tensor>();
            try
            {
                var x = t;
                if (x.is_conj()) owned.Add(x = x.resolve_conj());
                if (x.is_neg()) owned.Add(x = x.resolve_neg());
                if (!x.is_contiguous()) owned.Add(x = x.contiguous());
                if (owned.Count == 0) owned.Add(x = x.alias());
                owned.RemoveAt(owned.Count - 1);
                return x;
            }
            finally
            {
                foreach (var o in owned) o.Dispose();
            }
        }
    }

    /// <summary>The bytes of a contiguous CPU tensor, as a span over its memory.</summary>
    private static unsafe Span<byte> HostSpan(Tensor t, int length)
    {
        if (length == 0) return [];
        var p = NativeMethods.THSTensor_data(t.Handle);
        if (p == IntPtr.Zero) throw new InvalidOperationException("TorchSharp returned no data pointer for a non-empty tensor");
        return new Span<byte>((void*)p, length);
    }

    private static partial class NativeMethods
    {
        [DllImport("LibTorchSharp")]
        internal static extern IntPtr THSTensor_data(IntPtr tensor);
    }
}
