// GPT-2 small inference from an encrypted CryptoTensors file and from the same weights in plain safetensors: greedy
// decoding of 32 tokens from a fixed prompt with each load, every step's logits compared bit for bit.
//
//   scripts/torch-run examples/Gpt2Inference [-- --json] [--device cpu|cuda:N] [--tokens N] [--dir DIR]
//                                            [--plain FILE --encrypted FILE --key ENC.jwk --verify-key SIGN.jwk]
//
// Without --plain/--encrypted the program writes the checkpoint itself (SyntheticGpt2: the gpt2 workload's names,
// shapes and random words mapped into GPT-2-like ranges), plain and encrypted with freshly generated keys, into a
// temporary folder (deleted afterwards) or into --dir (kept, with the keys as JWK files).
using System.Diagnostics;
using System.Globalization;
using CryptoTensors.Examples.Gpt2;
using CryptoTensors.Gpu;
using CryptoTensors.Gpu.Crypto;
using CryptoTensors.Gpu.Keys;
using CryptoTensors.Gpu.Reading;
using CryptoTensors.Gpu.TorchSharp;
using CryptoTensors.Gpu.Writing;
using TorchSharp;
using static TorchSharp.torch;

const string Usage = "usage: Gpt2Inference [--json] [--device cpu|cuda:N] [--tokens N] [--dir DIR] [--plain FILE --encrypted FILE --key ENC.jwk --verify-key SIGN.jwk]";
// "The quick brown fox jumps over the lazy dog" in GPT-2's tokenizer.
long[] prompt = [464, 2068, 7586, 21831, 18045, 625, 262, 16931, 3290];

var opts = new Dictionary<string, string>(StringComparer.Ordinal);
var json = false;
for (var i = 0; i < args.Length; i++)
{
    switch (args[i])
    {
        case "--json": json = true; break;
        case "-h" or "--help": Console.WriteLine(Usage); return 0;
        case "--device" or "--tokens" or "--dir" or "--plain" or "--encrypted" or "--key" or "--verify-key" when i + 1 < args.Length:
            opts[args[i]] = args[++i];
            break;
        default:
            Console.Error.WriteLine($"unknown or incomplete argument '{args[i]}'\n{Usage}");
            return 1;
    }
}
var given = new[] { "--plain", "--encrypted", "--key", "--verify-key" }.Count(opts.ContainsKey);
if (given is not 0 and not 4)
{
    Console.Error.WriteLine($"--plain, --encrypted, --key and --verify-key go together\n{Usage}");
    return 1;
}
var newTokens = opts.TryGetValue("--tokens", out var tk) ? int.Parse(tk, CultureInfo.InvariantCulture) : 32;
if (newTokens < 1 || newTokens + prompt.Length > Gpt2Config.Small.Positions)
{
    Console.Error.WriteLine($"--tokens must be 1 to {Gpt2Config.Small.Positions - prompt.Length}");
    return 1;
}

if (ExampleFormat.StartTorch(opts, out var device) is { } startFailed) return startFailed;
var deviceName = opts.GetValueOrDefault("--device", "cpu");
void Say(string line)
{
    if (!json) Console.WriteLine(line);
}

string? tempDir = null;
try
{
    string plainPath, encryptedPath;
    MasterKey master;
    VerificationKey verifier;
    if (given == 4)
    {
        (plainPath, encryptedPath) = (opts["--plain"], opts["--encrypted"]);
        master = Jwk.LoadMasterKey(opts["--key"]);
        verifier = Jwk.LoadVerificationKey(opts["--verify-key"]);
    }
    else
    {
        var dir = opts.GetValueOrDefault("--dir") ?? (tempDir = Directory.CreateTempSubdirectory("gpt2-inference-").FullName);
        Directory.CreateDirectory(dir);
        (plainPath, encryptedPath) = (Path.Combine(dir, "gpt2.safetensors"), Path.Combine(dir, "gpt2.cryptotensors"));
        master = MasterKey.Generate(AeadAlgorithm.Aes256Gcm);
        using var signer = SigningKey.Generate();
        verifier = signer.Public;
        var sw = Stopwatch.StartNew();
        CryptoTensorsWriter.Write(plainPath, SyntheticGpt2.Create(Gpt2Config.Small), new WriterOptions());
        var plainS = sw.Elapsed.TotalSeconds;
        sw.Restart();
        CryptoTensorsWriter.Write(encryptedPath, SyntheticGpt2.Create(Gpt2Config.Small), new WriterOptions { MasterKey = master, SigningKey = signer });
        Say($"wrote {plainPath} ({new FileInfo(plainPath).Length:N0} bytes, {plainS:F2} s) and {encryptedPath} ({new FileInfo(encryptedPath).Length:N0} bytes, AES-256-GCM v2, signed, {sw.Elapsed.TotalSeconds:F2} s)");
        if (tempDir is null)
        {
            File.WriteAllText(Path.Combine(dir, "enc.jwk"), Jwk.Write(master));
            File.WriteAllText(Path.Combine(dir, "sign.jwk"), Jwk.Write(signer));
            File.WriteAllText(Path.Combine(dir, "sign.pub.jwk"), Jwk.Write(signer.Public));
            Say($"keys: {Path.Combine(dir, "enc.jwk")}, {Path.Combine(dir, "sign.jwk")}, {Path.Combine(dir, "sign.pub.jwk")}");
        }
    }

    using (master)
    {
        // The same program on each load: a fresh module, the file loaded into it in place, 32 greedy steps.
        (Generation Run, double LoadS, double GenerateS) Run(string path, ReaderOptions options)
        {
            using var model = new Gpt2Model(Gpt2Config.Small).to(device);
            var loadS = ExampleFormat.TimedLoad(model, path, options);
            var sw = Stopwatch.StartNew();
            var run = Generation.Greedy(model, prompt, newTokens);
            return (run, loadS, sw.Elapsed.TotalSeconds);
        }

        var plain = Run(plainPath, new ReaderOptions { Device = deviceName });
        Say($"plain     load {plain.LoadS:F2} s, {newTokens} tokens in {plain.GenerateS:F2} s: {string.Join(' ', plain.Run.Tokens)}");
        var encrypted = Run(encryptedPath, new ReaderOptions
        {
            MasterKey = master, VerificationKey = verifier, Keys = new KeyRegistry(), RequireEncrypted = true, Device = deviceName,
        });
        Say($"encrypted load {encrypted.LoadS:F2} s, {newTokens} tokens in {encrypted.GenerateS:F2} s: {string.Join(' ', encrypted.Run.Tokens)}");

        var cmp = LogitComparison.Of(plain.Run, encrypted.Run);
        var same = plain.Run.Tokens.SequenceEqual(encrypted.Run.Tokens);
        var distinct = plain.Run.Tokens.Distinct().Count();
        Say($"logits compared: {cmp.Compared:N0} ({newTokens} steps × {Gpt2Config.Small.Vocab:N0}); bit differences {cmp.BitDifferences}, max |diff| {cmp.MaxAbsDiff}, all finite {cmp.AllFinite}, smallest max−min of a step's logits {cmp.MinSpread:F3}; {distinct} distinct tokens generated");
        var problems = new List<string>();
        if (!cmp.AllFinite) problems.Add("non-finite logits (files from `ctensors demo` hold random bit patterns, not weights: let this program write its checkpoint)");
        if (cmp.MinSpread <= 0) problems.Add("a step's logits are all equal: the comparison would prove nothing");
        if (cmp.BitDifferences != 0 || !same) problems.Add("the plain and encrypted loads disagree");
        if (json)
        {
            Console.WriteLine("{\"model\":\"gpt2\",\"device\":" + ExampleFormat.String(deviceName)
                + ",\"tokens_plain\":" + ExampleFormat.Array(plain.Run.Tokens)
                + ",\"tokens_encrypted\":" + ExampleFormat.Array(encrypted.Run.Tokens)
                + ",\"same_tokens\":" + (same ? "true" : "false")
                + ",\"max_abs_logit_diff\":" + ExampleFormat.Number(cmp.MaxAbsDiff)
                + ",\"load_s_plain\":" + ExampleFormat.Number(Math.Round(plain.LoadS, 3))
                + ",\"load_s_encrypted\":" + ExampleFormat.Number(Math.Round(encrypted.LoadS, 3))
                + ",\"logits_compared\":" + cmp.Compared.ToString(CultureInfo.InvariantCulture)
                + ",\"logits_bit_identical\":" + (cmp.BitDifferences == 0 ? "true" : "false") + "}");
        }
        else
        {
            Say(problems.Count == 0 ? "OK: same tokens, bit-identical logits from the plain and the encrypted file" : "FAILED: " + string.Join("; ", problems));
        }
        foreach (var p in problems) Console.Error.WriteLine("Gpt2Inference: " + p);
        return problems.Count == 0 ? 0 : 2;
    }
}
catch (Exception e) when (e is CryptoTensorsException or ArgumentException or IOException or InvalidOperationException or UnauthorizedAccessException)
{
    // A file that cannot be opened, read, decrypted or loaded into the module (names, shapes): the reason on one line.
    Console.Error.WriteLine($"Gpt2Inference: {e.GetType().Name}: {e.Message}");
    return 4;
}
finally
{
    if (tempDir is not null) Directory.Delete(tempDir, recursive: true);
}
