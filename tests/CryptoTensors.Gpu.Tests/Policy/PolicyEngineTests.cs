using System.Text;
using System.Text.Json;
using CryptoTensors.Gpu.Policy;

namespace CryptoTensors.Gpu.Tests.Policy;

public class PolicyEngineTests
{
    private sealed class FixedClock(DateTimeOffset now) : TimeProvider
    {
        public int Reads { get; private set; }

        public override DateTimeOffset GetUtcNow()
        {
            Reads++;
            return now;
        }
    }

    private static JsonElement Json(string s) => JsonDocument.Parse(s).RootElement.Clone();

    private static PolicyDeniedException Throws(TestDelegate action, ErrorCode code)
    {
        var ex = Assert.Throws<PolicyDeniedException>(action);
        Assert.That(ex.Code, Is.EqualTo(code), ex.Message);
        return ex;
    }

    private const string TypicalPolicy = """
        package model
        import rego.v1

        default allow := false

        allowed_devices := {"cpu", "cuda:0"}

        allow if {
            input.device in allowed_devices
            startswith(input.file.name, "models/")
            not blocked_user
            every t in input.tensors { not startswith(t, "secret.") }
            time.parse_rfc3339_ns(input.time) < time.parse_rfc3339_ns("2100-01-01T00:00:00Z")
            semver.compare(input.library.version, "0.1.0") >= 0
        }

        blocked_user if input.user.name in {"mallory", "eve"}
        """;

    private static string TypicalInput(string user, string device) => $$"""
        {"time": "2025-06-01T12:00:00Z", "time_ns": 1748779200000000000, "user": {"name": "{{user}}"}, "device": "{{device}}",
         "file": {"name": "models/a.cts"}, "tensors": ["w1", "w2"], "library": {"version": "1.2.0"} }
        """;

    [Test]
    public void CompileOnceEvaluateMany()
    {
        var policy = PolicyEngine.Compile(TypicalPolicy);
        Assert.That(policy.Evaluate(Json(TypicalInput("alice", "cpu"))), Is.EqualTo(PolicyDecision.Allow));
        Assert.That(policy.Evaluate(Json(TypicalInput("eve", "cpu"))), Is.EqualTo(PolicyDecision.Deny));
        Assert.That(policy.Evaluate(Json(TypicalInput("alice", "cuda:1"))), Is.EqualTo(PolicyDecision.Deny));
        Assert.That(policy.Evaluate(null), Is.EqualTo(PolicyDecision.Deny));
        Assert.That(policy.Evaluate(Json(TypicalInput("bob", "cuda:0"))), Is.EqualTo(PolicyDecision.Allow));
    }

    [Test]
    public void EvaluatesConcurrently()
    {
        var policy = PolicyEngine.Compile(TypicalPolicy);
        var allow = Json(TypicalInput("alice", "cpu"));
        var deny = Json(TypicalInput("eve", "cpu"));
        var results = new PolicyDecision[400];
        Parallel.For(0, results.Length, i => results[i] = policy.Evaluate(i % 2 == 0 ? allow : deny));
        for (var i = 0; i < results.Length; i++)
            Assert.That(results[i], Is.EqualTo(i % 2 == 0 ? PolicyDecision.Allow : PolicyDecision.Deny), i.ToString());
    }

    [Test]
    public void EnsureAllowedMapsEveryOutcome()
    {
        Assert.DoesNotThrow(() => PolicyEngine.EnsureAllowed(PolicyEngine.DefaultPolicy, null));
        Throws(() => PolicyEngine.EnsureAllowed("package model\nallow = false", null), ErrorCode.PolicyDenied);
        Throws(() => PolicyEngine.EnsureAllowed("package model\nallow if input.x", null), ErrorCode.PolicyUndefined);
        Throws(() => PolicyEngine.EnsureAllowed("package model\nallow = \"true\"", null), ErrorCode.PolicyNotBoolean);
        Throws(() => PolicyEngine.EnsureAllowed("package model\nallow if 1 / 0", null), ErrorCode.PolicyEvaluationFailed);
        Throws(() => PolicyEngine.EnsureAllowed("package model\nallow { true }", null), ErrorCode.PolicyUnsupported);
        var compiled = PolicyEngine.Compile("package model\nallow if input.ok");
        Assert.DoesNotThrow(() => compiled.EnsureAllowed(Json("""{"ok": true}""")));
        Throws(() => compiled.EnsureAllowed(Json("""{"ok": false}""")), ErrorCode.PolicyUndefined);
    }

    [Test]
    public void TimeNowUsesTheInjectedClockOncePerEvaluation()
    {
        var clock = new FixedClock(new DateTimeOffset(2030, 5, 6, 7, 8, 9, TimeSpan.Zero));
        var policy = PolicyEngine.Compile("""
            package model
            allow if {
                time.now_ns() == time.parse_rfc3339_ns("2030-05-06T07:08:09Z")
                time.now_ns() == time.now_ns()
            }
            """);
        Assert.That(policy.Evaluate(null, clock), Is.EqualTo(PolicyDecision.Allow));
        Assert.That(clock.Reads, Is.EqualTo(1));
        Assert.That(policy.Evaluate(null, new FixedClock(DateTimeOffset.UnixEpoch)), Is.EqualTo(PolicyDecision.Undefined));
    }

    [Test]
    public void TenMegabyteInputIsACleanError()
    {
        var sb = new StringBuilder("{\"tensors\": [");
        var item = "\"" + new string('x', 1000) + "\"";
        for (var i = 0; i < 10_000; i++) sb.Append(i == 0 ? "" : ",").Append(item);
        sb.Append("]}");
        using var doc = JsonDocument.Parse(sb.ToString());
        var policy = PolicyEngine.Compile(PolicyEngine.DefaultPolicy);
        var ex = Throws(() => policy.Evaluate(doc.RootElement), ErrorCode.PolicyEvaluationFailed);
        Assert.That(ex.Message, Does.Contain("bytes"));
        var larger = PolicyEngine.Compile(PolicyEngine.DefaultPolicy, new PolicyLimits { MaxInputBytes = 20 << 20 });
        Assert.That(larger.Evaluate(doc.RootElement), Is.EqualTo(PolicyDecision.Allow));
    }

    [Test]
    public void DeepInputIsACleanErrorNotAStackOverflow()
    {
        const int depth = 5000;
        var text = new string('[', depth) + new string(']', depth);
        using var doc = JsonDocument.Parse(text, new JsonDocumentOptions { MaxDepth = depth + 1 });
        var max = new PolicyLimits { MaxInputDepth = PolicyLimits.MaxDepthLimit };
        Throws(() => PolicyEngine.Compile(PolicyEngine.DefaultPolicy).Evaluate(doc.RootElement), ErrorCode.PolicyEvaluationFailed);
        Throws(() => PolicyEngine.Compile(PolicyEngine.DefaultPolicy, max).Evaluate(doc.RootElement), ErrorCode.PolicyEvaluationFailed);
        // The deepest accepted input can be compared and formatted (recursion bounded by the depth limit).
        var within = new string('[', 999) + "1" + new string(']', 999);
        using var ok = JsonDocument.Parse("{\"a\": " + within + ", \"b\": " + within + "}", new JsonDocumentOptions { MaxDepth = depth });
        var policy = PolicyEngine.Compile("package model\nallow if { input.a == input.b; count(sprintf(\"%v\", [input.a])) > 999 }", max);
        Assert.That(policy.Evaluate(ok.RootElement), Is.EqualTo(PolicyDecision.Allow));
    }

    [Test]
    public void TenThousandNestedParenthesesAreRejectedEvenWithTheLargestDepthLimit()
    {
        var src = "package model\nallow if " + new string('(', 10_000) + "true" + new string(')', 10_000);
        Throws(() => PolicyEngine.Compile(src), ErrorCode.PolicyUnsupported);
        var max = new PolicyLimits { MaxNestingDepth = PolicyLimits.MaxDepthLimit };
        var ex = Throws(() => PolicyEngine.Compile(src, max), ErrorCode.PolicyUnsupported);
        Assert.That(ex.Message, Does.Contain("nests"));
        // Within the largest limit, deep nesting still compiles and evaluates (or is refused cleanly near the stack's end).
        var deep = "package model\nallow if " + new string('(', 900) + "true" + new string(')', 900);
        try
        {
            Assert.That(PolicyEngine.Compile(deep, max).Evaluate(null), Is.EqualTo(PolicyDecision.Allow));
        }
        catch (PolicyDeniedException e)
        {
            Assert.That(e.Code, Is.EqualTo(ErrorCode.PolicyUnsupported));
        }
        var chain = "package model\nallow if 0" + string.Concat(Enumerable.Repeat(" + 1", 990)) + " == 990";
        Assert.That(PolicyEngine.Compile(chain, max).Evaluate(null), Is.EqualTo(PolicyDecision.Allow));
    }

    [Test]
    public void ThousandsOfIteratingLiteralsDoNotCrash()
    {
        var sb = new StringBuilder("package model\nallow if {\n");
        for (var i = 0; i < 5000; i++) sb.Append("  some x").Append(i).Append(" in [1]\n");
        sb.Append("  true\n}\n");
        var policy = PolicyEngine.Compile(sb.ToString());
        try
        {
            Assert.That(policy.Evaluate(null), Is.EqualTo(PolicyDecision.Allow));
        }
        catch (PolicyDeniedException ex)
        {
            Assert.That(ex.Code, Is.EqualTo(ErrorCode.PolicyEvaluationFailed));
        }
    }

    [Test]
    public void LimitsAreConfigurable()
    {
        const string src = "package model\nallow if {\n  some x in input.n\n  x < 0\n}";
        var input = Json("{\"n\": [" + string.Join(",", Enumerable.Range(0, 100)) + "]}");
        Assert.That(PolicyEngine.Compile(src).Evaluate(input), Is.EqualTo(PolicyDecision.Undefined));
        Throws(() => PolicyEngine.Compile(src, new PolicyLimits { MaxEvalSteps = 50 }).Evaluate(input), ErrorCode.PolicyEvaluationFailed);
        Throws(() => PolicyEngine.Compile(src, new PolicyLimits { MaxSourceBytes = 10 }), ErrorCode.PolicyUnsupported);
        Throws(() => PolicyEngine.Compile("package model\nallow if [[1]] == [[1]]", new PolicyLimits { MaxNestingDepth = 2 }), ErrorCode.PolicyUnsupported);
        Throws(() => PolicyEngine.Compile("package model\nimport rego.v1\na if b\nb := true\nallow if a", new PolicyLimits { MaxCallDepth = 2 }), ErrorCode.PolicyUnsupported);
        Throws(() => PolicyEngine.Compile(PolicyEngine.DefaultPolicy, new PolicyLimits { MaxInputDepth = 1 }).Evaluate(Json("""{"a": {}}""")), ErrorCode.PolicyEvaluationFailed);
        Assert.Throws<ArgumentOutOfRangeException>(() => PolicyEngine.Compile(src, new PolicyLimits { MaxEvalSteps = 0 }));
        Assert.Throws<ArgumentOutOfRangeException>(() => PolicyEngine.Compile(src, new PolicyLimits { MaxNestingDepth = PolicyLimits.MaxDepthLimit + 1 }));
        Assert.Throws<ArgumentOutOfRangeException>(() => PolicyEngine.Compile(src, new PolicyLimits { MaxInputDepth = PolicyLimits.MaxDepthLimit + 1 }));
        Assert.That(PolicyEngine.Compile(src).Limits, Is.EqualTo(PolicyLimits.Default));
    }

    [Test]
    public void RegexTimeoutIsAnEvaluationError()
    {
        var policy = PolicyEngine.Compile("package model\nallow if regex.match(input.p, input.s)", new PolicyLimits { RegexTimeout = TimeSpan.FromTicks(1) });
        var input = Json("{\"p\": \"^(a|aa)*b$\", \"s\": \"" + new string('a', 200_000) + "\"}");
        try
        {
            Assert.That(policy.Evaluate(input), Is.EqualTo(PolicyDecision.Undefined));
        }
        catch (PolicyDeniedException ex)
        {
            Assert.That(ex.Code, Is.EqualTo(ErrorCode.PolicyEvaluationFailed));
            Assert.That(ex.Message, Does.Contain("timed out"));
        }
    }

    [Test]
    public void ParseErrorsNameLineAndColumn()
    {
        var ex = Throws(() => PolicyEngine.Compile("package model\n\nallow if {\n    input.x == 1 with input as {}\n}"), ErrorCode.PolicyUnsupported);
        Assert.That(ex.Message, Does.Contain("4:18").And.Contain("with"));
    }

    [Test]
    public void NullSourceIsAnArgumentError()
        => Assert.Throws<ArgumentNullException>(() => PolicyEngine.Compile(null!));
}
