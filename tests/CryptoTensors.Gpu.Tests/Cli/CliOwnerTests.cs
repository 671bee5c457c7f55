using System.Text.Json;
using System.Text.RegularExpressions;
using CryptoTensors.Gpu.Format;
using CryptoTensors.Gpu.Keys;
using CryptoTensors.Gpu.Reading;
using CryptoTensors.Gpu.Writing;
using static CryptoTensors.Gpu.Tests.Cli.CliTests;

namespace CryptoTensors.Gpu.Tests.Cli;

/// <summary>
/// The CLI as a model owner meets it: the README's policy example, rotation under a policy, no silent weak outputs,
/// messages that name the real cause, exit codes, the demo's keys and the help texts against the README.
/// </summary>
[NonParallelizable]
public sealed partial class CliOwnerTests
{
    private sealed class Owner : IDisposable
    {
        public TempDir Tmp { get; } = new();

        public Owner()
        {
            CryptoTensorsWriter.Write(Plain, TestModels.EveryDtype(), new WriterOptions { Metadata = new Dictionary<string, string> { ["format"] = "pt" } });
            var r = Ctensors("keygen", "--out-dir", Tmp.File("keys"), "--kid-prefix", "own-");
            Assert.That(r.Code, Is.Zero, r.Err);
        }

        public string Plain => Tmp.File("model.safetensors");

        public string Enc => Tmp.File("keys/enc.jwk");

        public string Sign => Tmp.File("keys/sign.jwk");

        public string Pub => Tmp.File("keys/sign.pub.jwk");

        public string File(string name) => Tmp.File(name);

        public string Encrypt(string output = "model.ct", params string[] extra)
        {
            var path = Tmp.File(output);
            var r = Ctensors(["encrypt", Plain, "-o", path, "--key", Enc, "--sign-key", Sign, .. extra]);
            Assert.That(r.Code, Is.Zero, r.Err);
            return path;
        }

        public void Dispose() => Tmp.Dispose();
    }

    private static string[] Files(string dir) => [.. Directory.GetFileSystemEntries(dir).Select(Path.GetFileName).Order(StringComparer.Ordinal)!];

    private static void AssertOneErrorLine(string err, string contains)
    {
        var lines = err.Split('\n', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries);
        Assert.That(lines, Has.Length.EqualTo(1), "one line on stderr: " + err);
        Assert.That(lines[0], Does.StartWith("ctensors: error: ").And.Contain(contains));
    }

    // ---- 3. Policy from the CLI -------------------------------------------------------------------------------------

    private static string ReadmeBlock(string after, string lang)
    {
        var readme = System.IO.File.ReadAllText(Path.Combine(TestPaths.RepoRoot, "README.md"));
        var at = readme.IndexOf(after, StringComparison.Ordinal);
        Assert.That(at, Is.GreaterThanOrEqualTo(0), $"README.md has no '{after}'");
        var open = readme.IndexOf("```" + lang + "\n", at, StringComparison.Ordinal) + 4 + lang.Length;
        var close = readme.IndexOf("```", open, StringComparison.Ordinal);
        return readme[open..close];
    }

    [Test]
    public void ReadmePolicyExampleWorksAsWritten()
    {
        using var o = new Owner();
        System.IO.File.WriteAllText(o.File("prod.rego"), ReadmeBlock("A policy for production GPUs", "rego"));
        System.IO.File.WriteAllText(o.File("ctx.json"), ReadmeBlock("and the context a production loader passes", "json"));
        var commands = ReadmeBlock("and the context a production loader passes", "sh")
            .Split('\n', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries);
        int[] expected = [0, 0, 0, 0, 6];
        Assert.That(commands, Has.Length.EqualTo(expected.Length), "the README's command block changed: update this test");
        for (var i = 0; i < commands.Length; i++)
        {
            var line = commands[i];
            var hash = line.IndexOf(" #", StringComparison.Ordinal);
            if (hash >= 0) line = line[..hash];
            var words = line.Split(' ', StringSplitOptions.RemoveEmptyEntries);
            Assert.That(words[0], Is.EqualTo("ctensors"));
            var args = words.Skip(1).Select(w => PathLike().IsMatch(w) ? o.File(w) : w).ToArray();
            var r = Ctensors(args);
            Assert.That(r.Code, Is.EqualTo(expected[i]), $"{commands[i]}\n{r.Out}\n{r.Err}");
            if (i == 4)
            {
                var err = r.Err.Split('\n', StringSplitOptions.RemoveEmptyEntries);
                Assert.That(err, Has.Length.EqualTo(2), "the denial, then the input document (--explain)");
                Assert.That(err[0], Does.Contain("data.model.allow is false"));
                Assert.That(err[1], Does.Contain("\"device\":\"cpu\"").And.Contain("\"context\":{\"tier\":\"prod\"").And.Contain("\"enc_kid\":\"own-enc\""));
                var k = JsonDocument.Parse(System.IO.File.ReadAllText(o.Enc)).RootElement.GetProperty("k").GetString()!;
                Assert.That(r.Err + r.Out, Does.Not.Contain(k[..16]), "no key material in the explanation");
            }
        }
        Assert.That(Ctensors("policy", "eval", "--policy", o.File("prod.rego"), "--context", o.File("ctx.json")).Code, Is.EqualTo(6), "cpu is denied");
    }

    [GeneratedRegex(@"^[\w./-]+\.(ct|rego|json|safetensors|jwk)$")]
    private static partial Regex PathLike();

    [Test]
    public void WithoutExplainADenialNamesTheRuleAndTheOptionsButNotTheDocument()
    {
        using var o = new Owner();
        System.IO.File.WriteAllText(o.File("gpu.rego"), "package model\nimport rego.v1\ndefault allow := false\nallow if startswith(input.device, \"cuda:\")\n");
        var ct = o.Encrypt("m.ct", "--policy", o.File("gpu.rego"));
        var r = Ctensors("decrypt", ct, "-o", o.File("out.safetensors"), "--key", o.Enc, "--verify-key", o.Pub);
        Assert.That(r.Code, Is.EqualTo(6));
        AssertOneErrorLine(r.Err, "data.model.allow is false");
        Assert.That(r.Err, Does.Contain("--explain").And.Not.Contain("\"device\""));
        Assert.That(System.IO.File.Exists(o.File("out.safetensors")), Is.False);
        r = Ctensors("decrypt", ct, "-o", o.File("out.safetensors"), "--key", o.Enc, "--verify-key", o.Pub, "--device", "CUDA:1");
        Assert.That(r.Code, Is.Zero, r.Err);
        Assert.That(Ctensors("verify", ct, "--key", o.Enc, "--verify-key", o.Pub, "--device", "gpu").Code, Is.EqualTo(1), "a device that is not cpu or cuda:N is a usage error");
        r = Ctensors("verify", ct, "--key", o.Enc, "--verify-key", o.Pub, "--json", "--explain");
        Assert.That(r.Code, Is.EqualTo(6));
        using var doc = JsonDocument.Parse(r.Out);
        Assert.That(doc.RootElement.GetProperty("error").GetProperty("kind").GetString(), Is.EqualTo("policy"));
        Assert.That(r.Err, Does.Contain("\"device\":\"cpu\""));
    }

    [Test]
    public void RewrapEvaluatesTheOldPolicyWithTheSameOptionsAndTheOwnerMaySkipIt()
    {
        using var o = new Owner();
        System.IO.File.WriteAllText(o.File("gpu.rego"), "package model\nimport rego.v1\ndefault allow := false\nallow if { startswith(input.device, \"cuda:\"); input.context.tier == \"prod\" }\n");
        System.IO.File.WriteAllText(o.File("ctx.json"), "{\"tier\":\"prod\"}");
        var ct = o.Encrypt("m.ct", "--policy", o.File("gpu.rego"));
        var before = System.IO.File.ReadAllBytes(ct);
        Assert.That(Ctensors("keygen", "--out-dir", o.File("new"), "--kid-prefix", "new-").Code, Is.Zero);
        string[] rotate = ["rewrap", ct, "-o", o.File("r.ct"), "--key", o.Enc, "--verify-key", o.Pub, "--new-key", o.File("new/enc.jwk"), "--new-sign-key", o.File("new/sign.jwk")];

        var r = Ctensors(rotate);
        Assert.That(r.Code, Is.EqualTo(6), "the old policy denies the default input");
        AssertOneErrorLine(r.Err, "data.model.allow is false");
        Assert.That(System.IO.File.Exists(o.File("r.ct")), Is.False);

        r = Ctensors([.. rotate, "--device", "cuda:0", "--context", o.File("ctx.json")]);
        Assert.That(r.Code, Is.Zero, r.Err);
        System.IO.File.Delete(o.File("r.ct"));

        // The owner replaces the policy without satisfying the old one; the old keys are still required.
        System.IO.File.WriteAllText(o.File("open.rego"), "package model\nimport rego.v1\ndefault allow := true\n");
        r = Ctensors([.. rotate, "--ignore-old-policy", "--policy", o.File("open.rego")]);
        Assert.That(r.Code, Is.Zero, r.Err);
        r = Ctensors("verify", o.File("r.ct"), "--key", o.File("new/enc.jwk"), "--verify-key", o.File("new/sign.pub.jwk"));
        Assert.That(r.Code, Is.Zero, r.Err);
        System.IO.File.Delete(o.File("r.ct"));
        r = Ctensors("rewrap", ct, "-o", o.File("r.ct"), "--key", o.File("new/enc.jwk"), "--verify-key", o.Pub, "--new-key", o.File("new/enc.jwk"),
            "--new-sign-key", o.File("new/sign.jwk"), "--ignore-old-policy");
        Assert.That(r.Code, Is.EqualTo(8), "--ignore-old-policy still needs the old master key: " + r.Err);
        Assert.That(r.Err, Does.Contain("kid 'new-enc'").And.Contain("kid 'own-enc'"), "the kid mismatch is named");
        Assert.That(System.IO.File.Exists(o.File("r.ct")), Is.False);
        Assert.That(System.IO.File.ReadAllBytes(ct), Is.EqualTo(before), "the input is untouched");
    }

    [Test]
    public void PolicyEvalBuildsTheDocumentALoadWouldSee()
    {
        using var o = new Owner();
        System.IO.File.WriteAllText(o.File("p.rego"), "package model\nimport rego.v1\ndefault allow := false\nallow if { input.device == \"cuda:3\"; input.file.name == \"m.ct\"; input.context.x == 1 }\n");
        System.IO.File.WriteAllText(o.File("ctx.json"), "{\"x\":1}");
        var r = Ctensors("policy", "eval", "--policy", o.File("p.rego"), "--context", o.File("ctx.json"), "--device", "cuda:3", "--file", "m.ct", "--explain");
        Assert.That((r.Code, r.Out.Trim()), Is.EqualTo((0, "allow")), r.Err);
        Assert.That(r.Err, Does.Contain("\"device\":\"cuda:3\"").And.Contain("\"time_ns\""));
        r = Ctensors("policy", "eval", "--policy", o.File("p.rego"), "--context", o.File("ctx.json"), "--device", "cuda:2", "--file", "m.ct");
        Assert.That((r.Code, r.Out.Trim()), Is.EqualTo((6, "deny")));
        r = Ctensors("policy", "eval", "--policy", o.File("p.rego"), "--input", o.File("ctx.json"), "--device", "cuda:2");
        Assert.That(r.Code, Is.EqualTo(1), "--input is the whole document: not with --device");
        AssertOneErrorLine(r.Err, "--input");
        System.IO.File.WriteAllText(o.File("broken.rego"), "package model\nallow if {\n");
        r = Ctensors("policy", "eval", "--policy", o.File("broken.rego"));
        Assert.That(r.Code, Is.EqualTo(2));
        AssertOneErrorLine(r.Err, "--policy '" + o.File("broken.rego") + "'");
        r = Ctensors("policy", "eval", "--policy", o.File("missing.rego"));
        Assert.That(r.Code, Is.EqualTo(1), "an unreadable policy file is an I/O error");
        AssertOneErrorLine(r.Err, "no such file");
    }

    // ---- 4. No silent weak outputs ----------------------------------------------------------------------------------

    [TestCase("does.not.exist", "'does.not.exist'")]
    [TestCase("t.f32,t.u8,t.f3", "'t.f3'")]
    [TestCase(" t.f32 , nope ", "'nope'")]
    public void EncryptRefusesATensorNameTheInputLacks(string filter, string named)
    {
        using var o = new Owner();
        var r = Ctensors("encrypt", o.Plain, "-o", o.File("e.ct"), "--key", o.Enc, "--sign-key", o.Sign, "--tensors", filter);
        Assert.That(r.Code, Is.EqualTo(1));
        AssertOneErrorLine(r.Err, "--tensors: no tensor named " + named);
        Assert.That(Files(o.Tmp.Path), Is.EqualTo(new[] { "keys", "model.safetensors" }), "nothing written");
    }

    [TestCase("")]
    [TestCase(",")]
    public void AFilterThatSelectsNothingNeedsAllowPlain(string filter)
    {
        using var o = new Owner();
        var r = Ctensors("encrypt", o.Plain, "-o", o.File("e.ct"), "--key", o.Enc, "--sign-key", o.Sign, "--tensors", filter);
        Assert.That(r.Code, Is.EqualTo(1));
        AssertOneErrorLine(r.Err, "--allow-plain");
        Assert.That(System.IO.File.Exists(o.File("e.ct")), Is.False);
        r = Ctensors("encrypt", o.Plain, "-o", o.File("e.ct"), "--key", o.Enc, "--sign-key", o.Sign, "--tensors", filter, "--allow-plain");
        Assert.That(r.Code, Is.Zero, r.Err);
        using var reader = CryptoTensorsReader.Open(o.File("e.ct"), new ReaderOptions { Keys = new() });
        Assert.That(reader.IsEncrypted, Is.False, "the plain copy the user asked for");
    }

    [Test]
    public void AnOutputThatIsTheInputIsRefusedUnlessForced()
    {
        using var o = new Owner();
        var plainBytes = System.IO.File.ReadAllBytes(o.Plain);
        var r = Ctensors("encrypt", o.Plain, "-o", o.Plain, "--key", o.Enc, "--sign-key", o.Sign);
        Assert.That(r.Code, Is.EqualTo(1));
        AssertOneErrorLine(r.Err, "is the input itself");
        Assert.That(System.IO.File.ReadAllBytes(o.Plain), Is.EqualTo(plainBytes));

        var ct = o.Encrypt();
        var ctBytes = System.IO.File.ReadAllBytes(ct);
        File.CreateSymbolicLink(o.File("alias.ct"), ct);
        foreach (var target in new[] { ct, o.File("alias.ct"), o.File("./keys/../model.ct") })
        {
            r = Ctensors("decrypt", ct, "-o", target, "--key", o.Enc, "--verify-key", o.Pub);
            Assert.That(r.Code, Is.EqualTo(1), target);
            AssertOneErrorLine(r.Err, "--force");
            Assert.That(System.IO.File.ReadAllBytes(ct), Is.EqualTo(ctBytes), "the protected file is untouched");
        }

        r = Ctensors("encrypt", o.Plain, "-o", o.Plain, "--key", o.Enc, "--sign-key", o.Sign, "--force");
        Assert.That(r.Code, Is.Zero, r.Err);
        using (var reader = CryptoTensorsReader.Open(o.Plain, TestModels.Keys(Jwk.LoadMasterKey(o.Enc), Jwk.LoadSigningKey(o.Sign))))
            Assert.That(reader.IsEncrypted, Is.True);
        r = Ctensors("decrypt", o.Plain, "-o", o.Plain, "--key", o.Enc, "--verify-key", o.Pub, "--force");
        Assert.That(r.Code, Is.Zero, r.Err);
        Assert.That(System.IO.File.ReadAllBytes(o.Plain), Is.EqualTo(plainBytes), "decrypt in place gives the plain file back");
    }

    [Test]
    public void ChunkSizeIsRefusedWithVersionOneAndAGrowingChunkSizeIsWarnedAbout()
    {
        using var o = new Owner();
        var r = Ctensors("encrypt", o.Plain, "-o", o.File("e.ct"), "--key", o.Enc, "--sign-key", o.Sign, "--format-version", "1", "--chunk-size", "4096");
        Assert.That(r.Code, Is.EqualTo(1));
        AssertOneErrorLine(r.Err, "--chunk-size applies to format version 2 only");
        Assert.That(System.IO.File.Exists(o.File("e.ct")), Is.False);

        r = Ctensors("encrypt", o.Plain, "-o", o.File("v1.ct"), "--key", o.Enc, "--sign-key", o.Sign, "--format-version", "1");
        Assert.That(r.Code, Is.Zero, r.Err);
        Assert.That(r.Err, Does.Not.Contain("warning"));
        r = Ctensors("encrypt", o.Plain, "-o", o.File("big.ct"), "--key", o.Enc, "--sign-key", o.Sign);
        Assert.That(r.Err, Does.Not.Contain("warning"), "the default chunk size adds no tag beyond one per tensor");

        r = Ctensors("encrypt", o.Plain, "-o", o.File("small.ct"), "--key", o.Enc, "--sign-key", o.Sign, "--chunk-size", "16");
        Assert.That(r.Code, Is.Zero, r.Err);
        Assert.That(r.Err, Does.Contain("ctensors: warning: --chunk-size 16 "));
        var grown = new FileInfo(o.File("small.ct")).Length;
        var plain = new FileInfo(o.Plain).Length;
        Assert.That(grown, Is.GreaterThan(plain * 11 / 10), "the warning is true: the file grew by more than 10 %");
    }

    [Test]
    public void VerifyOfAPlainFileSaysNothingWasAuthenticated()
    {
        using var o = new Owner();
        var r = Ctensors("verify", o.Plain);
        Assert.That(r.Code, Is.Zero, r.Err);
        Assert.That(r.Out, Does.Contain("NOTHING WAS AUTHENTICATED").And.Not.Contain("verified"));
        r = Ctensors("verify", o.Plain, "--json");
        using (var doc = JsonDocument.Parse(r.Out)) Assert.That(doc.RootElement.GetProperty("authenticated").GetBoolean(), Is.False);
        var ct = o.Encrypt();
        r = Ctensors("verify", ct, "--key", o.Enc, "--verify-key", o.Pub, "--json");
        using (var doc = JsonDocument.Parse(r.Out)) Assert.That(doc.RootElement.GetProperty("authenticated").GetBoolean(), Is.True);
        r = Ctensors("verify", ct, "--key", o.Enc, "--verify-key", o.Pub);
        Assert.That(r.Out, Does.Contain("verified").And.Not.Contain("NOTHING"));
    }

    // ---- 5. Messages that name the real cause -----------------------------------------------------------------------

    [Test]
    public void ADirectoryWhereAFileIsExpectedIsNamedAsSuch()
    {
        using var o = new Owner();
        Directory.CreateDirectory(o.File("d"));
        foreach (var args in new[]
        {
            new[] { "verify", o.File("d") },
            ["decrypt", o.File("d"), "-o", o.File("x")],
            ["encrypt", o.File("d"), "-o", o.File("x"), "--key", o.Enc, "--sign-key", o.Sign],
        })
        {
            var r = Ctensors(args);
            Assert.That(r.Code, Is.EqualTo(1), string.Join(' ', args));
            AssertOneErrorLine(r.Err, "is a directory without model.safetensors.index.json");
        }
        foreach (var args in new[]
        {
            new[] { "inspect", o.File("d") },
            ["rewrap", o.File("d"), "-o", o.File("x"), "--new-key", o.Enc, "--new-sign-key", o.Sign],
            ["verify", o.Plain, "--key", o.File("d")],
            ["policy", "eval", "--policy", o.File("d")],
        })
        {
            var r = Ctensors(args);
            Assert.That(r.Code, Is.EqualTo(1), string.Join(' ', args));
            AssertOneErrorLine(r.Err, "is a directory");
            Assert.That(r.Err, Does.Not.Contain("denied"));
        }
        Assert.That(Files(o.File("d")), Is.Empty);
    }

    [Test]
    public void ANonSafetensorsFileIsNamedAsSuch()
    {
        using var o = new Owner();
        System.IO.File.WriteAllText(o.File("notes.txt"), "these are not tensors, just a text file\n");
        foreach (var args in new[] { new[] { "verify", o.File("notes.txt") }, ["inspect", o.File("notes.txt")], ["encrypt", o.File("notes.txt"), "-o", o.File("x"), "--key", o.Enc, "--sign-key", o.Sign] })
        {
            var r = Ctensors(args);
            Assert.That(r.Code, Is.EqualTo(2), string.Join(' ', args));
            AssertOneErrorLine(r.Err, "not a safetensors file");
        }
        Assert.That(System.IO.File.Exists(o.File("x")), Is.False);
    }

    [Test]
    public void EncryptingAnEncryptedFileSaysItIsAlreadyEncrypted()
    {
        using var o = new Owner();
        var ct = o.Encrypt();
        var r = Ctensors("encrypt", ct, "-o", o.File("twice.ct"), "--key", o.Enc, "--sign-key", o.Sign);
        Assert.That(r.Code, Is.EqualTo(1));
        AssertOneErrorLine(r.Err, "is already encrypted");
        Assert.That(r.Err, Does.Contain("rewrap"));
        Assert.That(System.IO.File.Exists(o.File("twice.ct")), Is.False);
    }

    [Test]
    public void KeyOptionErrorsNameTheOptionTheFileAndTheKid()
    {
        using var o = new Owner();
        var ct = o.Encrypt();
        System.IO.File.WriteAllText(o.File("junk.jwk"), "this is not json");
        Assert.That(Ctensors("keygen", "--out-dir", o.File("other"), "--kid-prefix", "other-").Code, Is.Zero);
        var old = Environment.GetEnvironmentVariable(EnvKeyProvider.VariableName);
        Environment.SetEnvironmentVariable(EnvKeyProvider.VariableName, null);
        try
        {
            (string[] Args, int Code, string Says)[] cases =
            [
                (["verify", ct, "--verify-key", o.Pub], 7, "needs the master key with kid 'own-enc': give --key"),
                (["decrypt", ct, "-o", o.File("x"), "--key", o.Enc], 7, "needs the verification key with kid 'own-sign': give --verify-key"),
                (["verify", ct, "--key", o.File("other/enc.jwk"), "--verify-key", o.Pub], 8, "the master key used has kid 'other-enc' but the header names kid 'own-enc'"),
                (["verify", ct, "--key", o.Enc, "--verify-key", o.File("other/sign.pub.jwk")], 5, "the verification key used has kid 'other-sign' but the header names kid 'own-sign'"),
                (["encrypt", o.Plain, "-o", o.File("x"), "--key", o.Enc, "--sign-key", o.Pub], 7, $"--sign-key '{o.Pub}' holds only a public Ed25519 key"),
                (["encrypt", o.Plain, "-o", o.File("x"), "--key", o.Sign, "--sign-key", o.Sign], 7, $"--key '{o.Sign}' holds no master key"),
                (["verify", ct, "--key", o.Sign, "--verify-key", o.Pub], 7, $"--key '{o.Sign}' holds no master key"),
                (["verify", ct, "--key", o.Enc, "--verify-key", o.Enc], 7, $"--verify-key '{o.Enc}' holds no Ed25519 key"),
                (["verify", ct, "--key", o.File("junk.jwk"), "--verify-key", o.Pub], 7, $"--key '{o.File("junk.jwk")}': invalid JWK: not JSON"),
                (["verify", ct, "--key", o.File("none.jwk"), "--verify-key", o.Pub], 1, $"--key '{o.File("none.jwk")}': no such file"),
                (["encrypt", o.Plain, "-o", o.File("x"), "--sign-key", o.Sign], 7, "no master key (--key) given and none in CRYPTOTENSOR_KEYS"),
            ];
            foreach (var (args, code, says) in cases)
            {
                var r = Ctensors(args);
                Assert.That(r.Code, Is.EqualTo(code), string.Join(' ', args) + "\n" + r.Err);
                AssertOneErrorLine(r.Err, says);
            }
            Assert.That(System.IO.File.Exists(o.File("x")), Is.False);

            // CRYPTOTENSOR_KEYS takes JSON: a path there is refused saying so (and then works as its content).
            Environment.SetEnvironmentVariable(EnvKeyProvider.VariableName, o.Enc);
            var e = Ctensors("verify", ct, "--verify-key", o.Pub);
            Assert.That(e.Code, Is.EqualTo(7));
            AssertOneErrorLine(e.Err, $"CRYPTOTENSOR_KEYS takes a JWK or JWK Set as JSON; it holds the path '{o.Enc}'");
            Environment.SetEnvironmentVariable(EnvKeyProvider.VariableName, "c2VjcmV0LWtleS1ieXRlcw==");
            e = Ctensors("verify", ct, "--verify-key", o.Pub);
            Assert.That(e.Code, Is.EqualTo(7));
            Assert.That(e.Err, Does.Contain("takes a JWK or JWK Set as JSON").And.Not.Contain("c2VjcmV0"), "a value that is not a path is never echoed");
            Environment.SetEnvironmentVariable(EnvKeyProvider.VariableName, System.IO.File.ReadAllText(o.Enc));
            Assert.That(Ctensors("verify", ct, "--verify-key", o.Pub).Code, Is.Zero);
        }
        finally
        {
            Environment.SetEnvironmentVariable(EnvKeyProvider.VariableName, old);
        }
    }

    [Test]
    public void AnOutputThatIsAnExistingDirectoryFailsBeforeAnyWork()
    {
        using var o = new Owner();
        Directory.CreateDirectory(o.File("out"));
        var ct = o.Encrypt();
        foreach (var args in new[]
        {
            new[] { "encrypt", o.Plain, "-o", o.File("out"), "--key", o.Enc, "--sign-key", o.Sign },
            ["decrypt", ct, "-o", o.File("out"), "--key", o.Enc, "--verify-key", o.Pub],
            ["rewrap", ct, "-o", o.File("out"), "--key", o.Enc, "--verify-key", o.Pub, "--new-key", o.Enc, "--new-sign-key", o.Sign],
        })
        {
            var r = Ctensors(args);
            Assert.That(r.Code, Is.EqualTo(1), string.Join(' ', args));
            AssertOneErrorLine(r.Err, $"-o '{o.File("out")}' is an existing directory");
            Assert.That(r.Err + r.Out, Does.Not.Contain("%"), "no progress: nothing was done");
        }
        Assert.That(Files(o.File("out")), Is.Empty);
    }

    // ---- 6. Exit codes ----------------------------------------------------------------------------------------------

    [TestCase("--chunk-size", "0")]
    [TestCase("--chunk-size", "-5")]
    [TestCase("--chunk-size", "abc")]
    [TestCase("--chunk-size", "268435457")]
    [TestCase("--chunk-size", "2147483647")]
    [TestCase("--format-version", "3")]
    [TestCase("--no-such-option", null)]
    public void BadOptionValuesAreUsageErrorsOnOneLine(string option, string? value)
    {
        using var o = new Owner();
        var r = Ctensors(["encrypt", o.Plain, "-o", o.File("e.ct"), "--key", o.Enc, "--sign-key", o.Sign, option, .. value is null ? Array.Empty<string>() : [value]]);
        Assert.That(r.Code, Is.EqualTo(1), r.Err);
        AssertOneErrorLine(r.Err, value ?? option);
        Assert.That(r.Err, Does.Not.Contain("Usage:"), "no help text without --help");
        Assert.That(System.IO.File.Exists(o.File("e.ct")), Is.False);
    }

    [Test]
    public void ArgumentErrorsPrintOneLineAndHelpOnlyWithHelp()
    {
        foreach (var args in new[] { new[] { "encrypt" }, ["verify"], ["no-such-command"], [], ["bench", "--repeat", "0"], ["demo", "--workload", "gpt3"], ["keygen", "--out-dir", "/tmp/x", "--alg", "des"] })
        {
            var r = Ctensors(args);
            Assert.That(r.Code, Is.EqualTo(1), string.Join(' ', args));
            Assert.That(r.Err.Split('\n', StringSplitOptions.RemoveEmptyEntries), Has.All.StartWith("ctensors: error: "), string.Join(' ', args) + ": " + r.Err);
            Assert.That(r.Err + r.Out, Does.Not.Contain("Usage:"));
        }
        var help = Ctensors("encrypt", "--help");
        Assert.That(help.Code, Is.Zero);
        Assert.That(help.Out, Does.Contain("Usage:"));
    }

    [Test]
    public void OptionValuesAreCaseInsensitiveWhereUnambiguous()
    {
        using var tmp = new TempDir();
        var r = Ctensors("keygen", "--out-dir", tmp.File("k"), "--alg", "AES256GCM");
        Assert.That(r.Code, Is.Zero, r.Err);
        Assert.That(Jwk.LoadMasterKey(tmp.File("k/enc.jwk")).Alg, Is.EqualTo("aes256gcm"), "normalised to the reference's spelling");
        r = Ctensors("keygen", "--out-dir", tmp.File("k2"), "--alg", "ChaCha20Poly1305");
        Assert.That(r.Code, Is.Zero, r.Err);
        Assert.That(Jwk.LoadMasterKey(tmp.File("k2/enc.jwk")).Alg, Is.EqualTo("chacha20poly1305"));
        r = Ctensors("demo", "--workload", "TINY", "--read-path", "positionalread", "--repeat", "1");
        Assert.That(r.Code, Is.Zero, r.Err);
        Assert.That(r.Out, Does.Contain("workload tiny").And.Contain("PositionalRead"));
    }

    [Test]
    public void ABrokenPolicyFileIsExitTwoOnEveryCommandThatTakesOne()
    {
        using var o = new Owner();
        System.IO.File.WriteAllText(o.File("bad.rego"), "package model\nallow if { input.x = \n");
        var ct = o.Encrypt();
        foreach (var args in new[]
        {
            new[] { "encrypt", o.Plain, "-o", o.File("e.ct"), "--key", o.Enc, "--sign-key", o.Sign, "--policy", o.File("bad.rego") },
            ["rewrap", ct, "-o", o.File("e.ct"), "--key", o.Enc, "--verify-key", o.Pub, "--new-key", o.Enc, "--new-sign-key", o.Sign, "--policy", o.File("bad.rego")],
            ["policy", "eval", "--policy", o.File("bad.rego")],
        })
        {
            var r = Ctensors(args);
            Assert.That(r.Code, Is.EqualTo(2), string.Join(' ', args));
            AssertOneErrorLine(r.Err, $"--policy '{o.File("bad.rego")}'");
        }
        Assert.That(System.IO.File.Exists(o.File("e.ct")), Is.False);
    }

    // ---- 7. Demo and help -------------------------------------------------------------------------------------------

    [Test]
    [System.Runtime.Versioning.UnsupportedOSPlatform("windows")]
    public void DemoWithADirKeepsTheKeysBesideTheEncryptedFileAndSaysWhatItDoes()
    {
        using var tmp = new TempDir();
        var r = Ctensors("demo", "--workload", "tiny", "--dir", tmp.File("demo"), "--repeat", "1");
        Assert.That(r.Code, Is.Zero, r.Err);
        Assert.That(r.Out, Does.Contain("writing the plain file").And.Contain("writing the encrypted file").And.Contain("keys written to " + tmp.File("demo/keys")));
        Assert.That(File.GetUnixFileMode(tmp.File("demo/keys/enc.jwk")), Is.EqualTo(UnixFileMode.UserRead | UnixFileMode.UserWrite));
        var verifyLine = r.Out.Split('\n').Select(l => l.Trim()).Single(l => l.StartsWith("ctensors verify ", StringComparison.Ordinal));
        var v = Ctensors([.. verifyLine.Split(' ').Skip(1)]);
        Assert.That(v.Code, Is.Zero, "the command the demo prints works: " + v.Err);
        Assert.That(v.Out, Does.Contain("verified 5 tensors"));
    }

    [Test]
    public void HelpTextsMatchTheReadme()
    {
        var readme = System.IO.File.ReadAllText(Path.Combine(TestPaths.RepoRoot, "README.md"));
        var cli = ReadmeBlock("## CLI", "sh");
        var synopsis = new Dictionary<string, HashSet<string>>(StringComparer.Ordinal);
        string? current = null;
        foreach (var raw in cli.Split('\n', StringSplitOptions.RemoveEmptyEntries))
        {
            var line = raw.Split("  #")[0].Replace(" -o ", " --output ", StringComparison.Ordinal);
            var m = Regex.Match(line, @"^ctensors (policy \w+|[\w-]+)");
            if (m.Success) synopsis[current = m.Groups[1].Value] = [];
            foreach (Match o in Regex.Matches(line, @"(?<![\w-])--[a-z][a-z0-9-]*")) synopsis[current!].Add(o.Value);
        }
        Assert.That(synopsis.Keys, Is.EquivalentTo(new[] { "keygen", "encrypt", "inspect", "verify", "decrypt", "rewrap", "policy eval", "policy show", "demo", "bench", "keyserver" }));
        foreach (var (command, options) in synopsis)
        {
            var help = Ctensors([.. command.Split(' '), "--help"]);
            Assert.That(help.Code, Is.Zero, command);
            var listed = Regex.Matches(help.Out[help.Out.IndexOf("Options:", StringComparison.Ordinal)..], @"(?<![\w-])--[a-z][a-z0-9-]*").Select(x => x.Value)
                .Where(x => x is not "--help").ToHashSet(StringComparer.Ordinal);
            Assert.That(listed, Is.EquivalentTo(options), $"'ctensors {command} --help' and the README's synopsis list the same options");
            if (listed.Overlaps(["--key", "--verify-key", "--sign-key"]))
                Assert.That(help.Out, Does.Contain("CRYPTOTENSOR_KEYS"), command + ": the environment variable is named where keys are taken");
        }
        Assert.That(Ctensors("decrypt", "--help").Out, Does.Contain("directory"));
        Assert.That(Ctensors("policy", "show", "--help").Out, Does.Contain("--remote"));
        Assert.That(readme, Does.Contain("policy show model.ct [--remote]"));
    }

    [Test]
    public void VerifyListsTensorsInTheSameOrderForShardedAndSingleFiles()
    {
        using var o = new Owner();
        var all = TestModels.EveryDtype();
        var shard = Directory.CreateDirectory(o.File("sharded")).FullName;
        var map = new Dictionary<string, string>();
        foreach (var g in all.Select((t, i) => (t, file: $"model-{i % 2 + 1:00000}-of-00002.safetensors")).GroupBy(x => x.file))
        {
            CryptoTensorsWriter.Write(Path.Combine(shard, g.Key), g.Select(x => x.t), new WriterOptions());
            foreach (var (t, file) in g) map[t.Name] = file;
        }
        System.IO.File.WriteAllText(Path.Combine(shard, ShardedModel.IndexFileName), JsonSerializer.Serialize(new { weight_map = map }));
        string[] Names(string path)
        {
            var r = Ctensors("verify", path, "--json");
            Assert.That(r.Code, Is.Zero, r.Err);
            using var doc = JsonDocument.Parse(r.Out);
            return [.. doc.RootElement.GetProperty("tensors").EnumerateArray().Select(t => t.GetProperty("name").GetString()!)];
        }
        var single = Names(o.Plain);
        Assert.That(Names(shard), Is.EqualTo(single));
        using (var input = System.IO.File.OpenRead(o.Plain))
        {
            var so = new StringWriter();
            Assert.That(CryptoTensors.Cli.CliApp.Run(["verify", "-", "--json"], so, new StringWriter(), input), Is.Zero);
            using var doc = JsonDocument.Parse(so.ToString());
            Assert.That(doc.RootElement.GetProperty("tensors").EnumerateArray().Select(t => t.GetProperty("name").GetString()), Is.EqualTo(single));
        }
        Assert.That(single, Is.EqualTo(single.Order(Utf8Order.Instance)), "by name, UTF-8 byte order");
    }
}
