using System.Diagnostics;
using CryptoTensors.Gpu.Crypto;
using CryptoTensors.Gpu.Format;
using CryptoTensors.Gpu.Keys;
using CryptoTensors.Gpu.Reading;
using CryptoTensors.Gpu.Workloads;
using CryptoTensors.Gpu.Writing;

namespace CryptoTensors.Gpu.Benchmarks;

/// <summary>
/// <c>-- open-breakdown</c>: where the time of opening the 1000-tensor LoRA file goes (Stopwatch, best of 50), to
/// direct optimisation of the per-tensor cost.
/// </summary>
internal static class OpenBreakdown
{
    public static void Run()
    {
        var dir = Directory.CreateTempSubdirectory("ctensors-open-").FullName;
        try
        {
            using var master = MasterKey.Generate();
            using var signer = SigningKey.Generate();
            var path = Path.Combine(dir, "lora.ct");
            CryptoTensorsWriter.Write(path, DemoWorkloads.Lora(), new WriterOptions { MasterKey = master, SigningKey = signer });
            var bytes = File.ReadAllBytes(path);
            var header = bytes.AsSpan(8, (int)BitConverter.ToUInt64(bytes, 0)).ToArray();
            var parsed = SafetensorsHeader.Parse(header, bytes.Length);
            var enc = parsed.Metadata![ReservedFields.Encryption];
            var sig = Convert.FromBase64String(parsed.Metadata[ReservedFields.Signature]);
            var entries = EncryptionEntry.Parse(enc);
            var options = new ReaderOptions { MasterKey = master, VerificationKey = signer.Public, Keys = new() };
            Time("parse header", () => SafetensorsHeader.Parse(header, bytes.Length));
            parsed.TryGetStoredValue(ReservedFields.Encryption, out var stored);
            Time("parse stored __encryption__", () => EncryptionEntry.ParseStored(stored.Span, () => enc));
            Time("signed message", () => CryptoTensorsReader.SignedMessage(parsed));
            var msg = CryptoTensorsReader.SignedMessage(parsed);
            Time("ed25519 verify", () => Ed25519.Verify(signer.Public.PublicKey, msg, sig));
            Time("parse __encryption__", () => EncryptionEntry.Parse(enc));
            Time("policy", () => Policy.PolicyEngine.EnsureAllowed(AccessPolicy.DefaultText, Policy.PolicyInput.ForCurrentProcess("x").ToJsonElement()));
            Time("unwrap 1000", () =>
            {
                using var kek = new AeadCipher(master.Algorithm, master.Bytes);
                Span<byte> dek = stackalloc byte[32];
                foreach (var e in entries.Values) kek.TryDecrypt(e.KeyIv, e.WrappedKey, e.KeyTag, dek);
            });
            Time("whole open", () => CryptoTensorsReader.Open(path, options).Dispose());
        }
        finally
        {
            Directory.Delete(dir, true);
        }
    }

    /// <summary><c>-- open-breakdown PART</c>: one part (<c>header</c>, <c>encryption</c>, <c>message</c>) in a loop for 3 s, to profile it.</summary>
    public static void Loop(string part)
    {
        using var master = MasterKey.Generate();
        using var signer = SigningKey.Generate();
        var dir = Directory.CreateTempSubdirectory("ctensors-open-").FullName;
        var path = Path.Combine(dir, "lora.ct");
        CryptoTensorsWriter.Write(path, DemoWorkloads.Lora(), new WriterOptions { MasterKey = master, SigningKey = signer });
        var bytes = File.ReadAllBytes(path);
        var header = bytes.AsSpan(8, (int)BitConverter.ToUInt64(bytes, 0)).ToArray();
        var parsed = SafetensorsHeader.Parse(header, bytes.Length);
        parsed.TryGetStoredValue(ReservedFields.Encryption, out var stored);
        Action a = part switch
        {
            "header" => () => SafetensorsHeader.ParseOwned(header, bytes.Length),
            "encryption" => () => EncryptionEntry.ParseStored(stored.Span, () => throw new InvalidOperationException()),
            "message" => () => CryptoTensorsReader.SignedMessage(parsed),
            "load" => LoadLoop(path, master, signer),
            _ => throw new ArgumentException(part),
        };
        var sw = Stopwatch.StartNew();
        var n = 0;
        for (; sw.Elapsed.TotalSeconds < 3; n++) a();
        Console.WriteLine($"{part}: {sw.Elapsed.TotalMilliseconds / n:F3} ms per call, {n} calls");
    }

    private static unsafe Action LoadLoop(string path, MasterKey master, SigningKey signer)
    {
        var reader = CryptoTensorsReader.Open(path, new ReaderOptions { MasterKey = master, VerificationKey = signer.Public, Keys = new() });
        var dest = (byte*)System.Runtime.InteropServices.NativeMemory.AlignedAlloc(4096 * 1000, 4096);
        new Span<byte>(dest, 4096 * 1000).Fill(1);
        var offsets = new Dictionary<string, long>(StringComparer.Ordinal);
        long offset = 0;
        foreach (var t in reader.Tensors)
        {
            offsets[t.Name] = offset;
            offset += t.ByteLength;
        }
        var dop = int.Parse(Environment.GetEnvironmentVariable("DOP") ?? "2", System.Globalization.CultureInfo.InvariantCulture);
        return () => Loading.ModelLoader.LoadInto(reader, t => new Loading.TensorDestination((IntPtr)(dest + offsets[t.Name]), t.ByteLength), new Loading.LoadOptions { MaxDegreeOfParallelism = dop });
    }

    private static void Time(string what, Action a)
    {
        var best = double.MaxValue;
        for (var i = 0; i < 50; i++)
        {
            var sw = Stopwatch.StartNew();
            a();
            best = Math.Min(best, sw.Elapsed.TotalMilliseconds);
        }
        var bytes0 = GC.GetAllocatedBytesForCurrentThread();
        var gcs0 = GC.CollectionCount(0);
        a();
        Console.WriteLine($"{what,-28} {best,8:F3} ms  {(GC.GetAllocatedBytesForCurrentThread() - bytes0) / 1024,6} KiB allocated, {GC.CollectionCount(0) - gcs0} gen0 GCs");
    }
}
