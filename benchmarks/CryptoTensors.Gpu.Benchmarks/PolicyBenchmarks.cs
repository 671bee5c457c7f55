using System.Text.Json;
using BenchmarkDotNet.Attributes;
using CryptoTensors.Gpu.Policy;

namespace CryptoTensors.Gpu.Benchmarks;

/// <summary>Policy cost at open: compile + evaluate a typical (under 50 lines) policy with a real input document.</summary>
[MemoryDiagnoser]
public class PolicyBenchmarks
{
    private const string Typical = """
        package model
        import rego.v1

        default allow := false

        allowed_tiers := {"prod", "staging"}
        licensed(ctx) if {
            ctx.licence_id != ""
            regex.match(`^LIC-[0-9]{6}$`, ctx.licence_id)
        }

        allow if {
            input.context.tier in allowed_tiers
            licensed(input.context)
            startswith(input.device, "cuda:")
            input.time_ns < time.parse_rfc3339_ns("2030-01-01T00:00:00Z")
            semver.compare(input.library.version, "1.0.0") >= 0
            every t in input.tensors { not startswith(t, "secret.") }
            count(input.tensors) <= 1000
            glob.match("model-*.safetensors", [], input.file.name)
        }
        """;

    private CompiledPolicy _compiled = null!;
    private JsonElement _input;

    [GlobalSetup]
    public void Setup()
    {
        _compiled = PolicyEngine.Compile(Typical);
        using var ctx = JsonDocument.Parse("""{"tier":"prod","licence_id":"LIC-123456"}""");
        _input = PolicyInput.ForCurrentProcess("model-1.safetensors", "cuda:0", ["wte.weight", "wpe.weight"], "enc", "sign", ctx.RootElement.Clone()).ToJsonElement();
    }

    [Benchmark]
    public PolicyDecision Evaluate() => _compiled.Evaluate(_input);

    [Benchmark]
    public PolicyDecision CompileAndEvaluate() => PolicyEngine.Compile(Typical).Evaluate(_input);

    [Benchmark]
    public JsonElement BuildInput() => PolicyInput.ForCurrentProcess("model-1.safetensors", "cuda:0", ["wte.weight"], "enc", "sign").ToJsonElement();
}
