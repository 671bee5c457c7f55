using ILGPU;
using ILGPU.Runtime;
using CryptoTensors.Gpu.Devices;
using CryptoTensors.Gpu.Reading;

namespace CryptoTensors.Gpu.ILGPU;

/// <summary>
/// Loads tensors into ILGPU <see cref="MemoryBuffer1D{T, TStride}"/>s (one per tensor) on any accelerator: the
/// same staging-ring pipeline as the CUDA driver path (decrypt into page-locked slots, asynchronous copies on
/// accelerator streams), so host memory stays at the ring's size.
/// </summary>
public static class IlgpuLoader
{
    /// <summary>Loads the selected tensors of <paramref name="reader"/> onto <paramref name="accelerator"/>.</summary>
    public static IlgpuModel Load(Accelerator accelerator, CryptoTensorsReader reader, DeviceLoadOptions? options = null, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(accelerator);
        ArgumentNullException.ThrowIfNull(reader);
        options ??= new DeviceLoadOptions();
        var tensors = Loading.LoadWorkPlan.Select(reader, options.Tensors);
        var buffers = new List<MemoryBuffer1D<byte, Stride1D.Dense>>(tensors.Count);
        try
        {
            accelerator.Bind();
            foreach (var t in tensors) buffers.Add(accelerator.Allocate1D<byte>(t.ByteLength));
            using var engine = new IlgpuCopyEngine(accelerator, buffers);
            var index = new Dictionary<string, int>(tensors.Count, StringComparer.Ordinal);
            for (var i = 0; i < tensors.Count; i++) index[tensors[i].Name] = i;
            var load = options with { Tensors = tensors.Select(t => t.Name).ToList() };
            var stats = DeviceLoader.LoadInto(reader, t => engine.AddressOf(index[t.Name]), engine, load, cancellationToken);
            return new IlgpuModel(accelerator, tensors, buffers, stats);
        }
        catch
        {
            foreach (var b in buffers) b.Dispose();
            throw;
        }
    }
}

/// <summary>Tensors in ILGPU buffers, one per tensor. Dispose frees them.</summary>
public sealed class IlgpuModel : IDisposable
{
    private readonly Dictionary<string, MemoryBuffer1D<byte, Stride1D.Dense>> _buffers;

    internal IlgpuModel(Accelerator accelerator, IReadOnlyList<TensorDescriptor> tensors, List<MemoryBuffer1D<byte, Stride1D.Dense>> buffers, StagingStatistics staging)
    {
        Accelerator = accelerator;
        Tensors = tensors;
        Staging = staging;
        _buffers = new Dictionary<string, MemoryBuffer1D<byte, Stride1D.Dense>>(tensors.Count, StringComparer.Ordinal);
        for (var i = 0; i < tensors.Count; i++) _buffers[tensors[i].Name] = buffers[i];
    }

    /// <summary>The accelerator holding the buffers.</summary>
    public Accelerator Accelerator { get; }

    /// <summary>The tensors, in load order.</summary>
    public IReadOnlyList<TensorDescriptor> Tensors { get; }

    /// <summary>What the load used on the host.</summary>
    public StagingStatistics Staging { get; }

    /// <summary>A tensor's buffer (its bytes; reinterpret with <c>View.Cast&lt;T&gt;()</c>).</summary>
    public MemoryBuffer1D<byte, Stride1D.Dense> this[string name]
        => _buffers.TryGetValue(name, out var b) ? b : throw Errors.Create(ErrorCode.TensorNotFound, "tensor not loaded", tensor: name);

    /// <summary>A tensor's elements as a typed view; the element size must divide the byte length.</summary>
    public ArrayView<T> View<T>(string name) where T : unmanaged => this[name].View.AsContiguous().Cast<T>();

    /// <summary>Frees every buffer.</summary>
    public void Dispose()
    {
        foreach (var b in _buffers.Values) b.Dispose();
    }
}
