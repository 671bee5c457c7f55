using System.Diagnostics;
using System.Globalization;
using System.Runtime.CompilerServices;
using System.Security.Cryptography;
using System.Text.Encodings.Web;
using System.Text.Json;
using CryptoTensors.Gpu.Devices;
using CryptoTensors.Gpu.ILGPU;
using CryptoTensors.Gpu.Keys;
using CryptoTensors.Gpu.Reading;
using CryptoTensors.Gpu.Workloads;
using CryptoTensors.Gpu.Writing;
using ILGPU;
using ILGPU.Runtime;
using ILGPU.Runtime.CPU;

namespace CryptoTensors.Cli.Commands;

/// <summary>
/// <c>ctensors bench --device cpu-ilgpu</c>: the device AES-GCM kernels and the ILGPU loads (plain, host decrypt, device
/// decrypt) on ILGPU's CPU accelerator. The kernels run there as .NET code on the host's cores, so the rates are a
/// sanity figure (the kernels work end to end, and what one launch costs), never a GPU rate. Also the timing helpers the
/// CUDA bench uses for its ILGPU rows (best wall time and the host CPU time per load).
/// </summary>
internal static class IlgpuCpuBench
{
    public static int Run(CliIO io, string workload, bool asJson, string? dirOption, int repeat, string decryptOn)
    {
        var dir = dirOption ?? Path.Combine(Path.GetTempPath(), "ctensors-ilgpubench-" + Environment.ProcessId.ToString(CultureInfo.InvariantCulture));
        Directory.CreateDirectory(dir);
        var log = asJson ? TextWriter.Null : io.Out;
        try
        {
            using var context = Context.Create(b => b.CPU());
            using var accelerator = context.CreateCPUAccelerator(0);
            using var files = BenchFiles.For(workload);
            var (tensors, bytes) = (files.Tensors, files.Bytes);
            log.WriteLine($"workload {workload}: {tensors.Count} tensors, {bytes:N0} bytes; ILGPU CPU accelerator (kernels as .NET code: a sanity figure, not a GPU rate); {Environment.ProcessorCount} cores");
            files.Write(dir);
            var (plain, v2, keys, noKeys) = (files.Plain, files.V2, files.Keys, files.NoKeys);

            var r = new Dictionary<string, object>
            {
                ["workload"] = workload,
                ["device"] = "cpu-ilgpu",
                ["tensor_bytes"] = bytes,
                ["cores"] = Environment.ProcessorCount,
                ["note"] = "ILGPU CPU accelerator: kernel rates are a sanity figure, not a GPU rate",
            };
            var (kernelGbps, kernelBytes) = KernelRate(accelerator);
            r["kernel_decrypt_gbps"] = kernelGbps;
            r["kernel_bytes"] = kernelBytes;
            r["ilgpu_plain_gbps"] = BenchCommand.Gbps(bytes, TimedLoads(accelerator, plain, noKeys, repeat, new DeviceLoadOptions(), r, "ilgpu_plain"));
            if (decryptOn is "cpu" or "both")
                r["ilgpu_gbps"] = BenchCommand.Gbps(bytes, TimedLoads(accelerator, v2, keys, repeat, new DeviceLoadOptions { DecryptOn = DecryptSite.Cpu }, r, "ilgpu"));
            if (decryptOn is "gpu" or "both")
                r["ilgpu_gpu_decrypt_gbps"] = BenchCommand.Gbps(bytes, TimedLoads(accelerator, v2, keys, repeat, new DeviceLoadOptions { DecryptOn = DecryptSite.Gpu }, r, "ilgpu_gpu_decrypt"));
            if (asJson) io.Out.WriteLine(JsonSerializer.Serialize(r, new JsonSerializerOptions { Encoder = JavaScriptEncoder.UnsafeRelaxedJsonEscaping }));
            else foreach (var (k, v) in r) io.Out.WriteLine($"{k,-36} {Convert.ToString(v, CultureInfo.InvariantCulture)}");
            return 0;
        }
        finally
        {
            if (dirOption is null) Directory.Delete(dir, recursive: true);
        }
    }

    /// <summary>
    /// Best wall time of <paramref name="repeat"/> ILGPU loads; the host CPU time per load (all threads, averaged) goes to
    /// <c>{name}_host_cpu_s</c> and where decryption ran to <c>{name}_decrypted_on</c>.
    /// </summary>
    [MethodImpl(MethodImplOptions.NoInlining)]
    public static double TimedLoads(Accelerator accelerator, string path, ReaderOptions keys, int repeat, DeviceLoadOptions options, Dictionary<string, object> report, string name)
    {
        var process = Process.GetCurrentProcess();
        process.Refresh();
        var cpuBefore = process.TotalProcessorTime;
        string? site = null;
        var best = LoadTiming.Best(repeat, () =>
        {
            var sw = Stopwatch.StartNew();
            using var r = CryptoTensorsReader.Open(path, keys);
            using var m = IlgpuLoader.Load(accelerator, r, options);
            site = m.DecryptedOn?.ToString().ToLowerInvariant() ?? "none";
            return sw.Elapsed.TotalSeconds;
        });
        process.Refresh();
        report[$"{name}_host_cpu_s"] = Math.Round((process.TotalProcessorTime - cpuBefore).TotalSeconds / repeat, 4);
        report[$"{name}_decrypted_on"] = site ?? "none";
        return best;
    }

    /// <summary>The kernels alone: 64 chunks of 64 KiB (AES-256-GCM, BCL-encrypted) in one launch, checked; GB/s of the best of 3.</summary>
    private static (double Gbps, long Bytes) KernelRate(Accelerator accelerator)
    {
        const int chunks = 64, chunk = 64 << 10;
        var key = RandomNumberGenerator.GetBytes(32);
        var plain = RandomNumberGenerator.GetBytes(chunks * chunk);
        var data = new byte[plain.Length];
        var items = new GcmWorkItem[chunks];
        using (var aes = new AesGcm(key, 16))
        {
            Span<byte> nonce = stackalloc byte[12], tag = stackalloc byte[16];
            for (var i = 0; i < chunks; i++)
            {
                RandomNumberGenerator.Fill(nonce);
                aes.Encrypt(nonce, plain.AsSpan(i * chunk, chunk), data.AsSpan(i * chunk, chunk), tag);
                items[i] = GpuAesGcm.Item((long)i * chunk, chunk, 0, nonce, tag);
            }
        }
        using var gcm = new GpuAesGcm(accelerator);
        using var buffer = accelerator.Allocate1D<byte>(data.Length);
        var best = double.MaxValue;
        for (var run = 0; run < 3; run++)
        {
            buffer.CopyFromCPU(data);
            var sw = Stopwatch.StartNew();
            var status = gcm.Decrypt(buffer.View, items, key, 32);
            best = Math.Min(best, sw.Elapsed.TotalSeconds);
            if (status.Any(s => s != GcmKernels.Authenticated) || !buffer.GetAsArray1D().AsSpan().SequenceEqual(plain))
                throw new InvalidOperationException("the device AES-GCM kernels returned wrong plaintext on the CPU accelerator");
        }
        CryptographicOperations.ZeroMemory(key);
        return (BenchCommand.Gbps(data.Length, best), data.Length);
    }
}
