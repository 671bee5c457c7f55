using System.Text.Json;
using CryptoTensors.Examples.Gpt2;
using CryptoTensors.Gpu.Crypto;
using CryptoTensors.Gpu.Keys;
using CryptoTensors.Gpu.Reading;
using CryptoTensors.Gpu.Tests;
using CryptoTensors.Gpu.TorchSharp;
using CryptoTensors.Gpu.Workloads;
using CryptoTensors.Gpu.Writing;
using TorchSharp;
using static TorchSharp.torch;

namespace CryptoTensors.Gpu.Interop.Tests;

/// <summary>
/// The core of examples/Gpt2Inference and examples/FineTune (their shared sources, examples/Shared, are compiled into
/// this assembly), on a small GPT-2 configuration: the module against an independent reference forward pass, plain and
/// encrypted loads generating the same tokens with bit-identical logits, LoRA training and the adapters' round trip
/// through an encrypted file under a policy. GPT-2 small itself is checked for names and shapes only (the examples run it).
/// </summary>
[NonParallelizable]
public class Gpt2ExampleTests
{
    private static readonly Gpt2Config SmallConfig = new(Vocab: 384, Positions: 64, Embd: 64, Layers: 2, Heads: 4);
    private static readonly long[] Prompt = [17, 300, 5, 42, 128, 99];

    public static IEnumerable<string> Devices() => ["cpu", "cuda"];

    private static Device Require(string kind) => TorchTestDevice.Require(kind);

    private static float[] Values(TensorSource t)
    {
        var bytes = new byte[t.ByteLength];
        t.Read(0, bytes);
        return System.Runtime.InteropServices.MemoryMarshal.Cast<byte, float>(bytes).ToArray();
    }

    [Test]
    public void TheCheckpointLayoutIsTheGpt2WorkloadsNamesAndShapesInOrder()
    {
        // Pure: runs everywhere.
        var workload = DemoWorkloads.Gpt2();
        var layout = SyntheticGpt2.Layout(Gpt2Config.Small);
        Assert.That(layout.Select(t => t.Name), Is.EqualTo(workload.Select(t => t.Name)));
        Assert.That(layout.Select(t => string.Join("x", t.Shape)), Is.EqualTo(workload.Select(t => string.Join("x", t.Shape))));
        var synthetic = SyntheticGpt2.Create(Gpt2Config.Small);
        Assert.That(synthetic.Select(t => (t.Name, t.Dtype, t.ByteLength)), Is.EqualTo(workload.Select(t => (t.Name, t.Dtype, t.ByteLength))));
    }

    [Test]
    public void TheSyntheticCheckpointStaysInItsRangesAndHoldsTheCausalMask()
    {
        // Pure: the workload's words are random bit patterns (NaN, infinities, 1e38); the checkpoint's values are not.
        foreach (var t in SyntheticGpt2.Create(SmallConfig))
        {
            var v = Values(t);
            var (center, amplitude) = SyntheticGpt2.Range(t.Name, SmallConfig);
            if (float.IsNaN(center))
            {
                var n = SmallConfig.Positions;
                for (var row = 0; row < n; row++)
                    for (var col = 0; col < n; col++)
                        Assert.That(v[row * n + col], Is.EqualTo(col <= row ? 1f : 0f), $"{t.Name}[{row},{col}]");
                continue;
            }
            Assert.That(v.All(float.IsFinite), t.Name);
            Assert.That(v.Min(), Is.GreaterThanOrEqualTo(center - amplitude).And.LessThan(center - 0.8 * amplitude), t.Name);
            Assert.That(v.Max(), Is.LessThanOrEqualTo(center + amplitude).And.GreaterThan(center + 0.8 * amplitude), t.Name);
        }
        // Reads at any offset and length agree with the whole tensor (the writer reads chunk by chunk).
        var w = SyntheticGpt2.Create(SmallConfig).Single(t => t.Name == "h.1.attn.c_attn.weight");
        var whole = new byte[w.ByteLength];
        w.Read(0, whole);
        var part = new byte[1001];
        w.Read(4093, part);
        Assert.That(part, Is.EqualTo(whole.AsSpan(4093, 1001).ToArray()));
        // GPT-2 small's words are the gpt2 workload's: its first wte word, mapped.
        var workloadWte = new byte[4];
        DemoWorkloads.Gpt2()[0].Read(0, workloadWte);
        var mapped = new byte[4];
        SyntheticGpt2.Create(Gpt2Config.Small)[0].Read(0, mapped);
        Assert.That(BitConverter.ToSingle(mapped), Is.EqualTo((float)(0.1 * (BitConverter.ToInt32(workloadWte) / 2147483648.0))));
    }

    [Test]
    public void GptTwoSmallHasExactlyTheWorkloadsStateDict()
    {
        Require("cpu");
        using var model = new Gpt2Model(Gpt2Config.Small);
        var state = model.state_dict();
        var workload = DemoWorkloads.Gpt2();
        Assert.That(state.Keys.Order(StringComparer.Ordinal), Is.EqualTo(workload.Select(t => t.Name).Order(StringComparer.Ordinal)));
        foreach (var t in workload)
        {
            Assert.That(state[t.Name].shape, Is.EqualTo(t.Shape.Select(d => (long)d).ToArray()), t.Name);
            Assert.That(state[t.Name].dtype, Is.EqualTo(ScalarType.Float32), t.Name);
        }
        using var withLora = new Gpt2Model(Gpt2Config.Small, new LoraConfig(Rank: 4));
        Assert.That(ExampleFormat.KeysBeyondCheckpoint(withLora, Gpt2Config.Small), Is.EqualTo(Enumerable.Range(0, 12)
            .SelectMany(i => new[] { $"h.{i}.attn.c_attn.lora_A", $"h.{i}.attn.c_attn.lora_B", $"h.{i}.attn.c_proj.lora_A", $"h.{i}.attn.c_proj.lora_B" })
            .Order(StringComparer.Ordinal)));
        Assert.That(withLora.Adapters()["h.3.attn.c_attn.lora_A"].shape, Is.EqualTo(new long[] { 768, 4 }));
        Assert.That(withLora.Adapters()["h.3.attn.c_attn.lora_B"].shape, Is.EqualTo(new long[] { 4, 2304 }));
    }

    [Test]
    public void FreshAdaptersAreTheSameInEveryModuleAndChangeNothing()
    {
        Require("cpu");
        using var a = new Gpt2Model(SmallConfig, new LoraConfig(Rank: 4));
        using var b = new Gpt2Model(SmallConfig, new LoraConfig(Rank: 4));
        using var other = new Gpt2Model(SmallConfig, new LoraConfig(Rank: 4, Seed: 99));
        foreach (var (name, p) in a.Adapters())
        {
            using var host = p.detach().cpu();
            var bytes = host.bytes.ToArray();
            using (var q = b.Adapters()[name].detach().cpu())
                Assert.That(q.bytes.ToArray(), Is.EqualTo(bytes), name + " (a seeded initialisation, the same in every process)");
            var values = System.Runtime.InteropServices.MemoryMarshal.Cast<byte, float>(bytes).ToArray();
            if (name.EndsWith("lora_B", StringComparison.Ordinal))
            {
                Assert.That(values, Is.All.EqualTo(0f), name);
                continue;
            }
            var bound = 1.0 / Math.Sqrt(SmallConfig.Embd);
            Assert.That(values.Max(Math.Abs), Is.LessThanOrEqualTo(bound).And.GreaterThan(0.5 * bound), name);
            using var r = other.Adapters()[name].detach().cpu();
            Assert.That(r.bytes.ToArray(), Is.Not.EqualTo(bytes), name + " with another seed");
        }
        Assert.That(a.Adapters()["h.0.attn.c_attn.lora_A"].data<float>()[0].ToString(), Is.Not.EqualTo(a.Adapters()["h.1.attn.c_attn.lora_A"].data<float>()[0].ToString()), "each projection has its own A");
    }

    [Test]
    public void TheModuleComputesWhatAnIndependentReferenceComputes()
    {
        Require("cpu");
        using var tmp = new TempDir();
        var checkpoint = SyntheticGpt2.Create(SmallConfig);
        CryptoTensorsWriter.Write(tmp.File("m"), checkpoint, new WriterOptions());
        using var model = new Gpt2Model(SmallConfig);
        TorchLoader.LoadStateDict(model, tmp.File("m"));
        model.eval();
        using var noGrad = no_grad();
        using var ids = tensor(Prompt, [1L, Prompt.Length], ScalarType.Int64);
        using var logits = model.call(ids);
        var got = logits.contiguous().data<float>().ToArray();
        var want = ReferenceForward(checkpoint.ToDictionary(t => t.Name, Values), SmallConfig, Prompt);
        Assert.That(got.Length, Is.EqualTo(want.Length));
        var scale = want.Max(Math.Abs);
        var worst = got.Zip(want, (g, w) => Math.Abs(g - w)).Max();
        Assert.That(worst, Is.LessThan(1e-4 * scale), $"largest |difference| {worst} for logits up to {scale}");
        // LastLogits is the last row of the full logits (to rounding: one row is another matrix product than the batch).
        using var last = model.LastLogits(ids);
        Assert.That(last.data<float>().ToArray(), Is.EqualTo(got.AsSpan(got.Length - SmallConfig.Vocab).ToArray()).Within(1e-6 * scale));
    }

    [Test]
    public void PlainAndEncryptedLoadsGenerateTheSameTokensWithBitIdenticalLogits([ValueSource(nameof(Devices))] string kind)
    {
        var device = Require(kind);
        using var tmp = new TempDir();
        using var master = MasterKey.Generate(AeadAlgorithm.Aes256Gcm);
        using var signer = SigningKey.Generate();
        CryptoTensorsWriter.Write(tmp.File("plain"), SyntheticGpt2.Create(SmallConfig), new WriterOptions());
        CryptoTensorsWriter.Write(tmp.File("enc"), SyntheticGpt2.Create(SmallConfig), new WriterOptions { MasterKey = master, SigningKey = signer, ChunkSize = 4096 });
        Generation Run(string file, ReaderOptions options, Action<Gpt2Model>? change = null)
        {
            using var model = new Gpt2Model(SmallConfig).to(device);
            TorchLoader.LoadStateDict(model, tmp.File(file), options);
            change?.Invoke(model);
            return Generation.Greedy(model, Prompt, 16);
        }
        var plain = Run("plain", new ReaderOptions());
        var encrypted = Run("enc", new ReaderOptions { MasterKey = master, VerificationKey = signer.Public, Keys = new KeyRegistry(), RequireEncrypted = true });
        var cmp = LogitComparison.Of(plain, encrypted);
        Assert.That(encrypted.Tokens, Is.EqualTo(plain.Tokens));
        Assert.That(cmp.Compared, Is.EqualTo(16L * SmallConfig.Vocab), "every step's logits are compared");
        Assert.That(cmp.BitDifferences, Is.Zero);
        Assert.That(cmp.MaxAbsDiff, Is.Zero);
        Assert.That(cmp.AllFinite, Is.True);
        Assert.That(cmp.Identical, Is.True);
        Assert.That(cmp.MinSpread, Is.GreaterThan(1.0), "no step's logits are (nearly) all equal");
        Assert.That(plain.Tokens.Distinct().Count(), Is.GreaterThan(1), "the generation is not one token repeated");

        // The comparison sees a single bias changed by 1e-6.
        var changed = Run("enc", new ReaderOptions { MasterKey = master, VerificationKey = signer.Public, Keys = new KeyRegistry() }, m =>
        {
            using var noGrad = no_grad();
            using var element = m.state_dict()["h.1.mlp.c_proj.bias"][3];
            element.add_(1e-6f);
        });
        Assert.That(LogitComparison.Of(plain, changed).BitDifferences, Is.GreaterThan(0));
    }

    [Test]
    public void LoraTrainingLowersTheLossAndTheEncryptedAdaptersReproduceTheOutputs([ValueSource(nameof(Devices))] string kind)
    {
        var device = Require(kind);
        using var tmp = new TempDir();
        using var baseKey = MasterKey.Generate(AeadAlgorithm.Aes256Gcm);
        using var baseSigner = SigningKey.Generate();
        CryptoTensorsWriter.Write(tmp.File("base"), SyntheticGpt2.Create(SmallConfig), new WriterOptions { MasterKey = baseKey, SigningKey = baseSigner });
        var baseOptions = new ReaderOptions { MasterKey = baseKey, VerificationKey = baseSigner.Public, Keys = new KeyRegistry(), RequireEncrypted = true };
        long[] sequence = [5, 17, 300, 42, 42, 7, 250, 9, 128, 1, 77, 301];
        var lora = new LoraConfig(Rank: 8, Alpha: 16);

        using var model = new Gpt2Model(SmallConfig, lora).to(device);
        var (missing, unexpected) = TorchLoader.LoadStateDict(model, tmp.File("base"), baseOptions, strict: false);
        Assert.That(unexpected, Is.Empty);
        Assert.That(missing, Is.EqualTo(model.Adapters().Keys.Order(StringComparer.Ordinal)), "only the adapters are not in the base");

        // B = 0: the untrained adapters change nothing.
        using (var plainModel = new Gpt2Model(SmallConfig).to(device))
        {
            TorchLoader.LoadStateDict(plainModel, tmp.File("base"), baseOptions);
            using var a = LoraTraining.Outputs(plainModel, sequence);
            using var b = LoraTraining.Outputs(model, sequence);
            Assert.That(LoraTraining.Difference(a, b).Identical, Is.True);
        }

        var frozenBefore = model.state_dict()["h.0.mlp.c_fc.weight"].cpu().clone();
        var losses = LoraTraining.Train(model, sequence, steps: 30, learningRate: 0.02);
        Assert.That(losses, Has.Count.EqualTo(31));
        Assert.That(losses.All(double.IsFinite), Is.True);
        TestContext.Out.WriteLine("losses: " + string.Join(' ', losses.Select(l => l.ToString("F3", System.Globalization.CultureInfo.InvariantCulture))));
        Assert.That(losses[^1], Is.LessThan(losses[0] * 0.5), $"loss {losses[0]} -> {losses[^1]}");
        using (var frozenAfter = model.state_dict()["h.0.mlp.c_fc.weight"].cpu())
            Assert.That(frozenAfter.bytes.ToArray(), Is.EqualTo(frozenBefore.bytes.ToArray()), "the base stays frozen");
        frozenBefore.Dispose();
        using var trained = LoraTraining.Outputs(model, sequence);

        using var adapterKey = MasterKey.Generate(AeadAlgorithm.Aes256Gcm);
        using var adapterSigner = SigningKey.Generate();
        const string Policy = "package model\nimport rego.v1\ndefault allow := false\nallow if input.context.purpose == \"finetune-demo\"\n";
        TorchSaver.Save(model.Adapters().ToDictionary(kv => kv.Key, kv => (Tensor)kv.Value), tmp.File("lora"),
            new WriterOptions { MasterKey = adapterKey, SigningKey = adapterSigner, Policy = new AccessPolicy(Policy, AccessPolicy.DefaultText), ChunkSize = 1024 });
        ReaderOptions AdapterOptions(string purpose, MasterKey key) => new()
        {
            MasterKey = key, VerificationKey = adapterSigner.Public, Keys = new KeyRegistry(), RequireEncrypted = true,
            PolicyContext = JsonDocument.Parse(JsonSerializer.Serialize(new { purpose })).RootElement,
        };
        var allowed = AdapterOptions("finetune-demo", adapterKey);
        using (var reader = CryptoTensorsReader.Open(tmp.File("lora"), allowed))
        {
            Assert.That(reader.Tensors.Select(t => t.Name).Order(StringComparer.Ordinal), Is.EqualTo(model.Adapters().Keys.Order(StringComparer.Ordinal)), "only the adapters are saved");
            Assert.That(reader.Policy!.Local, Is.EqualTo(Policy));
        }

        using var fresh = new Gpt2Model(SmallConfig, lora).to(device);
        TorchLoader.LoadStateDict(fresh, tmp.File("base"), baseOptions, strict: false);
        Assert.Throws<PolicyDeniedException>(() => TorchLoader.LoadStateDict(fresh, tmp.File("lora"), AdapterOptions("other", adapterKey), strict: false));
        Assert.Catch<CryptoTensorsException>(() => TorchLoader.LoadStateDict(fresh, tmp.File("lora"), AdapterOptions("finetune-demo", baseKey), strict: false), "the base's key does not open the adapters");
        var (baseNames, extra) = TorchLoader.LoadStateDict(fresh, tmp.File("lora"), allowed, strict: false);
        Assert.That(extra, Is.Empty);
        Assert.That(baseNames, Is.EqualTo(SyntheticGpt2.Layout(SmallConfig).Select(t => t.Name).Order(StringComparer.Ordinal)));
        using var reloaded = LoraTraining.Outputs(fresh, sequence);
        var (diff, identical) = LoraTraining.Difference(trained, reloaded);
        Assert.That(identical, Is.True);
        Assert.That(diff, Is.Zero);
    }

    /// <summary>GPT-2's forward pass in plain C# loops (double precision), from the checkpoint's values by name.</summary>
    private static float[] ReferenceForward(Dictionary<string, float[]> w, Gpt2Config c, long[] ids)
    {
        int t = ids.Length, n = c.Embd, heads = c.Heads, d = c.HeadDim;
        var x = new double[t, n];
        for (var i = 0; i < t; i++)
            for (var j = 0; j < n; j++)
                x[i, j] = w["wte.weight"][ids[i] * n + j] + w["wpe.weight"][i * n + j];
        double[,] Norm(double[,] a, string p)
        {
            var r = new double[t, n];
            for (var i = 0; i < t; i++)
            {
                double mean = 0, variance = 0;
                for (var j = 0; j < n; j++) mean += a[i, j];
                mean /= n;
                for (var j = 0; j < n; j++) variance += (a[i, j] - mean) * (a[i, j] - mean);
                variance /= n;
                for (var j = 0; j < n; j++) r[i, j] = (a[i, j] - mean) / Math.Sqrt(variance + c.LayerNormEps) * w[p + ".weight"][j] + w[p + ".bias"][j];
            }
            return r;
        }
        double[,] Linear(double[,] a, string p, int inF, int outF)
        {
            var r = new double[t, outF];
            for (var i = 0; i < t; i++)
                for (var o = 0; o < outF; o++)
                {
                    double s = w[p + ".bias"][o];
                    for (var k = 0; k < inF; k++) s += a[i, k] * w[p + ".weight"][k * outF + o];      // weight [in, out]
                    r[i, o] = s;
                }
            return r;
        }
        for (var layer = 0; layer < c.Layers; layer++)
        {
            var h = $"h.{layer}.";
            var qkv = Linear(Norm(x, h + "ln_1"), h + "attn.c_attn", n, 3 * n);
            var att = new double[t, n];
            for (var head = 0; head < heads; head++)
                for (var i = 0; i < t; i++)
                {
                    var p = new double[i + 1];
                    for (var j = 0; j <= i; j++)
                    {
                        double s = 0;
                        for (var k = 0; k < d; k++) s += qkv[i, head * d + k] * qkv[j, n + head * d + k];
                        p[j] = s / Math.Sqrt(d);
                    }
                    var max = p.Max();
                    var z = p.Sum(v => Math.Exp(v - max));
                    for (var j = 0; j <= i; j++)
                        for (var k = 0; k < d; k++) att[i, head * d + k] += Math.Exp(p[j] - max) / z * qkv[j, 2 * n + head * d + k];
                }
            var y = Linear(att, h + "attn.c_proj", n, n);
            for (var i = 0; i < t; i++) for (var j = 0; j < n; j++) x[i, j] += y[i, j];
            var f = Linear(Norm(x, h + "ln_2"), h + "mlp.c_fc", n, 4 * n);
            for (var i = 0; i < t; i++)
                for (var j = 0; j < 4 * n; j++)
                {
                    var v = f[i, j];
                    f[i, j] = 0.5 * v * (1 + Math.Tanh(Math.Sqrt(2 / Math.PI) * (v + 0.044715 * v * v * v)));
                }
            var m = Linear(f, h + "mlp.c_proj", 4 * n, n);
            for (var i = 0; i < t; i++) for (var j = 0; j < n; j++) x[i, j] += m[i, j];
        }
        var final = Norm(x, "ln_f");
        var logits = new float[t * c.Vocab];
        for (var i = 0; i < t; i++)
            for (var v = 0; v < c.Vocab; v++)
            {
                double s = 0;
                for (var j = 0; j < n; j++) s += final[i, j] * w["wte.weight"][v * n + j];     // tied to wte
                logits[i * c.Vocab + v] = (float)s;
            }
        return logits;
    }
}
