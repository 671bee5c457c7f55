using System.Diagnostics;
using System.Globalization;
using System.Text.Json;
using CryptoTensors.Gpu.Format;
using CryptoTensors.Gpu.Keys;
using CryptoTensors.Gpu.Reading;
using CryptoTensors.Gpu.TorchSharp;
using CryptoTensors.Gpu.Workloads;
using CryptoTensors.Gpu.Writing;
using TorchSharp;
using TorchSharp.PyBridge;
using static TorchSharp.torch;

// Side-by-side CPU load benchmark of the TorchSharp paths (issue 15):
//   pybridge_plain_s   TorchSharp.PyBridge's module.load_safetensors(plain file): what a TorchSharp user picks today
//   plain_s            TorchLoader.LoadStateDict(module, plain file)
//   encrypted_s        TorchLoader.LoadStateDict(module, encrypted file: v2, AES-256-GCM, signed)
//   fresh_encrypted_s  TorchLoader.LoadToTorch(encrypted file) into fresh torch.empty tensors
// The first three load into the same existing module (its parameters already touched); each is the best of --repeat
// runs, interleaved. Files are in the page cache (each is read once before timing).
var json = args.Contains("--json");
var workloads = Arg("--workload")?.Split(',', StringSplitOptions.RemoveEmptyEntries) ?? ["gpt2", "qwen3-0.6b"];
var repeat = int.Parse(Arg("--repeat") ?? "3", CultureInfo.InvariantCulture);
var dirOption = Arg("--dir");
TorchRuntime.EnsureInitialized();
torch.set_num_threads(Environment.ProcessorCount);

var dir = dirOption ?? Path.Combine(Path.GetTempPath(), "ctensors-torchbench-" + Environment.ProcessId.ToString(CultureInfo.InvariantCulture));
Directory.CreateDirectory(dir);
try
{
    foreach (var workload in workloads) Bench(workload);
}
finally
{
    if (dirOption is null) Directory.Delete(dir, recursive: true);
}

void Bench(string workload)
{
    var tensors = DemoWorkloads.Create(workload);
    var bytes = tensors.Sum(t => t.ByteLength);
    var plain = Path.Combine(dir, workload + ".safetensors");
    var enc = Path.Combine(dir, workload + ".cryptotensors");
    using var master = MasterKey.Generate(kid: "bench-enc");
    using var signer = SigningKey.Generate(kid: "bench-sign");
    if (!json) Console.Error.WriteLine($"{workload}: writing {bytes:N0} bytes plain and encrypted into {dir} ...");
    CryptoTensorsWriter.Write(plain, tensors, new WriterOptions());
    CryptoTensorsWriter.Write(enc, tensors, new WriterOptions { MasterKey = master, SigningKey = signer });
    Warm(plain);
    Warm(enc);
    var keys = new ReaderOptions { MasterKey = master, VerificationKey = signer.Public, Keys = new KeyRegistry() };

    // The process's first load of this workload: fresh tensors, nothing touched before (what a program starting up pays).
    var firstFresh = Time(() =>
    {
        foreach (var t in TorchLoader.LoadToTorch(enc, CPU, keys).Values) t.Dispose();
    });
    using var module = ParameterTree.For(tensors);
    double pybridge = double.MaxValue, ours = double.MaxValue, encrypted = double.MaxValue, fresh = double.MaxValue;
    for (var i = 0; i < repeat; i++)
    {
        pybridge = Math.Min(pybridge, Time(() => module.load_safetensors(plain, strict: true)));
        ours = Math.Min(ours, Time(() => TorchLoader.LoadStateDict(module, plain, new ReaderOptions { Keys = new KeyRegistry() })));
        encrypted = Math.Min(encrypted, Time(() => TorchLoader.LoadStateDict(module, enc, keys)));
        fresh = Math.Min(fresh, Time(() =>
        {
            foreach (var t in TorchLoader.LoadToTorch(enc, CPU, keys).Values) t.Dispose();
        }));
    }
    // The module now holds the encrypted file's bytes: check them against the plain file once (not timed).
    using (var check = ParameterTree.For(tensors))
    {
        TorchLoader.LoadStateDict(check, plain, new ReaderOptions { Keys = new KeyRegistry() });
        var a = module.state_dict();
        var b = check.state_dict();
        // Byte for byte (the generated F32 patterns include NaNs, which no float comparison equates).
        if (a.Any(kv => !kv.Value.bytes.SequenceEqual(b[kv.Key].bytes))) throw new InvalidOperationException("the encrypted load differs from the plain load");
    }

    var result = new Dictionary<string, object>
    {
        ["workload"] = workload,
        ["tensors"] = tensors.Count,
        ["tensor_bytes"] = bytes,
        ["pybridge_plain_s"] = Round(pybridge),
        ["plain_s"] = Round(ours),
        ["encrypted_s"] = Round(encrypted),
        ["fresh_encrypted_s"] = Round(fresh),
        ["fresh_encrypted_first_s"] = Round(firstFresh),
        ["encrypted_over_pybridge"] = Math.Round(encrypted / pybridge, 3),
        ["encrypted_over_plain"] = Math.Round(encrypted / ours, 3),
        ["encrypted_gbps"] = Math.Round(bytes / encrypted / 1e9, 2),
        ["fresh_encrypted_gbps"] = Math.Round(bytes / fresh / 1e9, 2),
        ["repeat"] = repeat,
        ["cores"] = Environment.ProcessorCount,
        ["aead_backend"] = CryptoTensors.Gpu.Crypto.AeadBackends.ActiveName(),
    };
    if (json) Console.WriteLine(JsonSerializer.Serialize(result));
    else foreach (var (k, v) in result) Console.WriteLine($"{k,-26} {Convert.ToString(v, CultureInfo.InvariantCulture)}");
    File.Delete(plain);
    File.Delete(enc);
}

static double Round(double s) => Math.Round(s, 4);

static double Time(Action a)
{
    var sw = Stopwatch.StartNew();
    a();
    return sw.Elapsed.TotalSeconds;
}

static void Warm(string path)
{
    using var f = File.OpenRead(path);
    var buffer = new byte[8 << 20];
    while (f.Read(buffer) > 0) { }
}

string? Arg(string name)
{
    var i = Array.IndexOf(args, name);
    return i >= 0 && i + 1 < args.Length ? args[i + 1] : null;
}

/// <summary>
/// A module whose state dict has exactly the workload's names, shapes and dtypes (one submodule per dotted prefix),
/// parameters allocated and touched once: the "existing module" a user loads weights into.
/// </summary>
internal sealed class ParameterTree : nn.Module
{
    private ParameterTree(string name) : base(name) { }

    public static ParameterTree For(IReadOnlyList<TensorSource> tensors)
    {
        var root = new ParameterTree("root");
        using (no_grad())
        {
            foreach (var t in tensors)
            {
                var parts = t.Name.Split('.');
                var node = root;
                foreach (var part in parts[..^1]) node = node.Child(part);
                var p = zeros(t.Shape.Select(d => (long)d).ToArray(), TorchLoader.ScalarTypeOf(t.Dtype, t.Name));
                node.register_parameter(parts[^1], new TorchSharp.Modules.Parameter(p, requires_grad: false));
            }
        }
        return root;
    }

    private readonly Dictionary<string, ParameterTree> _children = new(StringComparer.Ordinal);

    private ParameterTree Child(string name)
    {
        if (!_children.TryGetValue(name, out var child))
        {
            child = new ParameterTree(name);
            _children[name] = child;
            register_module(name, child);
        }
        return child;
    }
}
