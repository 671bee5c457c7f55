using System.Runtime.InteropServices;
using CryptoTensors.Gpu.Devices;
using CryptoTensors.Gpu.Devices.Cuda;
using CryptoTensors.Gpu.Devices.Staging;
using CryptoTensors.Gpu.Format;
using CryptoTensors.Gpu.Loading;
using CryptoTensors.Gpu.Reading;
using TorchSharp;
using static TorchSharp.torch;

namespace CryptoTensors.Gpu.TorchSharp;

/// <summary>
/// Loads CryptoTensors files into TorchSharp tensors in place: each tensor is allocated with
/// <c>torch.empty</c> on the requested device and filled through its data pointer — on CUDA by the staging-ring
/// pipeline (decrypt into page-locked slots, <c>cuMemcpyHtoDAsync</c> into the tensor, in the device's primary
/// context, which libtorch uses), on the CPU by the parallel loader straight into the tensor's memory. No
/// intermediate copy of the model is made. Call <see cref="TorchRuntime.Initialize"/> first where libtorch is not
/// on the default search path.
/// </summary>
public static class TorchLoader
{
    /// <summary>Opens <paramref name="path"/> with <paramref name="readerOptions"/> and loads every (or the selected) tensor onto <paramref name="device"/>.</summary>
    public static Dictionary<string, Tensor> LoadToTorch(string path, Device device, ReaderOptions? readerOptions = null,
        DeviceLoadOptions? options = null, CancellationToken cancellationToken = default)
    {
        using var reader = CryptoTensorsReader.Open(path, readerOptions ?? new ReaderOptions());
        return LoadToTorch(reader, device, options, cancellationToken);
    }

    /// <summary>Loads every (or the selected) tensor of <paramref name="reader"/> onto <paramref name="device"/>.</summary>
    public static Dictionary<string, Tensor> LoadToTorch(CryptoTensorsReader reader, Device device, DeviceLoadOptions? options = null,
        CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(reader);
        ArgumentNullException.ThrowIfNull(device);
        TorchRuntime.EnsureInitialized();
        options ??= new DeviceLoadOptions();
        var selected = LoadWorkPlan.Select(reader, options.Tensors);
        foreach (var t in selected) ScalarTypeOf(t.Dtype, t.Name);
        var result = new Dictionary<string, Tensor>(selected.Count, StringComparer.Ordinal);
        try
        {
            foreach (var t in selected)
                result[t.Name] = empty(t.Shape.Select(d => checked((long)d)).ToArray(), ScalarTypeOf(t.Dtype, t.Name), device);
            Fill(reader, result, options with { Tensors = selected.Select(t => t.Name).ToList() }, cancellationToken);
            return result;
        }
        catch
        {
            foreach (var x in result.Values) x.Dispose();
            throw;
        }
    }

    /// <summary>
    /// Loads an encrypted file into <paramref name="module"/>'s parameters and buffers in place (on whatever device
    /// each lives). Every name, shape and dtype is checked before any byte is written; with
    /// <paramref name="strict"/> a tensor missing on either side is refused too. Returns the names missing from
    /// the file and the file's names the module does not have.
    /// </summary>
    public static (IReadOnlyList<string> Missing, IReadOnlyList<string> Unexpected) LoadStateDict(nn.Module module, string path,
        ReaderOptions? readerOptions = null, bool strict = true, DeviceLoadOptions? options = null, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(module);
        TorchRuntime.EnsureInitialized();
        using var reader = CryptoTensorsReader.Open(path, readerOptions ?? new ReaderOptions());
        var state = module.state_dict();
        var names = reader.Tensors.Select(t => t.Name).ToHashSet(StringComparer.Ordinal);
        var missing = state.Keys.Where(k => !names.Contains(k)).Order(StringComparer.Ordinal).ToList();
        var unexpected = names.Where(n => !state.ContainsKey(n)).Order(StringComparer.Ordinal).ToList();
        if (strict && (missing.Count > 0 || unexpected.Count > 0))
            throw new ArgumentException($"state dict mismatch: missing from the file [{string.Join(", ", missing)}], not in the module [{string.Join(", ", unexpected)}]", nameof(path));
        var targets = new Dictionary<string, Tensor>(StringComparer.Ordinal);
        foreach (var t in reader.Tensors)
        {
            if (!state.TryGetValue(t.Name, out var p)) continue;
            var shape = t.Shape.Select(d => checked((long)d)).ToArray();
            if (!p.shape.SequenceEqual(shape) || p.dtype != ScalarTypeOf(t.Dtype, t.Name) || !p.is_contiguous())
                throw new ArgumentException($"tensor '{t.Name}': the file has {t.Dtype}[{string.Join(", ", shape)}], the module {p.dtype}[{string.Join(", ", p.shape)}]{(p.is_contiguous() ? "" : " (not contiguous)")}", nameof(module));
            targets[t.Name] = p;
        }
        using (no_grad())
            Fill(reader, targets, (options ?? new DeviceLoadOptions()) with { Tensors = targets.Keys.ToList() }, cancellationToken);
        return (missing, unexpected);
    }

    /// <summary>The TorchSharp scalar type of a safetensors dtype; throws <see cref="NotSupportedException"/> naming the tensor when TorchSharp has none.</summary>
    public static ScalarType ScalarTypeOf(Dtype dtype, string tensor = "") => dtype switch
    {
        Dtype.BOOL => ScalarType.Bool,
        Dtype.U8 => ScalarType.Byte,
        Dtype.I8 => ScalarType.Int8,
        Dtype.I16 => ScalarType.Int16,
        Dtype.I32 => ScalarType.Int32,
        Dtype.I64 => ScalarType.Int64,
        Dtype.F16 => ScalarType.Float16,
        Dtype.BF16 => ScalarType.BFloat16,
        Dtype.F32 => ScalarType.Float32,
        Dtype.F64 => ScalarType.Float64,
        Dtype.C64 => ScalarType.ComplexFloat32,
        _ => throw new NotSupportedException($"tensor '{tensor}': dtype {dtype} has no TorchSharp 0.107 scalar type (load it with ModelLoader or export it through DLPack instead)"),
    };

    /// <summary>Fills existing, contiguous tensors of the right size in place, grouped by device.</summary>
    private static void Fill(CryptoTensorsReader reader, IReadOnlyDictionary<string, Tensor> targets, DeviceLoadOptions options, CancellationToken cancellationToken)
    {
        foreach (var group in targets.GroupBy(kv => (kv.Value.device_type, kv.Value.device_index)))
        {
            var names = group.Select(kv => kv.Key).ToList();
            var pointers = group.ToDictionary(kv => kv.Key, kv => DataPointer(kv.Value), StringComparer.Ordinal);
            foreach (var kv in group)
            {
                var want = reader.GetTensor(kv.Key).ByteLength;
                if (kv.Value.numel() * kv.Value.element_size() != want)
                    throw Errors.Create(ErrorCode.DestinationSize, $"destination is {kv.Value.numel() * kv.Value.element_size()} bytes, tensor is {want}", tensor: kv.Key);
            }
            switch (group.Key.device_type)
            {
                case DeviceType.CPU:
                    ModelLoader.LoadInto(reader, t => new TensorDestination(pointers[t.Name], t.ByteLength),
                        new LoadOptions { Tensors = names, MaxDegreeOfParallelism = options.MaxDegreeOfParallelism, Progress = options.Progress, ReadPath = options.ReadPath }, cancellationToken);
                    break;
                case DeviceType.CUDA:
                    using (var device = CudaDevice.Open(Math.Max(0, group.Key.device_index)))
                    {
                        // The copies run on this library's own non-blocking streams, which do not wait for torch's
                        // streams. Before: wait for every operation queued in the primary context (torch's included),
                        // so nothing torch queued on these tensors (a fill, a kernel still reading memory the caching
                        // allocator handed out again) runs after or during the copies. After: LoadInto returns only
                        // once the copy streams are synchronized (on failure, once the tensors are zeroed), so torch
                        // work queued on any stream afterwards sees the loaded bytes.
                        device.Synchronize();
                        using var engine = new CudaCopyEngine(device, options.Streams);
                        DeviceLoader.LoadInto(reader, t => (ulong)pointers[t.Name], engine, options with { Tensors = names }, cancellationToken);
                    }
                    break;
                default:
                    throw new NotSupportedException($"device type {group.Key.device_type} is not supported (CPU and CUDA are)");
            }
        }
    }

    private static IntPtr DataPointer(Tensor t)
    {
        if (!t.is_contiguous()) throw new ArgumentException("tensor is not contiguous", nameof(t));
        var p = NativeMethods.THSTensor_data(t.Handle);
        if (p == IntPtr.Zero && t.numel() > 0) throw new InvalidOperationException("TorchSharp returned no data pointer for a non-empty tensor");
        return p;
    }

    /// <summary>The one entry point of libLibTorchSharp.so used directly: <c>tensor.data_ptr()</c> (storage offset included).</summary>
    private static partial class NativeMethods
    {
        [DllImport("LibTorchSharp")]
        internal static extern IntPtr THSTensor_data(IntPtr tensor);
    }
}
