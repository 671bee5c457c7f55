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

    private static void Time(string what, Action a)
    {
        var best = double.MaxValue;
        for (var i = 0; i < 50; i++)
        {
            var sw = Stopwatch.StartNew();
            a();
            best = Math.Min(best, sw.Elapsed.TotalMilliseconds);
        }
        Console.WriteLine($"{what,-22} {best,8:F3} ms");
    }
}
