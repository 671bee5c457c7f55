// LoRA fine-tuning of GPT-2 small loaded from an encrypted CryptoTensors file: the base is frozen, rank-r adapters on
// every block's attention projections (attn.c_attn, attn.c_proj) are trained with AdamW to make the model predict a
// fixed token sequence, saved alone as a CryptoTensors file with their own keys and a Rego policy, and reloaded with the
// base into a fresh module whose outputs must equal the trained module's bit for bit.
//
//   scripts/torch-run examples/FineTune [-- --json] [--device cpu|cuda:N] [--steps N] [--rank R] [--alpha A] [--lr LR]
//                                       [--dir DIR] [--base FILE --key ENC.jwk --verify-key SIGN.jwk]
//
// Without --base the program writes the encrypted base itself (SyntheticGpt2, as examples/Gpt2Inference does) into a
// temporary folder (deleted afterwards) or into --dir (kept, with the adapter file, its policy and every key).
using System.Diagnostics;
using System.Globalization;
using System.Text.Json;
using CryptoTensors.Examples.Gpt2;
using CryptoTensors.Gpu;
using CryptoTensors.Gpu.Crypto;
using CryptoTensors.Gpu.Keys;
using CryptoTensors.Gpu.Reading;
using CryptoTensors.Gpu.TorchSharp;
using CryptoTensors.Gpu.Writing;
using TorchSharp;
using static TorchSharp.torch;

const string Usage = "usage: FineTune [--json] [--device cpu|cuda:N] [--steps N] [--rank R] [--alpha A] [--lr LR] [--dir DIR] [--base FILE --key ENC.jwk --verify-key SIGN.jwk]";
// The fixed task: a sequence of 17 token ids (the first 9 are "The quick brown fox jumps over the lazy dog" in GPT-2's
// tokenizer): predict each next id from the ones before it (16 inputs, 16 targets).
long[] sequence = [464, 2068, 7586, 21831, 18045, 625, 262, 16931, 3290, 290, 4539, 1497, 13, 383, 886, 13, 50256];
const string AdapterPolicy = "package model\nimport rego.v1\ndefault allow := false\nallow if input.context.purpose == \"finetune-demo\"\n";

var opts = new Dictionary<string, string>(StringComparer.Ordinal);
var json = false;
for (var i = 0; i < args.Length; i++)
{
    switch (args[i])
    {
        case "--json": json = true; break;
        case "-h" or "--help": Console.WriteLine(Usage); return 0;
        case "--device" or "--steps" or "--rank" or "--alpha" or "--lr" or "--dir" or "--base" or "--key" or "--verify-key" when i + 1 < args.Length:
            opts[args[i]] = args[++i];
            break;
        default:
            Console.Error.WriteLine($"unknown or incomplete argument '{args[i]}'\n{Usage}");
            return 1;
    }
}
var given = new[] { "--base", "--key", "--verify-key" }.Count(opts.ContainsKey);
if (given is not 0 and not 3)
{
    Console.Error.WriteLine($"--base, --key and --verify-key go together\n{Usage}");
    return 1;
}
int steps, rank;
double alpha, lr;
try
{
    steps = int.Parse(opts.GetValueOrDefault("--steps", "30"), CultureInfo.InvariantCulture);
    rank = int.Parse(opts.GetValueOrDefault("--rank", "8"), CultureInfo.InvariantCulture);
    alpha = double.Parse(opts.GetValueOrDefault("--alpha", "16"), CultureInfo.InvariantCulture);
    lr = double.Parse(opts.GetValueOrDefault("--lr", "0.002"), CultureInfo.InvariantCulture);
    if (steps < 1 || rank < 1 || alpha <= 0 || lr <= 0) throw new FormatException("--steps and --rank must be at least 1, --alpha and --lr positive");
}
catch (FormatException e)
{
    Console.Error.WriteLine($"{e.Message}\n{Usage}");
    return 1;
}

if (ExampleFormat.StartTorch(opts, out var device) is { } startFailed) return startFailed;
var deviceName = opts.GetValueOrDefault("--device", "cpu");
void Say(string line)
{
    if (!json) Console.WriteLine(line);
}

var config = Gpt2Config.Small;
var lora = new LoraConfig(rank, alpha);
var total = Stopwatch.StartNew();
string? tempDir = null;
try
{
    var dir = opts.GetValueOrDefault("--dir") ?? (tempDir = Directory.CreateTempSubdirectory("gpt2-finetune-").FullName);
    Directory.CreateDirectory(dir);
    string basePath;
    MasterKey baseKey;
    VerificationKey baseVerifier;
    if (given == 3)
    {
        basePath = opts["--base"];
        baseKey = Jwk.LoadMasterKey(opts["--key"]);
        baseVerifier = Jwk.LoadVerificationKey(opts["--verify-key"]);
    }
    else
    {
        basePath = Path.Combine(dir, "gpt2.cryptotensors");
        baseKey = MasterKey.Generate(AeadAlgorithm.Aes256Gcm);
        using var signer = SigningKey.Generate();
        baseVerifier = signer.Public;
        var sw = Stopwatch.StartNew();
        CryptoTensorsWriter.Write(basePath, SyntheticGpt2.Create(config), new WriterOptions { MasterKey = baseKey, SigningKey = signer });
        Say($"wrote the encrypted base {basePath} ({new FileInfo(basePath).Length:N0} bytes, {sw.Elapsed.TotalSeconds:F2} s)");
        if (tempDir is null)
        {
            File.WriteAllText(Path.Combine(dir, "enc.jwk"), Jwk.Write(baseKey));
            File.WriteAllText(Path.Combine(dir, "sign.pub.jwk"), Jwk.Write(signer.Public));
        }
    }
    var baseOptions = new ReaderOptions { MasterKey = baseKey, VerificationKey = baseVerifier, Keys = new KeyRegistry(), RequireEncrypted = true, Device = deviceName };

    // The adapters' own keys and policy: whoever holds the base cannot read them without these, nor without the purpose.
    using var adapterKey = MasterKey.Generate(AeadAlgorithm.Aes256Gcm);
    using var adapterSigner = SigningKey.Generate();
    var adapterPath = Path.Combine(dir, "gpt2-lora.cryptotensors");
    var adapterOptions = new ReaderOptions
    {
        MasterKey = adapterKey, VerificationKey = adapterSigner.Public, Keys = new KeyRegistry(), RequireEncrypted = true, Device = deviceName,
        PolicyContext = JsonDocument.Parse("""{"purpose":"finetune-demo"}""").RootElement,
    };

    using (baseKey)
    {
        // 1. The base, from the encrypted file, into a module that also holds fresh adapters (A small random, B zero).
        using var model = new Gpt2Model(config, lora).to(device);
        var adapterNames = model.Adapters().Keys.Order(StringComparer.Ordinal).ToList();
        var sw = Stopwatch.StartNew();
        var (missing, unexpected) = TorchLoader.LoadStateDict(model, basePath, baseOptions, strict: false);
        var loadS = sw.Elapsed.TotalSeconds;
        if (unexpected.Count > 0 || !missing.SequenceEqual(adapterNames))
            throw new InvalidOperationException($"the base does not fit the module: missing [{string.Join(", ", missing.Except(adapterNames))}], unexpected [{string.Join(", ", unexpected)}]");
        var trainable = model.Adapters().Values.Sum(p => p.numel());
        Say($"loaded the encrypted base in {loadS:F2} s; {adapterNames.Count} adapter tensors (rank {rank}, alpha {alpha}), {trainable:N0} trainable parameters");

        // 2. Train the adapters only.
        sw.Restart();
        var losses = LoraTraining.Train(model, sequence, steps, lr);
        var trainS = sw.Elapsed.TotalSeconds;
        var (lossFirst, lossLast) = (losses[0], losses[^1]);
        Say($"trained {steps} AdamW steps (lr {lr}) in {trainS:F2} s: loss {lossFirst:F4} -> {lossLast:F4}");
        Say("losses: " + string.Join(' ', losses.Select(l => l.ToString("F3", CultureInfo.InvariantCulture))));
        using var trained = LoraTraining.Outputs(model, sequence);

        // 3. Save the adapters alone, encrypted with their own key, signed, under the policy.
        TorchSaver.Save(model.Adapters().ToDictionary(kv => kv.Key, kv => (Tensor)kv.Value, StringComparer.Ordinal), adapterPath,
            new WriterOptions { MasterKey = adapterKey, SigningKey = adapterSigner, Policy = new AccessPolicy(AdapterPolicy, AccessPolicy.DefaultText) });
        var adapterBytes = new FileInfo(adapterPath).Length;
        File.WriteAllText(Path.Combine(dir, "gpt2-lora.rego"), AdapterPolicy);
        if (tempDir is null)
        {
            File.WriteAllText(Path.Combine(dir, "lora-enc.jwk"), Jwk.Write(adapterKey));
            File.WriteAllText(Path.Combine(dir, "lora-sign.pub.jwk"), Jwk.Write(adapterSigner.Public));
        }
        Say($"saved the adapters: {adapterPath} ({adapterBytes:N0} bytes, own key, policy gpt2-lora.rego)");

        // 4. A fresh module: the base, then the adapters (without the purpose the policy refuses them).
        using var fresh = new Gpt2Model(config, lora).to(device);
        TorchLoader.LoadStateDict(fresh, basePath, baseOptions, strict: false);
        var denied = false;
        try
        {
            TorchLoader.LoadStateDict(fresh, adapterPath, new ReaderOptions { MasterKey = adapterKey, VerificationKey = adapterSigner.Public, Keys = new KeyRegistry(), Device = deviceName }, strict: false);
        }
        catch (PolicyDeniedException)
        {
            denied = true;
        }
        if (!denied) throw new InvalidOperationException("the adapter file opened without the policy's purpose");
        var (baseNames, extra) = TorchLoader.LoadStateDict(fresh, adapterPath, adapterOptions, strict: false);
        if (extra.Count > 0 || baseNames.Any(Gpt2Model.IsAdapter))
            throw new InvalidOperationException($"the adapter file does not fit the module: missing adapters [{string.Join(", ", baseNames.Where(Gpt2Model.IsAdapter))}], unexpected [{string.Join(", ", extra)}]");
        using var reloaded = LoraTraining.Outputs(fresh, sequence);
        var (diff, identical) = LoraTraining.Difference(trained, reloaded);
        Say($"reloaded base + adapters into a fresh module: max |diff| of the logits {diff}, bit-identical {identical}; without the purpose the policy denied the adapters: {denied}");

        var problems = new List<string>();
        if (!losses.All(double.IsFinite)) problems.Add("a loss is not finite");
        if (!(lossLast < lossFirst)) problems.Add($"the loss did not fall ({lossFirst} -> {lossLast})");
        if (!identical) problems.Add("the reloaded module's outputs differ from the trained module's");
        if (json)
        {
            Console.WriteLine("{\"steps\":" + steps.ToString(CultureInfo.InvariantCulture)
                + ",\"loss_first\":" + ExampleFormat.Number(Math.Round(lossFirst, 4))
                + ",\"loss_last\":" + ExampleFormat.Number(Math.Round(lossLast, 4))
                + ",\"adapter_bytes\":" + adapterBytes.ToString(CultureInfo.InvariantCulture)
                + ",\"reloaded_max_abs_diff\":" + ExampleFormat.Number(diff)
                + ",\"device\":" + ExampleFormat.String(deviceName)
                + ",\"rank\":" + rank.ToString(CultureInfo.InvariantCulture)
                + ",\"train_s\":" + ExampleFormat.Number(Math.Round(trainS, 2))
                + ",\"policy_denied_without_purpose\":" + (denied ? "true" : "false") + "}");
        }
        else
        {
            Say(problems.Count == 0 ? $"OK in {total.Elapsed.TotalSeconds:F1} s" : "FAILED: " + string.Join("; ", problems));
        }
        foreach (var p in problems) Console.Error.WriteLine("FineTune: " + p);
        return problems.Count == 0 ? 0 : 2;
    }
}
catch (Exception e) when (e is CryptoTensorsException or ArgumentException or IOException or InvalidOperationException or UnauthorizedAccessException)
{
    // A file that cannot be opened, read, decrypted or loaded into the module (names, shapes): the reason on one line.
    Console.Error.WriteLine($"FineTune: {e.GetType().Name}: {e.Message}");
    return 4;
}
finally
{
    if (tempDir is not null) Directory.Delete(tempDir, recursive: true);
}
