using System.CommandLine;
using System.Diagnostics;
using System.Globalization;
using CryptoTensors.Gpu.Keys;
using CryptoTensors.Gpu.Loading;
using CryptoTensors.Gpu.Reading;
using CryptoTensors.Gpu.Workloads;
using CryptoTensors.Gpu.Writing;

namespace CryptoTensors.Cli.Commands;

/// <summary>
/// <c>ctensors demo</c>: generates a deterministic model, writes it plain and encrypted, loads both into the same
/// (already touched) destination memory, and prints the comparison.
/// </summary>
internal static unsafe class DemoCommand
{
    public static Command Create(CliIO io)
    {
        var workload = WorkloadOptions.Workload();
        var dir = WorkloadOptions.Dir();
        var repeat = WorkloadOptions.Repeat("Loads of each file; the best is reported");
        var readPath = WorkloadOptions.ReadPath();
        var cmd = new Command("demo", "Generate a demo model, encrypt it, load it plain and encrypted, print the comparison.") { workload, dir, repeat, readPath };
        cmd.SetAction(r => io.Guard(() => Run(io, r.GetValue(workload)!, r.GetValue(dir), Math.Max(1, r.GetValue(repeat)), r.GetValue(readPath))));
        return cmd;
    }

    private static int Run(CliIO io, string workload, string? dirOption, int repeat, ReadPath readPath)
    {
        readPath = ReadPaths.Resolve(readPath);
        var dir = dirOption ?? Path.Combine(Path.GetTempPath(), "ctensors-demo-" + Environment.ProcessId.ToString(CultureInfo.InvariantCulture));
        Directory.CreateDirectory(dir);
        try
        {
            var tensors = DemoWorkloads.Create(workload);
            var bytes = tensors.Sum(t => t.ByteLength);
            io.Out.WriteLine($"workload {workload}: {tensors.Count} tensors, {bytes:N0} bytes; {Environment.ProcessorCount} cores; files in {dir}");
            using var master = MasterKey.Generate(kid: "demo-enc");
            using var signer = SigningKey.Generate(kid: "demo-sign");
            var plain = Path.Combine(dir, workload + ".safetensors");
            var enc = Path.Combine(dir, workload + ".cryptotensors");
            var meta = new Dictionary<string, string> { ["format"] = "pt" };
            io.Out.WriteLine($"writing the plain file {plain} ...");
            var sw = Stopwatch.StartNew();
            CliProgress.Run(io, "write " + Path.GetFileName(plain), progress => CryptoTensorsWriter.Write(plain, tensors, new WriterOptions { Metadata = meta }, progress));
            var plainWrite = sw.Elapsed.TotalSeconds;
            io.Out.WriteLine($"writing the encrypted file {enc} (v2, AES-256-GCM, signed) ...");
            sw.Restart();
            CliProgress.Run(io, "write " + Path.GetFileName(enc), progress =>
                CryptoTensorsWriter.Write(enc, tensors, new WriterOptions { MasterKey = master, SigningKey = signer, Metadata = meta }, progress));
            var encWrite = sw.Elapsed.TotalSeconds;
            if (dirOption is not null) WriteKeys(io, dir, enc, master, signer);
            io.Out.WriteLine($"loading each file {repeat} times ...");

            // One destination for every load, touched once up front: the comparison is about the loader, not page faults.
            var destination = GC.AllocateUninitializedArray<byte>(checked((int)Math.Max(1, bytes)), pinned: true);
            destination.AsSpan().Fill(1);
            var keys = new ReaderOptions { MasterKey = master, VerificationKey = signer.Public, Keys = new KeyRegistry() };
            double plainLoad, encLoad;
            fixed (byte* d = destination)
            {
                var p = d;
                plainLoad = LoadTiming.Best(repeat, () => LoadTiming.Load(plain, new ReaderOptions { Keys = new KeyRegistry() }, p, readPath));
                encLoad = LoadTiming.Best(repeat, () => LoadTiming.Load(enc, keys, p, readPath));
            }

            io.Out.WriteLine();
            io.Out.WriteLine("                         seconds      GB/s");
            Row(io, "write plain", plainWrite, bytes);
            Row(io, "write encrypted (v2)", encWrite, bytes);
            Row(io, "load plain", plainLoad, bytes);
            Row(io, "load encrypted (v2)", encLoad, bytes);
            io.Out.WriteLine(string.Create(CultureInfo.InvariantCulture, $"encrypted / plain load time: {encLoad / plainLoad:F2}x"));
            io.Out.WriteLine($"(file in page cache, destination memory already touched, best of {repeat}; open + every tensor, parallel loader, {readPath}; AES-GCM backend {Gpu.Crypto.AeadBackends.ActiveName()})");
            return 0;
        }
        finally
        {
            if (dirOption is null) Directory.Delete(dir, recursive: true);
        }
    }

    /// <summary>
    /// With <c>--dir</c> the files stay, so the keys stay beside them (<c>keys/</c>, as <c>keygen</c> writes them,
    /// private keys mode 0600) and the user can go on with the encrypted file.
    /// </summary>
    private static void WriteKeys(CliIO io, string dir, string enc, MasterKey master, SigningKey signer)
    {
        var keys = Path.Combine(dir, "keys");
        Directory.CreateDirectory(keys);
        const UnixFileMode Private = UnixFileMode.UserRead | UnixFileMode.UserWrite;
        string encJwk = Path.Combine(keys, "enc.jwk"), signJwk = Path.Combine(keys, "sign.jwk"), pubJwk = Path.Combine(keys, "sign.pub.jwk");
        KeygenCommand.WriteText(encJwk, Jwk.Write(master), Private);
        KeygenCommand.WriteText(signJwk, Jwk.Write(signer), Private);
        KeygenCommand.WriteText(pubJwk, Jwk.Write(signer.Public), Private | UnixFileMode.GroupRead | UnixFileMode.OtherRead);
        io.Out.WriteLine($"keys written to {keys}: enc.jwk (master key), sign.jwk (signing key), sign.pub.jwk; go on with:");
        io.Out.WriteLine($"  ctensors verify {enc} --key {encJwk} --verify-key {pubJwk}");
    }

    private static void Row(CliIO io, string what, double seconds, long bytes)
        => io.Out.WriteLine(string.Create(CultureInfo.InvariantCulture, $"{what,-22} {seconds,10:F3} {bytes / seconds / 1e9,9:F2}"));
}
