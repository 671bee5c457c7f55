using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace CryptoTensors.Examples.Gpt2;

/// <summary>GPT-2 hyper-parameters. <see cref="Small"/> is GPT-2 small (124M), the shapes of the <c>gpt2</c> workload.</summary>
public sealed record Gpt2Config(int Vocab, int Positions, int Embd, int Layers, int Heads, double LayerNormEps = 1e-5)
{
    /// <summary>GPT-2 small: 50,257 tokens, 1,024 positions, 768 wide, 12 layers of 12 heads.</summary>
    public static Gpt2Config Small { get; } = new(50257, 1024, 768, 12, 12);

    /// <summary>The width of one attention head.</summary>
    public int HeadDim => Embd / Heads;
}

/// <summary>LoRA adapters on the attention projections: rank <paramref name="Rank"/>, scale <paramref name="Alpha"/> / rank.</summary>
public sealed record LoraConfig(int Rank = 8, double Alpha = 16, int Seed = 1234)
{
    /// <summary>The factor of the adapter's product, alpha / rank.</summary>
    public double Scaling => Alpha / Rank;
}

/// <summary>
/// GPT-2's <c>Conv1D</c>: a linear layer whose weight is stored [in, out] (y = x @ W + b), as GPT-2 checkpoints hold it.
/// With a LoRA config it also holds <c>lora_A</c> [in, r] (small uniform values) and <c>lora_B</c> [r, out] (zeros), and
/// adds (x @ A @ B) · alpha / r.
/// </summary>
public sealed class Conv1D : nn.Module<Tensor, Tensor>
{
    private readonly Parameter _weight;
    private readonly Parameter _bias;
    private readonly Parameter? _loraA;
    private readonly Parameter? _loraB;
    private readonly double _scaling;
    private readonly long _in;
    private readonly long _out;

    public Conv1D(long inFeatures, long outFeatures, LoraConfig? lora = null, int loraSalt = 0) : base(nameof(Conv1D))
    {
        _in = inFeatures;
        _out = outFeatures;
        _weight = new Parameter(zeros(inFeatures, outFeatures));
        _bias = new Parameter(zeros(outFeatures));
        register_parameter("weight", _weight);
        register_parameter("bias", _bias);
        if (lora is not null)
        {
            // A: uniform in ±1/sqrt(in) from a seeded generator (deterministic); B: zeros, so a fresh adapter changes nothing.
            var rng = new Random(unchecked(lora.Seed * 1_000_003 + loraSalt));      // not HashCode.Combine: randomized per process
            var bound = 1.0 / Math.Sqrt(inFeatures);
            var a = new float[inFeatures * lora.Rank];
            for (var i = 0; i < a.Length; i++) a[i] = (float)((rng.NextDouble() * 2 - 1) * bound);
            _loraA = new Parameter(tensor(a, [inFeatures, lora.Rank]));
            _loraB = new Parameter(zeros(lora.Rank, outFeatures));
            _scaling = lora.Scaling;
            register_parameter("lora_A", _loraA);
            register_parameter("lora_B", _loraB);
        }
    }

    // Registered by name in the constructor (GPT-2's names); TorchSharp would otherwise also register the fields under
    // their C# names when a ModuleList adopts this module.
    protected override void RegisterComponents()
    {
    }

    public override Tensor forward(Tensor input)
    {
        using var scope = NewDisposeScope();
        var shape = input.shape.ToArray();
        shape[^1] = _out;
        var x = input.reshape(-1, _in);
        var y = addmm(_bias, x, _weight, 1, 1);
        if (_loraA is not null && _loraB is not null)
            y = y.add(x.matmul(_loraA).matmul(_loraB).mul(_scaling));
        return y.view(shape).MoveToOuterDisposeScope();
    }
}

/// <summary>Causal multi-head self-attention with GPT-2's fused <c>c_attn</c> (q, k, v) and <c>c_proj</c>, and its <c>bias</c> buffer (the causal mask).</summary>
public sealed class Gpt2Attention : nn.Module<Tensor, Tensor>
{
    private readonly Conv1D _cAttn;
    private readonly Conv1D _cProj;
    private readonly Tensor _mask;
    private readonly int _heads;
    private readonly int _embd;

    public Gpt2Attention(Gpt2Config config, LoraConfig? lora, int layer) : base(nameof(Gpt2Attention))
    {
        _heads = config.Heads;
        _embd = config.Embd;
        // [1, 1, n_ctx, n_ctx] as GPT-2 checkpoints store it: 1 where a position may attend, 0 elsewhere.
        _mask = ones(config.Positions, config.Positions).tril().view(1, 1, config.Positions, config.Positions);
        _cAttn = new Conv1D(config.Embd, 3L * config.Embd, lora, 2 * layer);
        _cProj = new Conv1D(config.Embd, config.Embd, lora, 2 * layer + 1);
        register_buffer("bias", _mask);
        register_module("c_attn", _cAttn);
        register_module("c_proj", _cProj);
    }

    // Registered by name in the constructor (GPT-2's names); TorchSharp would otherwise also register the fields under
    // their C# names when a ModuleList adopts this module.
    protected override void RegisterComponents()
    {
    }

    public override Tensor forward(Tensor x)
    {
        using var scope = NewDisposeScope();
        var (b, t) = (x.shape[0], x.shape[1]);
        var d = _embd / _heads;
        var qkv = _cAttn.call(x).split(_embd, 2);
        Tensor Heads(Tensor z) => z.view(b, t, _heads, d).transpose(1, 2);          // [B, H, T, D]
        var (q, k, v) = (Heads(qkv[0]), Heads(qkv[1]), Heads(qkv[2]));
        var scores = q.matmul(k.transpose(-2, -1)).div(Math.Sqrt(d));
        // The mask buffer's [T, T] corner, as GPT-2 uses it: where it is 0 the score becomes the dtype's lowest value.
        var allowed = _mask.narrow(2, 0, t).narrow(3, 0, t).ne(0);
        scores = scores.masked_fill(allowed.logical_not(), float.MinValue);
        var y = nn.functional.softmax(scores, -1).matmul(v).transpose(1, 2).contiguous().view(b, t, _embd);
        return _cProj.call(y).MoveToOuterDisposeScope();
    }
}

/// <summary>The MLP: <c>c_fc</c> (4× wider), GELU (tanh approximation, GPT-2's <c>gelu_new</c>), <c>c_proj</c>.</summary>
public sealed class Gpt2Mlp : nn.Module<Tensor, Tensor>
{
    private readonly Conv1D _cFc;
    private readonly Conv1D _cProj;

    public Gpt2Mlp(Gpt2Config config) : base(nameof(Gpt2Mlp))
    {
        _cFc = new Conv1D(config.Embd, 4L * config.Embd);
        _cProj = new Conv1D(4L * config.Embd, config.Embd);
        register_module("c_fc", _cFc);
        register_module("c_proj", _cProj);
    }

    /// <summary>0.5·x·(1 + tanh(√(2/π)·(x + 0.044715·x³))).</summary>
    public static Tensor GeluTanh(Tensor x)
    {
        using var scope = NewDisposeScope();
        var inner = x.add(x.pow(3).mul(0.044715)).mul(Math.Sqrt(2.0 / Math.PI));
        return x.mul(0.5).mul(inner.tanh().add(1.0)).MoveToOuterDisposeScope();
    }

    // Registered by name in the constructor (GPT-2's names); TorchSharp would otherwise also register the fields under
    // their C# names when a ModuleList adopts this module.
    protected override void RegisterComponents()
    {
    }

    public override Tensor forward(Tensor x)
    {
        using var scope = NewDisposeScope();
        return _cProj.call(GeluTanh(_cFc.call(x))).MoveToOuterDisposeScope();
    }
}

/// <summary>A pre-LN transformer block: x + attn(ln_1(x)), then x + mlp(ln_2(x)).</summary>
public sealed class Gpt2Block : nn.Module<Tensor, Tensor>
{
    private readonly LayerNorm _ln1;
    private readonly Gpt2Attention _attn;
    private readonly LayerNorm _ln2;
    private readonly Gpt2Mlp _mlp;

    public Gpt2Block(Gpt2Config config, LoraConfig? lora, int layer) : base(nameof(Gpt2Block))
    {
        _ln1 = nn.LayerNorm(config.Embd, config.LayerNormEps);
        _attn = new Gpt2Attention(config, lora, layer);
        _ln2 = nn.LayerNorm(config.Embd, config.LayerNormEps);
        _mlp = new Gpt2Mlp(config);
        register_module("ln_1", _ln1);
        register_module("attn", _attn);
        register_module("ln_2", _ln2);
        register_module("mlp", _mlp);
    }

    // Registered by name in the constructor (GPT-2's names); TorchSharp would otherwise also register the fields under
    // their C# names when a ModuleList adopts this module.
    protected override void RegisterComponents()
    {
    }

    public override Tensor forward(Tensor x)
    {
        using var scope = NewDisposeScope();
        x = x.add(_attn.call(_ln1.call(x)));
        x = x.add(_mlp.call(_ln2.call(x)));
        return x.MoveToOuterDisposeScope();
    }
}

/// <summary>
/// GPT-2 (the <c>GPT2LMHeadModel</c> architecture): token and position embeddings (<c>wte</c>, <c>wpe</c>), the blocks
/// <c>h.N</c>, the final <c>ln_f</c>, and an LM head tied to <c>wte</c>. Its state dict has the names and shapes of a
/// GPT-2 checkpoint (for <see cref="Gpt2Config.Small"/> exactly those of the <c>gpt2</c> workload), plus
/// <c>h.N.attn.c_attn.lora_A/B</c> and <c>h.N.attn.c_proj.lora_A/B</c> when built with a <see cref="LoraConfig"/>.
/// Parameters start at zero (a checkpoint is loaded into them), LoRA's A small random and B zero.
/// </summary>
public sealed class Gpt2Model : nn.Module<Tensor, Tensor>
{
    private readonly Embedding _wte;
    private readonly Embedding _wpe;
    private readonly ModuleList<Gpt2Block> _h;
    private readonly LayerNorm _lnF;

    public Gpt2Model(Gpt2Config config, LoraConfig? lora = null) : base(nameof(Gpt2Model))
    {
        Config = config;
        Lora = lora;
        _wte = nn.Embedding(config.Vocab, config.Embd);
        _wpe = nn.Embedding(config.Positions, config.Embd);
        _h = nn.ModuleList(Enumerable.Range(0, config.Layers).Select(i => new Gpt2Block(config, lora, i)).ToArray());
        _lnF = nn.LayerNorm(config.Embd, config.LayerNormEps);
        register_module("wte", _wte);
        register_module("wpe", _wpe);
        register_module("h", _h);
        register_module("ln_f", _lnF);
        using (no_grad())
        {
            _wte.weight!.zero_();
            _wpe.weight!.zero_();
        }
    }

    /// <summary>The hyper-parameters.</summary>
    public Gpt2Config Config { get; }

    /// <summary>The adapters' configuration, or null.</summary>
    public LoraConfig? Lora { get; }

    /// <summary>Logits [B, T, vocab] of token ids [B, T].</summary>
    // Registered by name in the constructor (GPT-2's names); TorchSharp would otherwise also register the fields under
    // their C# names when a ModuleList adopts this module.
    protected override void RegisterComponents()
    {
    }

    public override Tensor forward(Tensor ids)
    {
        using var scope = NewDisposeScope();
        return Head(Hidden(ids)).MoveToOuterDisposeScope();
    }

    /// <summary>The logits [B, vocab] of the last position only (what greedy decoding needs; the LM head is 50,257 × 768).</summary>
    public Tensor LastLogits(Tensor ids)
    {
        using var scope = NewDisposeScope();
        var h = Hidden(ids);
        return Head(h.select(1, h.shape[1] - 1)).MoveToOuterDisposeScope();
    }

    /// <summary>The LoRA parameters by state-dict name (empty without adapters).</summary>
    public IReadOnlyDictionary<string, Parameter> Adapters()
        => named_parameters().Where(p => IsAdapter(p.name)).ToDictionary(p => p.name, p => p.parameter, StringComparer.Ordinal);

    /// <summary>Whether a state-dict name is a LoRA adapter's.</summary>
    public static bool IsAdapter(string name) => name.EndsWith(".lora_A", StringComparison.Ordinal) || name.EndsWith(".lora_B", StringComparison.Ordinal);

    /// <summary>Freezes everything but the adapters.</summary>
    public void FreezeBase()
    {
        foreach (var (name, p) in named_parameters()) p.requires_grad = IsAdapter(name);
    }

    private Tensor Hidden(Tensor ids)
    {
        var t = ids.shape[1];
        if (t > Config.Positions) throw new ArgumentException($"{t} tokens: GPT-2 has {Config.Positions} positions", nameof(ids));
        var positions = arange(t, ScalarType.Int64, ids.device);
        var x = _wte.call(ids).add(_wpe.call(positions));
        foreach (var block in _h) x = block.call(x);
        return _lnF.call(x);
    }

    private Tensor Head(Tensor h) => h.matmul(_wte.weight!.t());
}
