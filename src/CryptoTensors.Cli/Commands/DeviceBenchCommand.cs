using System.Diagnostics;
using System.Globalization;
using System.Runtime.CompilerServices;
using System.Text.Encodings.Web;
using System.Text.Json;
using CryptoTensors.Gpu.Devices;
using CryptoTensors.Gpu.Devices.Cuda;
using CryptoTensors.Gpu.Devices.Staging;
using CryptoTensors.Gpu.Keys;
using CryptoTensors.Gpu.Loading.Native;
using CryptoTensors.Gpu.Reading;
using CryptoTensors.Gpu.Workloads;
using CryptoTensors.Gpu.Writing;

namespace CryptoTensors.Cli.Commands;

/// <summary>
/// <c>ctensors bench --device cuda:N</c>: in one run, the pinned host-to-device copy bandwidth (the limit), the
/// plain file to device, the encrypted (v2) file to device through the staging ring, and the same through
/// TorchSharp and ILGPU, each in GB/s and as % of the limit, with the peak host RSS of the encrypted load.
/// TorchSharp and ILGPU are touched only here, in methods of their own, so the CPU paths never load them.
/// </summary>
internal static unsafe class DeviceBenchCommand
{
    public static int Run(CliIO io, string workload, string deviceName, bool asJson, string? dirOption, int repeat, string decryptOn = "both")
    {
        if (deviceName == "cpu-ilgpu") return IlgpuCpuBench.Run(io, workload, asJson, dirOption, repeat, decryptOn);
        var ordinal = ParseDevice(deviceName);
        using var device = CudaDevice.Open(ordinal);
        var dir = dirOption ?? Path.Combine(Path.GetTempPath(), "ctensors-gpubench-" + Environment.ProcessId.ToString(CultureInfo.InvariantCulture));
        Directory.CreateDirectory(dir);
        var log = asJson ? TextWriter.Null : io.Out;
        try
        {
            using var files = BenchFiles.For(workload);
            var (tensors, bytes) = (files.Tensors, files.Bytes);
            log.WriteLine($"workload {workload}: {tensors.Count} tensors, {bytes:N0} bytes; {device}; {Environment.ProcessorCount} cores");
            files.Write(dir);
            var (plain, v2, keys, noKeys) = (files.Plain, files.V2, files.Keys, files.NoKeys);

            var (limit, registerMs) = PinnedCopyLimit(device, log);
            var options = new DeviceLoadOptions();
            using var ring = StagingRing.Allocate(Math.Max(4, 4 * options.MaxDegreeOfParallelism), 2 << 20);
            var withRing = options with { Ring = ring };
            log.WriteLine($"staging ring: {ring.SlotCount} x {ring.SlotBytes >> 20} MiB = {ring.Length >> 20} MiB (CUDA-registered: {ring.Buffer.IsCudaRegistered})");

            double Load(string path, ReaderOptions ro)
            {
                var sw = Stopwatch.StartNew();
                using var r = CryptoTensorsReader.Open(path, ro);
                using var m = DeviceLoader.Load(r, device, withRing);
                return sw.Elapsed.TotalSeconds;
            }
            var plainS = LoadTiming.Best(repeat, () => Load(plain, noKeys));
            GC.Collect(2, GCCollectionMode.Forced, blocking: true, compacting: true);
            BenchCommand.ResetPeakRss();
            var rssBefore = BenchCommand.ReadStatus("VmRSS:");
            var encS = LoadTiming.Best(repeat, () => Load(v2, keys));
            var peak = BenchCommand.ReadStatus("VmHWM:");

            var r = new Dictionary<string, object>
            {
                ["workload"] = workload,
                ["device"] = device.ToString(),
                ["tensor_bytes"] = bytes,
                ["tensors"] = tensors.Count,
                ["cores"] = Environment.ProcessorCount,
                ["ring_bytes"] = ring.Length,
                ["pinned_copy_gbps"] = limit,
                ["cuda_register_ms"] = registerMs,
                ["cuda_register_bytes"] = 256L << 20,
                ["plain_to_device_gbps"] = BenchCommand.Gbps(bytes, plainS),
                ["encrypted_to_device_gbps"] = BenchCommand.Gbps(bytes, encS),
                ["plain_percent_of_limit"] = Percent(bytes, plainS, limit),
                ["encrypted_percent_of_limit"] = Percent(bytes, encS, limit),
                ["ratio_encrypted_over_plain"] = Math.Round(encS / plainS, 3),
                ["peak_host_rss_bytes"] = peak ?? -1,
                ["rss_before_load_bytes"] = rssBefore ?? -1,
                ["peak_host_rss_over_ring_plus_baseline"] = peak is { } p && rssBefore is { } b ? Math.Round((double)(p - b) / ring.Length, 3) : -1,
            };
            AddOptional(r, "torchsharp", bytes, limit, () => TorchSharpLoad(v2, keys, ordinal, repeat, withRing));
            // ILGPU: the plain file, and the encrypted one decrypted on the host (into the ring) and on the device (ciphertext
            // through the ring, the AES-GCM kernels in device memory), each with the host CPU time it used.
            AddOptional(r, "ilgpu_plain", bytes, limit, () => IlgpuLoad(plain, noKeys, ordinal, repeat, withRing, r, "ilgpu_plain"));
            if (decryptOn is "cpu" or "both")
                AddOptional(r, "ilgpu", bytes, limit, () => IlgpuLoad(v2, keys, ordinal, repeat, withRing with { DecryptOn = DecryptSite.Cpu }, r, "ilgpu"));
            if (decryptOn is "gpu" or "both")
                AddOptional(r, "ilgpu_gpu_decrypt", bytes, limit, () => IlgpuLoad(v2, keys, ordinal, repeat, withRing with { DecryptOn = DecryptSite.Gpu }, r, "ilgpu_gpu_decrypt"));

            if (asJson) io.Out.WriteLine(JsonSerializer.Serialize(r, new JsonSerializerOptions { Encoder = JavaScriptEncoder.UnsafeRelaxedJsonEscaping }));
            else foreach (var (k, v) in r) io.Out.WriteLine($"{k,-36} {Convert.ToString(v, CultureInfo.InvariantCulture)}");
            return 0;
        }
        finally
        {
            if (dirOption is null) Directory.Delete(dir, recursive: true);
        }
    }

    internal static int ParseDevice(string name)
    {
        if (name.StartsWith("cuda", StringComparison.Ordinal))
        {
            var rest = name[4..];
            if (rest.Length == 0) return 0;
            if (rest[0] == ':' && int.TryParse(rest[1..], NumberStyles.None, CultureInfo.InvariantCulture, out var n)) return n;
        }
        throw new ArgumentException($"--device must be cuda, cuda:N or cpu-ilgpu, not '{name}'");
    }

    private static double Percent(long bytes, double seconds, double limit) => Math.Round(100 * bytes / seconds / 1e9 / limit, 1);

    private static void AddOptional(Dictionary<string, object> r, string name, long bytes, double limit, Func<double> run)
    {
        try
        {
            var s = run();
            r[$"{name}_gbps"] = BenchCommand.Gbps(bytes, s);
            r[$"{name}_percent_of_limit"] = Percent(bytes, s, limit);
        }
        catch (Exception e) when (e is InvalidOperationException or NotSupportedException or DllNotFoundException or TypeInitializationException or CudaException)
        {
            r[$"{name}_skipped"] = e.Message.Split('\n')[0];
        }
    }

    /// <summary>
    /// Synchronous <c>cuMemcpyHtoD</c> of 256 MiB from registered page-locked memory: the best of 5. The registration
    /// itself (<c>cuMemHostRegister</c> of the 256 MiB, touched and locked already) is timed too: what a host load pays
    /// when asked to register its buffer (<see cref="Gpu.Loading.LoadOptions.RegisterWithCuda"/>, off by default).
    /// </summary>
    private static (double Gbps, double RegisterMs) PinnedCopyLimit(CudaDevice device, TextWriter log)
    {
        const long size = 256L << 20;
        using var host = PinnedHostBuffer.Allocate(size, HostAllocationFlags.Default);
        using var dev = device.Allocate(size);
        device.MakeCurrent();
        var api = CudaNativeMethods.Driver;
        var sw = Stopwatch.StartNew();
        CudaNativeMethods.Check(api.cuMemHostRegister((void*)host.Pointer, (nuint)size, CudaNativeMethods.MemHostRegisterPortable), "cuMemHostRegister_v2");
        var registerMs = Math.Round(sw.Elapsed.TotalMilliseconds, 3);
        try
        {
            var best = double.MaxValue;
            for (var i = 0; i < 5; i++)
            {
                sw.Restart();
                dev.CopyFromHost(0, new ReadOnlySpan<byte>((void*)host.Pointer, (int)size));
                best = Math.Min(best, sw.Elapsed.TotalSeconds);
            }
            var gbps = Math.Round(size / best / 1e9, 3);
            log.WriteLine($"cuMemHostRegister of 256 MiB: {registerMs} ms; pinned cuMemcpyHtoD (256 MiB): {gbps} GB/s");
            return (gbps, registerMs);
        }
        finally
        {
            device.MakeCurrent();
            CudaNativeMethods.Check(api.cuMemHostUnregister((void*)host.Pointer), "cuMemHostUnregister");
        }
    }

    [MethodImpl(MethodImplOptions.NoInlining)]
    private static double TorchSharpLoad(string path, ReaderOptions keys, int ordinal, int repeat, DeviceLoadOptions options)
    {
        Gpu.TorchSharp.TorchRuntime.EnsureInitialized();
        var device = new TorchSharp.torch.Device(TorchSharp.DeviceType.CUDA, ordinal);
        return LoadTiming.Best(repeat, () =>
        {
            var sw = Stopwatch.StartNew();
            var loaded = Gpu.TorchSharp.TorchLoader.LoadToTorch(path, device, keys, options);
            var s = sw.Elapsed.TotalSeconds;
            foreach (var t in loaded.Values) t.Dispose();
            return s;
        });
    }

    [MethodImpl(MethodImplOptions.NoInlining)]
    private static double IlgpuLoad(string path, ReaderOptions keys, int ordinal, int repeat, DeviceLoadOptions options, Dictionary<string, object> report, string name)
    {
        using var context = ILGPU.Context.Create(b => ILGPU.Runtime.Cuda.CudaContextExtensions.Cuda(b));
        var devices = ILGPU.Runtime.Cuda.CudaContextExtensions.GetCudaDevices(context);
        if (devices.Count <= ordinal) throw new NotSupportedException($"ILGPU finds no CUDA device {ordinal}");
        using var accelerator = devices[ordinal].CreateAccelerator(context);
        return IlgpuCpuBench.TimedLoads(accelerator, path, keys, repeat, options, report, name);
    }
}
