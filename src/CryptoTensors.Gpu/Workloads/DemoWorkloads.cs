using System.Buffers.Binary;
using CryptoTensors.Gpu.Format;
using CryptoTensors.Gpu.Writing;

namespace CryptoTensors.Gpu.Workloads;

/// <summary>
/// Deterministic benchmark models. Tensor bytes are a pure function of (tensor name, byte offset), generated on
/// demand, so a model of any size is written with bounded memory and always hashes the same.
/// </summary>
public static class DemoWorkloads
{
    /// <summary>The workload names.</summary>
    public static IReadOnlyList<string> Names { get; } = ["gpt2", "lora", "qwen3-0.6b", "qwen3-4b", "tiny"];

    /// <summary>The tensors of a workload.</summary>
    public static IReadOnlyList<TensorSource> Create(string name) => name switch
    {
        "gpt2" => Gpt2(),
        "lora" => Lora(),
        "tiny" => Tiny(),
        "qwen3-0.6b" => Qwen3(layers: 28, hidden: 1024, intermediate: 3072, heads: 16, kvHeads: 8),
        "qwen3-4b" => Qwen3(layers: 36, hidden: 2560, intermediate: 9728, heads: 32, kvHeads: 8),
        _ => throw new ArgumentException($"unknown workload '{name}' (known: {string.Join(", ", Names)})", nameof(name)),
    };

    /// <summary>12-layer F32 GPT-2 small: 160 tensors, 548,090,880 bytes (the reference's benchmark model).</summary>
    public static IReadOnlyList<TensorSource> Gpt2()
    {
        var list = new List<TensorSource> { Gen("wte.weight", Dtype.F32, 50257, 768), Gen("wpe.weight", Dtype.F32, 1024, 768) };
        for (var i = 0; i < 12; i++)
        {
            var h = $"h.{i}.";
            list.Add(Gen(h + "ln_1.weight", Dtype.F32, 768));
            list.Add(Gen(h + "ln_1.bias", Dtype.F32, 768));
            list.Add(Gen(h + "attn.bias", Dtype.F32, 1, 1, 1024, 1024));
            list.Add(Gen(h + "attn.c_attn.weight", Dtype.F32, 768, 2304));
            list.Add(Gen(h + "attn.c_attn.bias", Dtype.F32, 2304));
            list.Add(Gen(h + "attn.c_proj.weight", Dtype.F32, 768, 768));
            list.Add(Gen(h + "attn.c_proj.bias", Dtype.F32, 768));
            list.Add(Gen(h + "ln_2.weight", Dtype.F32, 768));
            list.Add(Gen(h + "ln_2.bias", Dtype.F32, 768));
            list.Add(Gen(h + "mlp.c_fc.weight", Dtype.F32, 768, 3072));
            list.Add(Gen(h + "mlp.c_fc.bias", Dtype.F32, 3072));
            list.Add(Gen(h + "mlp.c_proj.weight", Dtype.F32, 3072, 768));
            list.Add(Gen(h + "mlp.c_proj.bias", Dtype.F32, 768));
        }
        list.Add(Gen("ln_f.weight", Dtype.F32, 768));
        list.Add(Gen("ln_f.bias", Dtype.F32, 768));
        return list;
    }

    /// <summary>1000 tensors of 32×32 F32 (500 LoRA layers × A and B): per-tensor overhead.</summary>
    public static IReadOnlyList<TensorSource> Lora()
    {
        var list = new List<TensorSource>(1000);
        for (var i = 0; i < 500; i++)
        {
            list.Add(Gen($"lora.{i}.A", Dtype.F32, 32, 32));
            list.Add(Gen($"lora.{i}.B", Dtype.F32, 32, 32));
        }
        return list;
    }

    /// <summary>
    /// Qwen3 (BF16) with the real tensor names and shapes of the released checkpoints (head_dim 128, vocabulary
    /// 151,936, tied embeddings): Qwen3-0.6B is 28 layers × 1024 hidden, Qwen3-4B 36 × 2560.
    /// </summary>
    public static IReadOnlyList<TensorSource> Qwen3(int layers, ulong hidden, ulong intermediate, ulong heads, ulong kvHeads)
    {
        const ulong HeadDim = 128, Vocab = 151936;
        var list = new List<TensorSource> { Gen("model.embed_tokens.weight", Dtype.BF16, Vocab, hidden), Gen("model.norm.weight", Dtype.BF16, hidden) };
        for (var i = 0; i < layers; i++)
        {
            var p = $"model.layers.{i}.";
            list.Add(Gen(p + "input_layernorm.weight", Dtype.BF16, hidden));
            list.Add(Gen(p + "post_attention_layernorm.weight", Dtype.BF16, hidden));
            list.Add(Gen(p + "self_attn.q_proj.weight", Dtype.BF16, heads * HeadDim, hidden));
            list.Add(Gen(p + "self_attn.k_proj.weight", Dtype.BF16, kvHeads * HeadDim, hidden));
            list.Add(Gen(p + "self_attn.v_proj.weight", Dtype.BF16, kvHeads * HeadDim, hidden));
            list.Add(Gen(p + "self_attn.o_proj.weight", Dtype.BF16, hidden, heads * HeadDim));
            list.Add(Gen(p + "self_attn.q_norm.weight", Dtype.BF16, HeadDim));
            list.Add(Gen(p + "self_attn.k_norm.weight", Dtype.BF16, HeadDim));
            list.Add(Gen(p + "mlp.gate_proj.weight", Dtype.BF16, intermediate, hidden));
            list.Add(Gen(p + "mlp.up_proj.weight", Dtype.BF16, intermediate, hidden));
            list.Add(Gen(p + "mlp.down_proj.weight", Dtype.BF16, hidden, intermediate));
        }
        return list;
    }

    /// <summary>A few small tensors of mixed dtypes (a quick smoke test).</summary>
    public static IReadOnlyList<TensorSource> Tiny() =>
    [
        Gen("embed.weight", Dtype.BF16, 1000, 64),
        Gen("layer.0.weight", Dtype.F32, 64, 64),
        Gen("layer.0.bias", Dtype.F32, 64),
        Gen("positions", Dtype.I64, 128),
        Gen("mask", Dtype.BOOL, 128),
    ];

    private static TensorSource Gen(string name, Dtype dtype, params ulong[] shape) => new Generated(name, dtype, shape);

    private sealed class Generated(string name, Dtype dtype, ulong[] shape) : TensorSource(name, dtype, shape)
    {
        private readonly ulong _seed = Seed(name);

        private static ulong Seed(string name)
        {
            ulong h = 1469598103934665603UL;
            foreach (var c in name) h = (h ^ c) * 1099511628211UL;
            return h;
        }

        public override void Read(long offset, Span<byte> destination)
        {
            // splitmix64 of (seed + word index): each 8-byte word depends only on its position.
            var word = offset / 8;
            var skip = (int)(offset % 8);
            Span<byte> tmp = stackalloc byte[8];
            var i = 0;
            while (i < destination.Length)
            {
                var v = Mix(_seed + (ulong)word++);
                if (skip == 0 && destination.Length - i >= 8)
                {
                    BinaryPrimitives.WriteUInt64LittleEndian(destination[i..], v);
                    i += 8;
                    continue;
                }
                BinaryPrimitives.WriteUInt64LittleEndian(tmp, v);
                var n = Math.Min(8 - skip, destination.Length - i);
                tmp.Slice(skip, n).CopyTo(destination[i..]);
                i += n;
                skip = 0;
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
