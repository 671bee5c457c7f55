using System.Globalization;
using CryptoTensors.Gpu.Format;
using CryptoTensors.Gpu.TorchSharp;
using CryptoTensors.Gpu.Writing;
using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace CryptoTensors.Examples.Gpt2;

/// <summary>Greedy decoding that keeps every step's logits, so two runs can be compared bit for bit.</summary>
public sealed record Generation(IReadOnlyList<long> Tokens, IReadOnlyList<float[]> StepLogits)
{
    /// <summary>Decodes <paramref name="newTokens"/> tokens greedily after <paramref name="prompt"/> (no KV cache: each step runs the whole context).</summary>
    public static Generation Greedy(Gpt2Model model, IReadOnlyList<long> prompt, int newTokens)
    {
        ArgumentNullException.ThrowIfNull(model);
        ArgumentNullException.ThrowIfNull(prompt);
        if (prompt.Count == 0) throw new ArgumentException("the prompt is empty", nameof(prompt));
        var device = model.parameters().First().device;
        model.eval();
        var context = prompt.ToList();
        var generated = new List<long>(newTokens);
        var steps = new List<float[]>(newTokens);
        using var noGrad = no_grad();
        for (var step = 0; step < newTokens; step++)
        {
            using var scope = NewDisposeScope();
            var ids = tensor(context.ToArray(), [1L, context.Count], ScalarType.Int64, device);
            var logits = model.LastLogits(ids).cpu().contiguous().data<float>().ToArray();
            // argmax on the host (first maximum), so both runs pick with the same rule whatever the device.
            var next = 0;
            for (var i = 1; i < logits.Length; i++) if (logits[i] > logits[next]) next = i;
            steps.Add(logits);
            generated.Add(next);
            context.Add(next);
        }
        return new Generation(generated, steps);
    }
}

/// <summary>Two generations' logits compared exactly, step by step.</summary>
public sealed record LogitComparison(long Compared, long BitDifferences, double MaxAbsDiff, bool AllFinite, double MinSpread)
{
    /// <summary>Every logit of every step bit-identical, all finite, and no step's logits all equal.</summary>
    public bool Identical => BitDifferences == 0 && AllFinite;

    /// <summary>Compares <paramref name="a"/> and <paramref name="b"/> over the steps both have (their step counts must match).</summary>
    public static LogitComparison Of(Generation a, Generation b)
    {
        ArgumentNullException.ThrowIfNull(a);
        ArgumentNullException.ThrowIfNull(b);
        if (a.StepLogits.Count != b.StepLogits.Count) throw new ArgumentException("the generations have different step counts", nameof(b));
        long compared = 0, differences = 0;
        double max = 0, minSpread = double.PositiveInfinity;
        var finite = true;
        for (var s = 0; s < a.StepLogits.Count; s++)
        {
            var (x, y) = (a.StepLogits[s], b.StepLogits[s]);
            if (x.Length != y.Length) throw new ArgumentException($"step {s}: {x.Length} and {y.Length} logits", nameof(b));
            float lo = float.PositiveInfinity, hi = float.NegativeInfinity;
            for (var i = 0; i < x.Length; i++)
            {
                compared++;
                finite &= float.IsFinite(x[i]) && float.IsFinite(y[i]);
                if (BitConverter.SingleToInt32Bits(x[i]) != BitConverter.SingleToInt32Bits(y[i])) differences++;
                max = Math.Max(max, Math.Abs((double)x[i] - y[i]));
                lo = Math.Min(lo, x[i]);
                hi = Math.Max(hi, x[i]);
            }
            minSpread = Math.Min(minSpread, (double)hi - lo);
        }
        return new LogitComparison(compared, differences, max, finite, a.StepLogits.Count == 0 ? 0 : minSpread);
    }
}

/// <summary>LoRA fine-tuning on a fixed next-token task, and saving the adapters.</summary>
public static class LoraTraining
{
    /// <summary>
    /// Trains the adapters of <paramref name="model"/> (everything else frozen) with AdamW to predict
    /// <paramref name="sequence"/>[1..] from <paramref name="sequence"/>[..^1]. Returns the loss before each step and, last,
    /// the loss after the final step (so <c>steps + 1</c> values).
    /// </summary>
    public static IReadOnlyList<double> Train(Gpt2Model model, IReadOnlyList<long> sequence, int steps, double learningRate)
    {
        ArgumentNullException.ThrowIfNull(model);
        ArgumentNullException.ThrowIfNull(sequence);
        if (model.Lora is null) throw new ArgumentException("the model has no adapters", nameof(model));
        if (sequence.Count < 2) throw new ArgumentException("the sequence needs at least 2 tokens", nameof(sequence));
        var device = model.parameters().First().device;
        model.FreezeBase();
        model.train();
        using var optimizer = optim.AdamW(model.Adapters().Values, learningRate, weight_decay: 0.0);
        var (input, target) = Task(sequence, device);
        var losses = new List<double>(steps + 1);
        try
        {
            for (var step = 0; step < steps; step++)
            {
                using var scope = NewDisposeScope();
                optimizer.zero_grad();
                var loss = Loss(model, input, target);
                loss.backward();
                optimizer.step();
                losses.Add(loss.item<float>());
            }
            model.eval();
            using (no_grad())
            using (var scope = NewDisposeScope())
                losses.Add(Loss(model, input, target).item<float>());
            return losses;
        }
        finally
        {
            input.Dispose();
            target.Dispose();
        }
    }

    /// <summary>The model's logits [1, T, vocab] on the task's input (<paramref name="sequence"/>[..^1]), in eval mode without gradients.</summary>
    public static Tensor Outputs(Gpt2Model model, IReadOnlyList<long> sequence)
    {
        ArgumentNullException.ThrowIfNull(model);
        ArgumentNullException.ThrowIfNull(sequence);
        var device = model.parameters().First().device;
        model.eval();
        using var noGrad = no_grad();
        using var scope = NewDisposeScope();
        var (input, _) = Task(sequence, device);
        return model.call(input).MoveToOuterDisposeScope();
    }

    private static (Tensor Input, Tensor Target) Task(IReadOnlyList<long> sequence, Device device)
    {
        var s = sequence.ToArray();
        return (tensor(s[..^1], [1L, s.Length - 1], ScalarType.Int64, device), tensor(s[1..], [(long)s.Length - 1], ScalarType.Int64, device));
    }

    private static Tensor Loss(Gpt2Model model, Tensor input, Tensor target)
    {
        var logits = model.call(input);
        return nn.functional.cross_entropy(logits.view(-1, logits.shape[^1]), target);
    }

    /// <summary>The largest absolute difference between two tensors of the same shape, and whether they are bit-identical.</summary>
    public static (double MaxAbsDiff, bool Identical) Difference(Tensor a, Tensor b)
    {
        ArgumentNullException.ThrowIfNull(a);
        ArgumentNullException.ThrowIfNull(b);
        using var scope = NewDisposeScope();
        var x = a.detach().cpu().contiguous();
        var y = b.detach().cpu().contiguous();
        if (!x.shape.SequenceEqual(y.shape)) throw new ArgumentException("the tensors have different shapes", nameof(b));
        var identical = x.bytes.SequenceEqual(y.bytes);
        return (x.sub(y).abs().max().item<float>(), identical);
    }
}

/// <summary>Small helpers of the example programs.</summary>
public static class ExampleFormat
{
    /// <summary>A JSON number with a decimal point for whole values (0 → 0.0), invariant culture; NaN and infinities as strings.</summary>
    public static string Number(double value)
    {
        if (!double.IsFinite(value)) return "\"" + value.ToString(CultureInfo.InvariantCulture) + "\"";
        var s = value.ToString("R", CultureInfo.InvariantCulture);
        return s.Contains('.', StringComparison.Ordinal) || s.Contains('E', StringComparison.Ordinal) ? s : s + ".0";
    }

    /// <summary>A JSON array of integers.</summary>
    public static string Array(IEnumerable<long> values) => "[" + string.Join(",", values.Select(v => v.ToString(CultureInfo.InvariantCulture))) + "]";

    /// <summary>A JSON string (the few characters a path or device name could need escaped).</summary>
    public static string String(string value) => System.Text.Json.JsonSerializer.Serialize(value);

    /// <summary>
    /// The start of both example programs: initialises TorchSharp and resolves <c>--device</c> (default cpu). Returns
    /// null with the device, or the exit code after printing the one-line reason on standard error: 3 when TorchSharp
    /// cannot run here, 1 for a bad <c>--device</c>.
    /// </summary>
    public static int? StartTorch(IReadOnlyDictionary<string, string> options, out Device device)
    {
        ArgumentNullException.ThrowIfNull(options);
        // Nothing may touch TorchSharp.torch (torch.CPU included) before TorchRuntime has loaded libtorch: torch's static
        // initializer would otherwise load its own copy (consolidated into bin/cpu) beside the one TorchRuntime loads.
        device = null!;
        if (!CryptoTensors.Gpu.TorchSharp.TorchRuntime.Initialize(out var torchError))
        {
            Console.Error.WriteLine("TorchSharp cannot run here: " + torchError + " (run this program through scripts/torch-run)");
            return 3;
        }
        try
        {
            device = ParseDevice(options.GetValueOrDefault("--device", "cpu"));
            return null;
        }
        catch (ArgumentException e)
        {
            Console.Error.WriteLine(e.Message);
            return 1;
        }
    }

    /// <summary>The device of a <c>--device</c> value: <c>cpu</c> or <c>cuda:N</c> (refused when TorchSharp sees no such CUDA device).</summary>
    public static Device ParseDevice(string text)
    {
        ArgumentNullException.ThrowIfNull(text);
        if (text == "cpu") return CPU;
        if (text.StartsWith("cuda", StringComparison.Ordinal))
        {
            var index = text == "cuda" ? 0 : text.StartsWith("cuda:", StringComparison.Ordinal) && int.TryParse(text[5..], NumberStyles.None, CultureInfo.InvariantCulture, out var i) ? i : -1;
            if (index < 0) throw new ArgumentException($"--device '{text}': expected cpu or cuda:N");
            if (!cuda.is_available() || index >= cuda.device_count())
                throw new ArgumentException($"--device {text}: TorchSharp sees {(cuda.is_available() ? cuda.device_count() : 0)} CUDA device(s)");
            return new Device(DeviceType.CUDA, index);
        }
        throw new ArgumentException($"--device '{text}': expected cpu or cuda:N");
    }

    /// <summary>The state-dict keys of <paramref name="module"/> that the checkpoint layout of <paramref name="config"/> does not name (the adapters, for a LoRA model).</summary>
    public static IReadOnlyList<string> KeysBeyondCheckpoint(nn.Module module, Gpt2Config config)
    {
        ArgumentNullException.ThrowIfNull(module);
        var names = SyntheticGpt2.Layout(config).Select(t => t.Name).ToHashSet(StringComparer.Ordinal);
        return module.state_dict().Keys.Where(k => !names.Contains(k)).Order(StringComparer.Ordinal).ToList();
    }

    /// <summary>Loads <paramref name="path"/> into <paramref name="module"/> and returns the seconds it took.</summary>
    public static double TimedLoad(nn.Module module, string path, CryptoTensors.Gpu.Reading.ReaderOptions options, bool strict = true)
    {
        var sw = System.Diagnostics.Stopwatch.StartNew();
        TorchLoader.LoadStateDict(module, path, options, strict);
        return sw.Elapsed.TotalSeconds;
    }
}
