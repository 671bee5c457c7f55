using System.Text.Json;
using CryptoTensors.Gpu.Policy;

namespace CryptoTensors.Gpu.Tests.Policy;

public class PolicyInputTests
{
    private sealed class FixedClock(DateTimeOffset now) : TimeProvider
    {
        public override DateTimeOffset GetUtcNow() => now;
    }

    private static readonly DateTimeOffset Instant = new DateTimeOffset(2025, 1, 2, 3, 4, 5, TimeSpan.Zero).AddTicks(1_234_567);

    [Test]
    public void ForCurrentProcessFillsEveryField()
    {
        using var ctxDoc = JsonDocument.Parse("""{"purpose": "eval", "n": 3}""");
        var input = PolicyInput.ForCurrentProcess("models/m.cts", PolicyInput.CudaDevice(1), ["a", "b"], "enc-1", "sig-1",
            ctxDoc.RootElement, new FixedClock(Instant));
        var json = input.ToJsonElement();

        Assert.That(json.ValueKind, Is.EqualTo(JsonValueKind.Object));
        Assert.That(json.GetProperty("time").GetString(), Is.EqualTo("2025-01-02T03:04:05.1234567Z"));
        Assert.That(json.GetProperty("time_ns").ValueKind, Is.EqualTo(JsonValueKind.Number));
        Assert.That(json.GetProperty("time_ns").GetInt64(), Is.EqualTo(1_735_787_045_123_456_700L));
        Assert.That(json.GetProperty("host").GetProperty("name").GetString(), Is.Not.Empty);
        Assert.That(json.GetProperty("user").GetProperty("name").GetString(), Is.EqualTo(Environment.UserName));
        Assert.That(json.GetProperty("process").GetProperty("name").GetString(), Is.Not.Empty);
        Assert.That(json.GetProperty("device").GetString(), Is.EqualTo("cuda:1"));
        Assert.That(json.GetProperty("tensors").EnumerateArray().Select(e => e.GetString()), Is.EqualTo(new[] { "a", "b" }));
        Assert.That(json.GetProperty("keys").GetProperty("enc_kid").GetString(), Is.EqualTo("enc-1"));
        Assert.That(json.GetProperty("keys").GetProperty("sign_kid").GetString(), Is.EqualTo("sig-1"));
        Assert.That(json.GetProperty("library").GetProperty("version").GetString(), Is.EqualTo(PolicyInput.CurrentLibraryVersion).And.Not.Empty);
        Assert.That(json.GetProperty("file").GetProperty("name").GetString(), Is.EqualTo("models/m.cts"));
        Assert.That(json.GetProperty("context").GetProperty("purpose").GetString(), Is.EqualTo("eval"));
        Assert.That(json.GetProperty("context").GetProperty("n").GetInt32(), Is.EqualTo(3));
        Assert.That(json.EnumerateObject().Select(p => p.Name), Is.EqualTo(new[]
        {
            "time", "time_ns", "host", "user", "process", "device", "tensors", "keys", "library", "file", "context",
        }));
    }

    [Test]
    public void UnknownMembersAreOmitted()
    {
        var json = new PolicyInput { Time = DateTimeOffset.UnixEpoch, FileName = "f" }.ToJsonElement();
        Assert.That(json.EnumerateObject().Select(p => p.Name), Is.EqualTo(new[] { "time", "time_ns", "file" }));
        Assert.That(json.GetProperty("time").GetString(), Is.EqualTo("1970-01-01T00:00:00Z"));
        Assert.That(json.GetProperty("time_ns").GetInt64(), Is.Zero);

        var onlySign = new PolicyInput { Time = DateTimeOffset.UnixEpoch, SignKid = "s", Tensors = [] }.ToJsonElement();
        Assert.That(onlySign.GetProperty("keys").EnumerateObject().Select(p => p.Name), Is.EqualTo(new[] { "sign_kid" }));
        Assert.That(onlySign.GetProperty("tensors").GetArrayLength(), Is.Zero);
    }

    [Test]
    public void TimeIsConvertedToUtc()
    {
        var local = new DateTimeOffset(2025, 1, 2, 5, 4, 5, TimeSpan.FromHours(2)).AddMilliseconds(500);
        var json = new PolicyInput { Time = local }.ToJsonElement();
        Assert.That(json.GetProperty("time").GetString(), Is.EqualTo("2025-01-02T03:04:05.5Z"));
        Assert.That(json.GetProperty("time_ns").GetInt64(), Is.EqualTo(1_735_787_045_500_000_000L));
    }

    [Test]
    public void TimeStringAndNanosecondsAgreeInThePolicyEngine()
    {
        var input = PolicyInput.ForCurrentProcess("x.cts", PolicyInput.CpuDevice, timeProvider: new FixedClock(Instant)).ToJsonElement();
        const string policy = """
            package model
            import rego.v1
            allow if {
                time.parse_rfc3339_ns(input.time) == input.time_ns
                input.device == "cpu"
                input.file.name == "x.cts"
                is_string(input.host.name)
                is_string(input.user.name)
                is_string(input.process.name)
                semver.is_valid(input.library.version)
                not input.tensors
                not input.keys
                not input.context
            }
            is_string(x) if type_name(x) == "string"
            """;
        Assert.That(PolicyEngine.Compile(policy).Evaluate(input), Is.EqualTo(PolicyDecision.Allow));
    }

    [Test]
    public void ContextMustBeAnObject()
    {
        using var doc = JsonDocument.Parse("[1]");
        var input = new PolicyInput { Time = Instant, Context = doc.RootElement };
        Assert.Throws<ArgumentException>(() => input.ToJsonElement());
    }

    [Test]
    public void CudaDeviceNames()
    {
        Assert.That(PolicyInput.CudaDevice(0), Is.EqualTo("cuda:0"));
        Assert.That(PolicyInput.CpuDevice, Is.EqualTo("cpu"));
        Assert.Throws<ArgumentOutOfRangeException>(() => PolicyInput.CudaDevice(-1));
    }

    [Test]
    public void ResultOutlivesItsBuffers()
    {
        var json = new PolicyInput { Time = Instant, Tensors = ["w"] }.ToJsonElement();
        GC.Collect();
        Assert.That(json.GetProperty("tensors")[0].GetString(), Is.EqualTo("w"));
    }
}
