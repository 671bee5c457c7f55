using System.Text.Json;
using CryptoTensors.Gpu.Crypto;
using CryptoTensors.Gpu.Format;
using CryptoTensors.Gpu.Keys;
using CryptoTensors.Gpu.Reading;
using CryptoTensors.Gpu.Tests.Cli;
using CryptoTensors.Gpu.Writing;

namespace CryptoTensors.Gpu.Tests.Policy;

/// <summary>A model whose policy allows only production deployments, end to end.</summary>
public class PolicyEndToEndTests
{
    private const string ProdOnly = """
        package model
        import rego.v1

        default allow := false

        allow if {
            input.context.tier == "prod"
            input.device == "cpu"
            startswith(input.file.name, "model")
            input.keys.enc_kid == "prod-enc"
        }
        """;

    private static JsonElement Json(string s) => JsonDocument.Parse(s).RootElement.Clone();

    private static (TempDir Tmp, MasterKey M, SigningKey S, string Path) Model(string policy)
    {
        var tmp = new TempDir();
        var m = MasterKey.Generate(kid: "prod-enc");
        var s = SigningKey.Generate("prod-sign");
        var path = tmp.File("model.ct");
        CryptoTensorsWriter.Write(path, TestModels.EveryDtype(), new WriterOptions
        {
            MasterKey = m, SigningKey = s, ChunkSize = 16, Policy = new AccessPolicy(policy, AccessPolicy.DefaultText),
        });
        return (tmp, m, s, path);
    }

    [Test]
    public void LoadsWithTheProdContextAndIsRefusedWithout()
    {
        var (tmp, m, s, path) = Model(ProdOnly);
        using (tmp) using (m) using (s)
        {
            var keys = TestModels.Keys(m, s);
            using (var r = CryptoTensorsReader.Open(path, new ReaderOptions { MasterKey = m, VerificationKey = s.Public, Keys = new(), PolicyContext = Json("""{"tier":"prod"}""") }))
                Assert.That(TestModels.ReadAll(r), Is.EquivalentTo(TestModels.Plain(TestModels.EveryDtype())));
            var ex = Assert.Throws<PolicyDeniedException>(() => CryptoTensorsReader.Open(path, keys).Dispose());
            Assert.That(ex!.Code, Is.EqualTo(ErrorCode.PolicyDenied));
            ex = Assert.Throws<PolicyDeniedException>(() => CryptoTensorsReader.Open(path, new ReaderOptions
            {
                MasterKey = m, VerificationKey = s.Public, Keys = new(), PolicyContext = Json("""{"tier":"dev"}"""),
            }).Dispose());
            Assert.That(ex!.Code, Is.EqualTo(ErrorCode.PolicyDenied));
            ex = Assert.Throws<PolicyDeniedException>(() => CryptoTensorsReader.Open(path, new ReaderOptions
            {
                MasterKey = m, VerificationKey = s.Public, Keys = new(), PolicyContext = Json("""{"tier":"prod"}"""), Device = "cuda:0",
            }).Dispose());
            Assert.That(ex!.Code, Is.EqualTo(ErrorCode.PolicyDenied), "input.device is given to the policy");
        }
    }

    [Test]
    public void TheRefusalComesBeforeAnyDataKeyIsUnwrapped()
    {
        var (tmp, m, s, path) = Model(ProdOnly);
        using (tmp) using (m) using (s)
        {
            // Break every wrapped key (and re-sign): had any unwrap run before the policy, the error would be key_unwrap.
            TestModels.MutateAndResign(path, s, meta =>
            {
                var entries = EncryptionEntry.Parse(meta[ReservedFields.Encryption]);
                foreach (var e in entries.Values) e.WrappedKey[0] ^= 0xFF;
                meta[ReservedFields.Encryption] = EncryptionEntry.Serialize(entries, chunked: true);
            });
            var ex = Assert.Throws<PolicyDeniedException>(() => CryptoTensorsReader.Open(path, TestModels.Keys(m, s)).Dispose());
            Assert.That(ex!.Code, Is.EqualTo(ErrorCode.PolicyDenied));
            // With the prod context the policy passes and the broken keys are found: unwrap runs only after the policy.
            Assert.Throws<KeyUnwrapException>(() => CryptoTensorsReader.Open(path, new ReaderOptions
            {
                MasterKey = m, VerificationKey = s.Public, Keys = new(), PolicyContext = Json("""{"tier":"prod"}"""),
            }).Dispose());
        }
    }

    [Test]
    public void TimeAndRequestedTensorsReachThePolicy()
    {
        const string Policy = """
            package model
            import rego.v1
            allow if {
                input.time_ns < time.parse_rfc3339_ns("2030-01-01T00:00:00Z")
                every t in input.tensors { startswith(t, "t.") }
            }
            """;
        var (tmp, m, s, path) = Model(Policy);
        using (tmp) using (m) using (s)
        {
            var clock2026 = new FixedClock(new DateTimeOffset(2026, 11, 23, 0, 0, 0, TimeSpan.Zero));
            var clock2031 = new FixedClock(new DateTimeOffset(2031, 1, 1, 0, 0, 0, TimeSpan.Zero));
            ReaderOptions O(TimeProvider c, params string[] tensors) => new() { MasterKey = m, VerificationKey = s.Public, Keys = new(), PolicyClock = c, RequestedTensors = tensors };
            CryptoTensorsReader.Open(path, O(clock2026, "t.f32", "t.u8")).Dispose();
            Assert.Throws<PolicyDeniedException>(() => CryptoTensorsReader.Open(path, O(clock2031, "t.f32")).Dispose());
            Assert.Throws<PolicyDeniedException>(() => CryptoTensorsReader.Open(path, O(clock2026, "t.f32", "scalar")).Dispose());
        }
    }

    private sealed class FixedClock(DateTimeOffset now) : TimeProvider
    {
        public override DateTimeOffset GetUtcNow() => now;
    }

    [Test]
    public void CliPolicyEvalShowAndContext()
    {
        var (tmp, m, s, path) = Model(ProdOnly);
        using (tmp) using (m) using (s)
        {
            File.WriteAllText(tmp.File("p.rego"), ProdOnly);
            File.WriteAllText(tmp.File("prod.json"), """{"context":{"tier":"prod"},"device":"cpu","file":{"name":"model.ct"},"keys":{"enc_kid":"prod-enc"}}""");
            File.WriteAllText(tmp.File("dev.json"), """{"context":{"tier":"dev"}}""");
            var r = CliTests.Ctensors("policy", "eval", "--policy", tmp.File("p.rego"), "--input", tmp.File("prod.json"));
            Assert.That((r.Code, r.Out.Trim()), Is.EqualTo((0, "allow")), r.Err);
            r = CliTests.Ctensors("policy", "eval", "--policy", tmp.File("p.rego"), "--input", tmp.File("dev.json"));
            Assert.That((r.Code, r.Out.Trim()), Is.EqualTo((6, "deny")));
            File.WriteAllText(tmp.File("bad.rego"), "package model\nallow if { x := [y | y := 1] }\n");
            r = CliTests.Ctensors("policy", "eval", "--policy", tmp.File("bad.rego"));
            Assert.That(r.Code, Is.EqualTo(2));
            Assert.That(r.Err, Does.Match(@"\d+:\d+"), "the error names line and column");
            File.WriteAllText(tmp.File("num.rego"), "package model\nallow := 3\n");
            Assert.That(CliTests.Ctensors("policy", "eval", "--policy", tmp.File("num.rego")).Code, Is.EqualTo(2));
            Assert.That(CliTests.Ctensors("policy", "eval", "--policy", tmp.File("nope.rego")).Code, Is.EqualTo(1));

            r = CliTests.Ctensors("policy", "show", path);
            Assert.That(r.Out.TrimEnd(), Is.EqualTo(ProdOnly.TrimEnd()));

            File.WriteAllText(tmp.File("enc.jwk"), Jwk.Write(m));
            File.WriteAllText(tmp.File("sign.pub.jwk"), Jwk.Write(s.Public));
            File.WriteAllText(tmp.File("ctx.json"), """{"tier":"prod"}""");
            Assert.That(CliTests.Ctensors("verify", path, "--key", tmp.File("enc.jwk"), "--verify-key", tmp.File("sign.pub.jwk")).Code, Is.EqualTo(6));
            r = CliTests.Ctensors("verify", path, "--key", tmp.File("enc.jwk"), "--verify-key", tmp.File("sign.pub.jwk"), "--context", tmp.File("ctx.json"));
            Assert.That(r.Code, Is.Zero, r.Err);
        }
    }
}
