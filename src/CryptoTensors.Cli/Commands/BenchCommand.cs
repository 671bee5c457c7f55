using System.CommandLine;
using System.Diagnostics;
using System.Globalization;
using System.Runtime.InteropServices;
using System.Text.Encodings.Web;
using System.Text.Json;
using CryptoTensors.Gpu.Crypto;
using CryptoTensors.Gpu.Keys;
using CryptoTensors.Gpu.Loading;
using CryptoTensors.Gpu.Reading;
using CryptoTensors.Gpu.Workloads;
using CryptoTensors.Gpu.Writing;

namespace CryptoTensors.Cli.Commands;

/// <summary>
/// <c>ctensors bench</c>: whole-load measurements of one workload in one run — the machine's decrypt ceiling,
/// plain / encrypted (v2 and v1) loads into reused and into fresh memory, peak RSS, per-tensor cost and encrypt speed.
/// </summary>
internal static unsafe class BenchCommand
{
    public static Command Create(CliIO io)
    {
        var workload = WorkloadOptions.Workload();
        var json = new Option<bool>("--json") { Description = "Print one JSON object" };
        var dir = WorkloadOptions.Dir();
        var repeat = WorkloadOptions.Repeat("Runs of each load (at least; loads into reused memory run on until 0.25 s have passed, at most 200); the best is reported");
        var readPath = WorkloadOptions.ReadPath();
        var device = new Option<string?>("--device") { Description = "cuda:N: measure loads to that GPU instead (pinned-copy limit, plain, encrypted, TorchSharp, ILGPU); cpu-ilgpu: the device AES-GCM kernels and ILGPU loads on ILGPU's CPU accelerator (a sanity figure, not a GPU rate)" };
        var decryptOn = new Option<string>("--decrypt-on") { Description = "With --device: the ILGPU encrypted loads to measure: cpu (host decrypts into the ring), gpu (ciphertext through the ring, device kernels decrypt), or both (default)", DefaultValueFactory = _ => "both" };
        decryptOn.AcceptOnlyFromAmong("cpu", "gpu", "both");
        var remoteKeys = new RemoteKeyOptions();
        var cmd = new Command("bench", "Measure plain vs encrypted loads of a deterministic workload on this machine (with --key-url: under the key server's master key, fetched through the provider).")
        {
            workload, json, dir, repeat, readPath, device, decryptOn,
        };
        remoteKeys.AddTo(cmd);
        cmd.SetAction(r => io.Guard(() =>
        {
            using var remote = remoteKeys.ProviderOf(r);
            if (r.GetValue(device) is { } d)
            {
                if (remote is not null) throw new ArgumentException("--key-url applies to the CPU bench only (not with --device)");
                return DeviceBenchCommand.Run(io, r.GetValue(workload)!, d, r.GetValue(json), r.GetValue(dir), Math.Max(1, r.GetValue(repeat)), r.GetValue(decryptOn)!);
            }
            var first = remoteKeys.FirstUrl(r);
            if (remote is not null && first is null) throw new ArgumentException("bench takes its master key from the first --key-url; give one");
            return Run(io, r.GetValue(workload)!, r.GetValue(json), r.GetValue(dir), Math.Max(1, r.GetValue(repeat)), r.GetValue(readPath),
                remote is null ? null : (remote, first!));
        }));
        return cmd;
    }

    /// <summary>
    /// The first master key the key server at <paramref name="url"/> licenses to this token, and how long the cold
    /// fetch (kid list and key) and a cached lookup took.
    /// </summary>
    private static (MasterKey Key, double FetchMs, double CachedUs) RemoteMasterKey(HttpsKeyProvider remote, Uri url)
    {
        var sw = Stopwatch.StartNew();
        var kids = remote.ListKidsAsync(url).GetAwaiter().GetResult();
        foreach (var kid in kids)
        {
            if (remote.GetMasterKey(null, kid) is not { } key) continue;
            var fetch = sw.Elapsed.TotalMilliseconds;
            sw.Restart();
            remote.GetMasterKey(null, kid)?.Dispose();
            return (key, fetch, sw.Elapsed.TotalMicroseconds);
        }
        throw new CliException((int)Gpu.ErrorKind.Key, $"the key server {url.Authority} licenses no master key to this token (kids: {(kids.Count == 0 ? "none" : string.Join(", ", kids))})");
    }

    private static int Run(CliIO io, string workload, bool asJson, string? dirOption, int repeat, ReadPath readPath, (HttpsKeyProvider Provider, Uri Url)? remote = null)
    {
        readPath = ReadPaths.Resolve(readPath);
        var dir = dirOption ?? Path.Combine(Path.GetTempPath(), "ctensors-bench-" + Environment.ProcessId.ToString(CultureInfo.InvariantCulture));
        Directory.CreateDirectory(dir);
        var log = asJson ? TextWriter.Null : io.Out;
        try
        {
            var tensors = DemoWorkloads.Create(workload);
            var bytes = tensors.Sum(t => t.ByteLength);
            var cores = Environment.ProcessorCount;
            log.WriteLine($"workload {workload}: {tensors.Count} tensors, {bytes:N0} bytes; {cores} cores; {readPath}");
            var fetched = remote is { } rk ? RemoteMasterKey(rk.Provider, rk.Url) : default;
            using var master = remote is null ? MasterKey.Generate(kid: "bench-enc") : fetched.Key;
            using var signer = SigningKey.Generate("bench-sign");
            var plain = Path.Combine(dir, "plain.safetensors");
            CryptoTensorsWriter.Write(plain, tensors, new WriterOptions());
            var v2 = Path.Combine(dir, "v2.cryptotensors");
            var encryptFirst = Seconds(() => EncryptCopy(plain, v2, new WriterOptions { MasterKey = master, SigningKey = signer }));
            var v1 = Path.Combine(dir, "v1.cryptotensors");
            EncryptCopy(plain, v1, new WriterOptions { MasterKey = master, SigningKey = signer, FormatVersion = 1 });

            var ceiling = Ceiling(log, cores);
            // With a key server, every encrypted load looks its master key up through the provider (its cache, as a real loader would).
            var keys = remote is { } via
                ? new ReaderOptions { VerificationKey = signer.Public, Keys = new KeyRegistry().Register(via.Provider) }
                : new ReaderOptions { MasterKey = master, VerificationKey = signer.Public, Keys = new KeyRegistry() };
            var noKeys = new ReaderOptions { Keys = new KeyRegistry() };
            var size = Math.Max(1, bytes);
            // Peak RSS of one encrypted load into fresh memory and of one encrypt, each in a child process doing only that.
            var (loadRss, encryptRss) = MeasureRss(log, dir, master, signer, plain, v2, readPath);
            var freshEncFirst = Fresh(v2, keys, size, readPath);
            var reused = (byte*)NativeMemory.AlignedAlloc((nuint)size, 4096);
            try
            {
                for (long o = 0; o < size; o += int.MaxValue) new Span<byte>(reused + o, (int)Math.Min(int.MaxValue, size - o)).Fill(1);
                var plainS = LoadTiming.Repeated(repeat, () => LoadTiming.Load(plain, noKeys, reused, readPath)).Best;
                var (encS, encFirst, encRuns) = LoadTiming.Repeated(repeat, () => LoadTiming.Load(v2, keys, reused, readPath));
                var v1S = LoadTiming.Repeated(repeat, () => LoadTiming.Load(v1, keys, reused, readPath)).Best;
                var freshPlainS = LoadTiming.Best(repeat, () => Fresh(plain, noKeys, size, readPath));
                var freshEncS = Math.Min(freshEncFirst, LoadTiming.Best(repeat - 1, () => Fresh(v2, keys, size, readPath)));
                // Encrypt (the whole atomic save: read, seal, write, fsync, rename), best of the first run and repeat - 1 more.
                var scratch = Path.Combine(dir, "encrypt-probe.cryptotensors");
                var encrypt = Math.Min(encryptFirst, LoadTiming.Best(repeat - 1, () =>
                {
                    var t = Seconds(() => EncryptCopy(plain, scratch, new WriterOptions { MasterKey = master, SigningKey = signer }));
                    File.Delete(scratch);
                    return t;
                }));

                var r = new Dictionary<string, object>
                {
                    ["workload"] = workload,
                    ["tensor_bytes"] = bytes,
                    ["tensors"] = tensors.Count,
                    ["cores"] = cores,
                    ["backend"] = AeadBackends.ActiveName(),
                    ["read_path"] = readPath.ToString(),
                    ["ceiling_gbps"] = ceiling,
                    ["plain_gbps"] = Gbps(bytes, plainS),
                    ["encrypted_gbps"] = Gbps(bytes, encS),
                    ["v1_encrypted_gbps"] = Gbps(bytes, v1S),
                    ["ratio_encrypted_over_plain"] = Math.Round(encS / plainS, 3),
                    ["percent_of_ceiling"] = Math.Round(100 * Gbps(bytes, encS) / ceiling, 1),
                    // What this machine can deliver at most: the decrypt ceiling, or reading the bytes at all (the plain load), whichever is lower.
                    ["percent_of_attainable"] = Math.Round(100 * Gbps(bytes, encS) / Math.Min(ceiling, Gbps(bytes, plainS)), 1),
                    ["fresh_plain_gbps"] = Gbps(bytes, freshPlainS),
                    ["fresh_encrypted_gbps"] = Gbps(bytes, freshEncS),
                    ["peak_rss_over_tensor_bytes"] = loadRss is { } lr ? Math.Round(lr.Peak / (double)size, 3) : -1,
                    ["peak_rss_bytes"] = loadRss?.Peak ?? -1,
                    ["peak_rss_target_bytes"] = (long)(1.05 * bytes) + (64L << 20),
                    ["process_baseline_rss_bytes"] = loadRss?.Baseline ?? -1,
                    ["encrypt_peak_rss_bytes"] = encryptRss?.Peak ?? -1,
                    ["per_tensor_us"] = Math.Round(encS * 1e6 / Math.Max(1, tensors.Count), 2),
                    // The first encrypted load of this process (after the plain ones): it also pays for compiling code, as a program's first open does.
                    ["first_load_per_tensor_us"] = Math.Round(encFirst * 1e6 / Math.Max(1, tensors.Count), 2),
                    ["encrypted_load_runs"] = encRuns,
                    ["encrypt_gbps"] = Gbps(bytes, encrypt),
                    ["key_source"] = remote is null ? "generated" : KeySources.Https,
                };
                if (remote is not null)
                {
                    r["key_fetch_ms"] = Math.Round(fetched.FetchMs, 2);
                    r["key_fetch_cached_us"] = Math.Round(fetched.CachedUs, 1);
                }
                if (asJson)
                {
                    io.Out.WriteLine(JsonSerializer.Serialize(r, new JsonSerializerOptions { Encoder = JavaScriptEncoder.UnsafeRelaxedJsonEscaping }));
                }
                else
                {
                    foreach (var (k, v) in r) io.Out.WriteLine($"{k,-28} {Convert.ToString(v, CultureInfo.InvariantCulture)}");
                    io.Out.WriteLine("(2-core figures on this VM; file in page cache; 'fresh' = new, untouched destination memory each load)");
                }
            }
            finally
            {
                NativeMemory.AlignedFree(reused);
            }
            return 0;
        }
        finally
        {
            if (dirOption is null) Directory.Delete(dir, recursive: true);
        }
    }

    /// <summary>
    /// Runs <c>rss-probe</c> twice in child processes: an encrypted load of <paramref name="v2"/> into fresh memory and
    /// an encrypt of <paramref name="plain"/>. The keys go to <paramref name="dir"/> as owner-only JWK files for the child.
    /// </summary>
    private static ((long Peak, long Baseline)? Load, (long Peak, long Baseline)? Encrypt) MeasureRss(TextWriter log, string dir,
        MasterKey master, SigningKey signer, string plain, string v2, ReadPath readPath)
    {
        const UnixFileMode Private = UnixFileMode.UserRead | UnixFileMode.UserWrite;
        var enc = Path.Combine(dir, "enc.jwk");
        var sign = Path.Combine(dir, "sign.jwk");
        var pub = Path.Combine(dir, "sign.pub.jwk");
        KeygenCommand.WriteText(enc, Jwk.Write(master), Private);
        KeygenCommand.WriteText(sign, Jwk.Write(signer), Private);
        KeygenCommand.WriteText(pub, Jwk.Write(signer.Public), Private);
        var output = Path.Combine(dir, "rss-probe.cryptotensors");
        try
        {
            var load = Probe(log, "load", "--mode", "load", "--input", v2, "--key", enc, "--verify-key", pub, "--read-path", readPath.ToString());
            var encrypt = Probe(log, "encrypt", "--mode", "encrypt", "--input", plain, "--output", output, "--key", enc, "--sign-key", sign);
            return (load, encrypt);
        }
        finally
        {
            foreach (var f in new[] { enc, sign, pub, output }) File.Delete(f);
        }
    }

    private static (long Peak, long Baseline)? Probe(TextWriter log, string what, params string[] arguments)
    {
        var (result, error) = RssProbeCommand.RunChild(arguments);
        if (result is not { } r)
        {
            log.WriteLine($"peak RSS of {what}: not measured ({error})");
            return null;
        }
        var peak = r.GetProperty("peak_rss_bytes").GetInt64();
        var baseline = r.GetProperty("baseline_rss_bytes").GetInt64();
        log.WriteLine(string.Create(CultureInfo.InvariantCulture,
            $"peak RSS of {what} in its own process: {peak / 1048576.0:F0} MiB (runtime baseline {baseline / 1048576.0:F0} MiB, tensors {r.GetProperty("tensor_bytes").GetInt64() / 1048576.0:F0} MiB)"));
        return (peak, baseline);
    }

    /// <summary>Writes an encrypted copy of the plain file <paramref name="plain"/> to <paramref name="output"/> (what <c>ctensors encrypt</c> does); returns the tensor bytes.</summary>
    internal static long EncryptCopy(string plain, string output, WriterOptions options)
    {
        using var src = CryptoTensorsReader.Open(plain, new ReaderOptions { Keys = new() });
        CryptoTensorsWriter.Write(output, src.Tensors.Select(t => TensorSource.FromReader(src, t.Name)), options);
        return src.Tensors.Sum(t => t.ByteLength);
    }

    internal static double Gbps(long bytes, double seconds) => Math.Round(bytes / seconds / 1e9, 3);

    private static double Seconds(Action a)
    {
        var sw = Stopwatch.StartNew();
        a();
        return sw.Elapsed.TotalSeconds;
    }

    private static double Fresh(string path, ReaderOptions options, long size, ReadPath readPath)
    {
        var sw = Stopwatch.StartNew();
        var fresh = (byte*)NativeMemory.AlignedAlloc((nuint)size, 4096);
        try
        {
            LoadTiming.Load(path, options, fresh, readPath);
            return sw.Elapsed.TotalSeconds;
        }
        finally
        {
            NativeMemory.AlignedFree(fresh);
        }
    }

    /// <summary>
    /// In-cache AES-256-GCM decryption (256 KiB, re-sealed between runs) with 1..cores threads on each available backend;
    /// returns the best GB/s of the active one (the one the loads use).
    /// </summary>
    private static double Ceiling(TextWriter log, int cores)
    {
        var best = 0.0;
        var active = AeadBackends.Resolve(AeadAlgorithm.Aes256Gcm);
        if (!AeadBackends.IpsecMbAvailable) log.WriteLine($"ceiling {AeadBackend.IpsecMb.Name()}: unavailable ({AeadBackends.IpsecMbUnavailableReason})");
        foreach (var backend in AeadBackends.IpsecMbAvailable ? new[] { AeadBackend.Bcl, AeadBackend.IpsecMb } : new[] { AeadBackend.Bcl })
        for (var threads = 1; threads <= cores; threads++)
        {
            var perThread = new double[threads];
            Parallel.For(0, threads, new ParallelOptions { MaxDegreeOfParallelism = threads }, i =>
            {
                using var cipher = new AeadCipher(AeadAlgorithm.Aes256Gcm, new byte[32], backend);
                var data = new byte[256 << 10];
                var nonce = new byte[12];
                var tag = new byte[16];
                cipher.Encrypt(nonce, data, data, tag);
                var copy = new byte[data.Length];
                long done = 0;
                var sw = Stopwatch.StartNew();
                while (sw.Elapsed.TotalSeconds < 0.4)
                {
                    if (!cipher.TryDecrypt(nonce, data, tag, copy)) throw new InvalidOperationException("ceiling self-check failed");
                    done += data.Length;
                }
                perThread[i] = done / sw.Elapsed.TotalSeconds / 1e9;
            });
            var total = perThread.Sum();
            log.WriteLine(string.Create(CultureInfo.InvariantCulture, $"ceiling {backend.Name()} x{threads}: {total:F2} GB/s"));
            if (backend == active) best = Math.Max(best, total);
        }
        return Math.Round(best, 3);
    }

    internal static void ResetPeakRss()
    {
        try { File.WriteAllText("/proc/self/clear_refs", "5"); }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException) { }
    }

    internal static long? ReadStatus(string key)
    {
        try
        {
            var line = File.ReadLines("/proc/self/status").FirstOrDefault(l => l.StartsWith(key, StringComparison.Ordinal));
            return line is null ? null : long.Parse(line[key.Length..].Trim().Split(' ')[0], CultureInfo.InvariantCulture) * 1024;
        }
        catch (IOException) { return null; }
    }
}
