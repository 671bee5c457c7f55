using System.Buffers;
using System.Buffers.Binary;
using CryptoTensors.Gpu.Format;
using CryptoTensors.Gpu.Workloads;
using CryptoTensors.Gpu.Writing;

namespace CryptoTensors.Examples.Gpt2;

/// <summary>
/// A deterministic GPT-2 checkpoint a model can run on. The <c>gpt2</c> workload (<see cref="DemoWorkloads.Gpt2"/>)
/// has GPT-2 small's names and shapes, but its F32 tensors are random bit patterns: about 1 value in 256 is NaN or
/// infinite and the rest span 1e-38 to 3e38, so no forward pass stays finite on them. This checkpoint keeps the
/// workload's names, shapes and random words and maps each 32-bit word w (as a signed integer) to
/// <c>center + amplitude · w / 2³¹</c>, with GPT-2-like ranges per kind of tensor (unit-variance-preserving linear layers,
/// LayerNorm gains around 1, small biases and embeddings); <c>attn.bias</c> holds the causal mask, as in a real
/// checkpoint. For other configurations (the tests' small ones) the words come from the workload's generator scheme
/// (splitmix64 of an FNV-1a hash of the name plus the word index).
/// </summary>
public static class SyntheticGpt2
{
    /// <summary>The checkpoint's tensors (names and shapes of a GPT-2 checkpoint of <paramref name="config"/>).</summary>
    public static IReadOnlyList<TensorSource> Create(Gpt2Config config)
    {
        ArgumentNullException.ThrowIfNull(config);
        var words = config == Gpt2Config.Small ? DemoWorkloads.Gpt2() : Words(config);
        return words.Select(t => (TensorSource)new Conditioned(t, config)).ToList();
    }

    /// <summary>The names and shapes of a GPT-2 checkpoint of <paramref name="config"/>, in the workload's order.</summary>
    public static IReadOnlyList<(string Name, ulong[] Shape)> Layout(Gpt2Config config)
    {
        ArgumentNullException.ThrowIfNull(config);
        ulong v = (ulong)config.Vocab, p = (ulong)config.Positions, c = (ulong)config.Embd;
        var list = new List<(string, ulong[])> { ("wte.weight", [v, c]), ("wpe.weight", [p, c]) };
        for (var i = 0; i < config.Layers; i++)
        {
            var h = $"h.{i}.";
            list.Add((h + "ln_1.weight", [c]));
            list.Add((h + "ln_1.bias", [c]));
            list.Add((h + "attn.bias", [1, 1, p, p]));
            list.Add((h + "attn.c_attn.weight", [c, 3 * c]));
            list.Add((h + "attn.c_attn.bias", [3 * c]));
            list.Add((h + "attn.c_proj.weight", [c, c]));
            list.Add((h + "attn.c_proj.bias", [c]));
            list.Add((h + "ln_2.weight", [c]));
            list.Add((h + "ln_2.bias", [c]));
            list.Add((h + "mlp.c_fc.weight", [c, 4 * c]));
            list.Add((h + "mlp.c_fc.bias", [4 * c]));
            list.Add((h + "mlp.c_proj.weight", [4 * c, c]));
            list.Add((h + "mlp.c_proj.bias", [c]));
        }
        list.Add(("ln_f.weight", [c]));
        list.Add(("ln_f.bias", [c]));
        return list;
    }

    /// <summary>(center, amplitude) of a tensor's values; amplitude 0 with center NaN marks the causal mask.</summary>
    public static (float Center, float Amplitude) Range(string name, Gpt2Config config)
    {
        ArgumentNullException.ThrowIfNull(name);
        ArgumentNullException.ThrowIfNull(config);
        var c = config.Embd;
        // Uniform in [-a, a] has standard deviation a/√3: a = √3·g/√fan_in keeps a linear layer's output near g·input.
        static float Uniform(double gain, int fanIn) => (float)(Math.Sqrt(3.0) * gain / Math.Sqrt(fanIn));
        if (name.EndsWith(".attn.bias", StringComparison.Ordinal)) return (float.NaN, 0f);
        if (name.EndsWith("ln_1.weight", StringComparison.Ordinal) || name.EndsWith("ln_2.weight", StringComparison.Ordinal) || name == "ln_f.weight") return (1f, 0.2f);
        if (name.EndsWith(".bias", StringComparison.Ordinal)) return (0f, 0.05f);
        if (name == "wte.weight") return (0f, 0.1f);
        if (name == "wpe.weight") return (0f, 0.05f);
        if (name.EndsWith("attn.c_attn.weight", StringComparison.Ordinal)) return (0f, Uniform(1.2, c));
        if (name.EndsWith("attn.c_proj.weight", StringComparison.Ordinal)) return (0f, Uniform(1.0, c));
        if (name.EndsWith("mlp.c_fc.weight", StringComparison.Ordinal)) return (0f, Uniform(1.0, c));
        if (name.EndsWith("mlp.c_proj.weight", StringComparison.Ordinal)) return (0f, Uniform(1.0, 4 * c));
        throw new ArgumentException($"'{name}' is not a GPT-2 tensor", nameof(name));
    }

    private static List<TensorSource> Words(Gpt2Config config)
        => Layout(config).Select(t => (TensorSource)new RandomWords(t.Name, t.Shape)).ToList();

    /// <summary>The workload's F32 words, each mapped into the tensor's range (or the causal mask).</summary>
    private sealed class Conditioned : TensorSource
    {
        private readonly TensorSource _words;
        private readonly float _center;
        private readonly float _amplitude;
        private readonly long _side;

        public Conditioned(TensorSource words, Gpt2Config config) : base(words.Name, Dtype.F32, words.Shape)
        {
            if (words.Dtype != Dtype.F32) throw new ArgumentException($"'{words.Name}' is {words.Dtype}, not F32", nameof(words));
            _words = words;
            (_center, _amplitude) = Range(words.Name, config);
            _side = (long)words.Shape[^1];
        }

        public override void Read(long offset, Span<byte> destination)
        {
            var first = offset / 4;
            var end = (offset + destination.Length + 3) / 4;
            var n = (int)(end - first);
            var buffer = ArrayPool<byte>.Shared.Rent(n * 4);
            try
            {
                var words = buffer.AsSpan(0, n * 4);
                var mask = float.IsNaN(_center);
                if (!mask) _words.Read(first * 4, words);
                for (var i = 0; i < n; i++)
                {
                    var slot = words.Slice(i * 4, 4);
                    float value;
                    if (mask)
                    {
                        var e = first + i;
                        value = e % _side <= e / _side % _side ? 1f : 0f;
                    }
                    else
                    {
                        value = (float)(_center + _amplitude * (BinaryPrimitives.ReadInt32LittleEndian(slot) / 2147483648.0));
                    }
                    BinaryPrimitives.WriteSingleLittleEndian(slot, value);
                }
                words.Slice((int)(offset - first * 4), destination.Length).CopyTo(destination);
            }
            finally
            {
                ArrayPool<byte>.Shared.Return(buffer);
            }
        }
    }

    /// <summary>The workload generator's scheme: splitmix64(FNV-1a(name) + word index), little-endian.</summary>
    private sealed class RandomWords(string name, ulong[] shape) : TensorSource(name, Dtype.F32, shape)
    {
        private readonly ulong _seed = Fnv(name);

        private static ulong Fnv(string name)
        {
            ulong h = 1469598103934665603UL;
            foreach (var c in name) h = (h ^ c) * 1099511628211UL;
            return h;
        }

        public override void Read(long offset, Span<byte> destination)
        {
            Span<byte> word = stackalloc byte[8];
            for (var i = 0; i < destination.Length;)
            {
                var at = offset + i;
                BinaryPrimitives.WriteUInt64LittleEndian(word, Mix(_seed + (ulong)(at / 8)));
                var skip = (int)(at % 8);
                var n = Math.Min(8 - skip, destination.Length - i);
                word.Slice(skip, n).CopyTo(destination[i..]);
                i += n;
            }
        }

        private static ulong Mix(ulong z)
        {
            z += 0x9E3779B97F4A7C15UL;
            z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9UL;
            z = (z ^ (z >> 27)) * 0x94D049BB133111EBUL;
            return z ^ (z >> 31);
        }
    }
}
