using System.Text.Json;
using CryptoTensors.Cli;
using CryptoTensors.Gpu.Keys;
using CryptoTensors.Gpu.Reading;
using CryptoTensors.Gpu.Tests.Vectors;

namespace CryptoTensors.Gpu.Tests.Cli;

[NonParallelizable]
public class CliTests
{
    internal static (int Code, string Out, string Err) Ctensors(params string[] args)
    {
        var o = new StringWriter();
        var e = new StringWriter();
        var code = CliApp.Run(args, o, e);
        return (code, o.ToString(), e.ToString());
    }

    [TestCaseSource(typeof(VectorSuiteTests), nameof(VectorSuiteTests.Vectors))]
    public void VerifyJsonAgreesWithEveryVector(string name)
    {
        var e = VectorSuiteTests.Load(name);
        var args = new List<string> { "verify", e.File, "--json" };
        if (e.KeyPath("enc") is { } k) args.AddRange(["--key", k]);
        if (e.KeyPath("sign") is { } s) args.AddRange(["--verify-key", s]);
        var (code, stdout, stderr) = Ctensors([.. args]);
        var lines = stdout.Split('\n', StringSplitOptions.RemoveEmptyEntries);
        Assert.That(lines, Has.Length.EqualTo(1), "exactly one JSON object on stdout");
        using var doc = JsonDocument.Parse(lines[0]);
        var root = doc.RootElement;
        if (e.Expect == "ok")
        {
            Assert.That(code, Is.Zero, stderr);
            Assert.That(root.GetProperty("ok").GetBoolean(), Is.True);
            var got = root.GetProperty("tensors").EnumerateArray().ToDictionary(t => t.GetProperty("name").GetString()!, t => t.GetProperty("sha256").GetString());
            foreach (var t in e.Tensors) Assert.That(got[t.GetProperty("name").GetString()!], Is.EqualTo(t.GetProperty("sha256").GetString()));
            return;
        }
        Assert.That(code, Is.EqualTo((int)e.Kind), stdout);
        Assert.That(root.GetProperty("ok").GetBoolean(), Is.False);
        Assert.That(root.GetProperty("error").GetProperty("kind").GetString(), Is.EqualTo(e.Kind.ToVectorName()));
        Assert.That(stderr.Trim().Split('\n'), Has.Length.EqualTo(1), "a one-line error on stderr");
        if (e.Stage == "tensor") Assert.That(root.GetProperty("error").GetProperty("tensor").GetString(), Is.AnyOf(e.Failing));
    }

    [Test]
    [System.Runtime.Versioning.UnsupportedOSPlatform("windows")]
    public void KeygenEncryptVerifyInspectDecryptRewrapEndToEnd()
    {
        using var tmp = new TempDir();
        var plain = tmp.File("plain.safetensors");
        Gpu.Writing.CryptoTensorsWriter.Write(plain, TestModels.EveryDtype(), new Gpu.Writing.WriterOptions { Metadata = new Dictionary<string, string> { ["format"] = "pt" } });

        Assert.That(Ctensors("keygen", "--out-dir", tmp.File("k1"), "--alg", "chacha20poly1305", "--kid-prefix", "t1-").Code, Is.Zero);
        Assert.That(File.GetUnixFileMode(tmp.File("k1/enc.jwk")), Is.EqualTo(UnixFileMode.UserRead | UnixFileMode.UserWrite));
        Assert.That(File.GetUnixFileMode(tmp.File("k1/sign.jwk")), Is.EqualTo(UnixFileMode.UserRead | UnixFileMode.UserWrite));
        Assert.That(File.ReadAllText(tmp.File("k1/sign.pub.jwk")), Does.Not.Contain("\"d\""));
        Assert.That(Ctensors("keygen", "--out-dir", tmp.File("k1")).Code, Is.EqualTo(1), "refuses to overwrite keys without --force");

        var policy = tmp.File("p.rego");
        File.WriteAllText(policy, "package model\nimport rego.v1\ndefault allow := true\n");
        var enc = tmp.File("enc.ct");
        var r = Ctensors("encrypt", plain, "-o", enc, "--key", tmp.File("k1/enc.jwk"), "--sign-key", tmp.File("k1/sign.jwk"),
            "--tensors", "t.f32,t.u8,empty", "--chunk-size", "16", "--policy", policy, "--metadata", "owner=me", "--metadata", "x=a=b");
        Assert.That(r.Code, Is.Zero, r.Err);

        var insp = Ctensors("inspect", enc, "--json");
        Assert.That(insp.Code, Is.Zero, insp.Err);
        using (var doc = JsonDocument.Parse(insp.Out))
        {
            var root = doc.RootElement;
            Assert.That(root.GetProperty("format").GetString(), Is.EqualTo("cryptotensors"));
            Assert.That(root.GetProperty("chunk_size").GetInt64(), Is.EqualTo(16));
            Assert.That(root.GetProperty("enc").GetProperty("kid").GetString(), Is.EqualTo("t1-enc"));
            Assert.That(root.GetProperty("enc").GetProperty("alg").GetString(), Is.EqualTo("chacha20poly1305"));
            Assert.That(root.GetProperty("policy_local").GetString(), Does.Contain("default allow := true"));
            Assert.That(root.GetProperty("metadata").GetProperty("x").GetString(), Is.EqualTo("a=b"));
            Assert.That(root.GetProperty("tensors").EnumerateArray().Count(t => t.GetProperty("encrypted").GetBoolean()), Is.EqualTo(3));
            Assert.That(insp.Out, Does.Not.Contain(File.ReadAllText(tmp.File("k1/enc.jwk")).Split("\"k\":\"")[1][..20]));
        }
        Assert.That(Ctensors("inspect", enc).Out, Does.Contain("kid=t1-enc"));

        var v = Ctensors("verify", enc, "--key", tmp.File("k1/enc.jwk"), "--verify-key", tmp.File("k1/sign.pub.jwk"));
        Assert.That(v.Code, Is.Zero, v.Err);
        Assert.That(v.Out, Does.Contain("verified " + TestModels.EveryDtype().Count + " tensors"));

        var dec = tmp.File("dec.safetensors");
        Assert.That(Ctensors("decrypt", enc, "-o", dec, "--key", tmp.File("k1/enc.jwk"), "--verify-key", tmp.File("k1/sign.pub.jwk")).Code, Is.Zero);
        using (var a = CryptoTensorsReader.Open(plain, new ReaderOptions { Keys = new() }))
        using (var b = CryptoTensorsReader.Open(dec, new ReaderOptions { Keys = new() }))
        {
            Assert.That(b.IsEncrypted, Is.False);
            Assert.That(TestModels.ReadAll(b), Is.EquivalentTo(TestModels.ReadAll(a)));
            Assert.That(b.Metadata, Is.EquivalentTo(new Dictionary<string, string> { ["format"] = "pt", ["owner"] = "me", ["x"] = "a=b" }));
            Assert.That(b.ReservedMetadata, Is.Empty);
        }
        var again = tmp.File("again.safetensors");
        Assert.That(Ctensors("decrypt", enc, "-o", again, "--key", tmp.File("k1/enc.jwk"), "--verify-key", tmp.File("k1/sign.pub.jwk")).Code, Is.Zero);
        Assert.That(File.ReadAllBytes(again), Is.EqualTo(File.ReadAllBytes(dec)), "decrypt is deterministic");

        Assert.That(Ctensors("keygen", "--out-dir", tmp.File("k2"), "--alg", "chacha20poly1305").Code, Is.Zero);
        var rw = tmp.File("rotated.ct");
        r = Ctensors("rewrap", enc, "-o", rw, "--key", tmp.File("k1/enc.jwk"), "--verify-key", tmp.File("k1/sign.pub.jwk"),
            "--new-key", tmp.File("k2/enc.jwk"), "--new-sign-key", tmp.File("k2/sign.jwk"));
        Assert.That(r.Code, Is.Zero, r.Err);
        Assert.That(Ctensors("verify", rw, "--key", tmp.File("k2/enc.jwk"), "--verify-key", tmp.File("k2/sign.pub.jwk")).Code, Is.Zero);
        Assert.That(Ctensors("verify", rw, "--key", tmp.File("k1/enc.jwk"), "--verify-key", tmp.File("k2/sign.pub.jwk")).Code, Is.EqualTo(8));
        Assert.That(Ctensors("verify", rw, "--key", tmp.File("k2/enc.jwk"), "--verify-key", tmp.File("k1/sign.pub.jwk")).Code, Is.EqualTo(5));
        Assert.That(Ctensors("keygen", "--out-dir", tmp.File("k3"), "--alg", "aes256gcm").Code, Is.Zero);
        r = Ctensors("rewrap", enc, "-o", tmp.File("bad.ct"), "--key", tmp.File("k1/enc.jwk"), "--verify-key", tmp.File("k1/sign.pub.jwk"),
            "--new-key", tmp.File("k3/enc.jwk"), "--new-sign-key", tmp.File("k3/sign.jwk"));
        Assert.That(r.Code, Is.EqualTo(7), "algorithm change refused");
        Assert.That(File.Exists(tmp.File("bad.ct")), Is.False);
    }

    [Test]
    public void ProgressIsPlainLinesOnStandardErrorWhenNotATerminal()
    {
        using var tmp = new TempDir();
        var plain = tmp.File("plain.safetensors");
        Gpu.Writing.CryptoTensorsWriter.Write(plain, TestModels.EveryDtype(), new Gpu.Writing.WriterOptions());
        Assert.That(Ctensors("keygen", "--out-dir", tmp.File("k")).Code, Is.Zero);
        var r = Ctensors("encrypt", plain, "-o", tmp.File("e.ct"), "--key", tmp.File("k/enc.jwk"), "--sign-key", tmp.File("k/sign.jwk"));
        Assert.That(r.Code, Is.Zero, r.Err);
        var lines = r.Err.Split('\n', StringSplitOptions.RemoveEmptyEntries);
        Assert.That(lines, Is.Not.Empty);
        Assert.That(lines, Has.All.StartWith("encrypt e.ct: "));
        Assert.That(lines[^1], Does.StartWith("encrypt e.ct: 100% (" + TestModels.EveryDtype().Count + "/"));
        Assert.That(r.Out, Does.Not.Contain("%"), "progress never goes to standard output");
    }

    [Test]
    public void DecryptOfATamperedFileLeavesNoOutput()
    {
        using var tmp = new TempDir();
        var e = VectorSuiteTests.Load("tamper-ciphertext-v2");
        var r = Ctensors("decrypt", e.File, "-o", tmp.File("out.st"), "--key", e.KeyPath("enc")!, "--verify-key", e.KeyPath("sign")!);
        Assert.That(r.Code, Is.EqualTo(9));
        Assert.That(r.Err, Does.Contain("big.f32"));
        Assert.That(Directory.GetFiles(tmp.Path), Is.Empty);
    }

    [Test]
    public void KeysMayComeFromTheEnvironment()
    {
        using var tmp = new TempDir();
        var plain = tmp.File("plain.safetensors");
        Gpu.Writing.CryptoTensorsWriter.Write(plain, TestModels.EveryDtype(), new Gpu.Writing.WriterOptions());
        using var m = MasterKey.Generate(kid: "e1");
        using var s = SigningKey.Generate("s1");
        var old = Environment.GetEnvironmentVariable(EnvKeyProvider.VariableName);
        try
        {
            Environment.SetEnvironmentVariable(EnvKeyProvider.VariableName, $"{{\"keys\":[{Jwk.Write(m)},{Jwk.Write(s)}]}}");
            Assert.That(Ctensors("encrypt", plain, "-o", tmp.File("e.ct")).Code, Is.Zero);
            Assert.That(Ctensors("verify", tmp.File("e.ct"), "--json").Code, Is.Zero);
            Environment.SetEnvironmentVariable(EnvKeyProvider.VariableName, null);
            Assert.That(Ctensors("verify", tmp.File("e.ct"), "--json").Code, Is.EqualTo(7));
            Assert.That(Ctensors("encrypt", plain, "-o", tmp.File("e2.ct")).Code, Is.EqualTo(7));
        }
        finally
        {
            Environment.SetEnvironmentVariable(EnvKeyProvider.VariableName, old);
        }
    }

    [Test]
    public void UsageErrorsExitWithOne()
    {
        Assert.That(Ctensors("encrypt").Code, Is.EqualTo(1));
        Assert.That(Ctensors("no-such-command").Code, Is.EqualTo(1));
        Assert.That(Ctensors("verify", "/nonexistent/file").Code, Is.EqualTo(1));
        Assert.That(Ctensors("encrypt", "x", "-o", "y", "--format-version", "3").Code, Is.EqualTo(1));
    }

    [Test]
    public void EncryptRefusesAPolicyOutsideTheSupportedSubset()
    {
        using var tmp = new TempDir();
        var plain = tmp.File("plain.safetensors");
        Gpu.Writing.CryptoTensorsWriter.Write(plain, TestModels.EveryDtype(), new Gpu.Writing.WriterOptions());
        Assert.That(Ctensors("keygen", "--out-dir", tmp.File("k")).Code, Is.Zero);
        File.WriteAllText(tmp.File("p.rego"), "package model\nallow if { http.send({}) }\n");
        var r = Ctensors("encrypt", plain, "-o", tmp.File("e.ct"), "--key", tmp.File("k/enc.jwk"), "--sign-key", tmp.File("k/sign.jwk"), "--policy", tmp.File("p.rego"));
        Assert.That(r.Code, Is.EqualTo(2), "a policy that cannot be compiled is exit 2, as from policy eval: " + r.Err);
        Assert.That(r.Err, Does.StartWith("ctensors: error: --policy '" + tmp.File("p.rego") + "': ").And.Contain("http.send"));
        Assert.That(File.Exists(tmp.File("e.ct")), Is.False);
    }

    [Test]
    public void BenchPrintsOneJsonObjectWithEveryField()
    {
        var r = Ctensors("bench", "--workload", "tiny", "--repeat", "1", "--json");
        Assert.That(r.Code, Is.Zero, r.Err);
        using var doc = JsonDocument.Parse(r.Out);
        var root = doc.RootElement;
        foreach (var field in new[] { "workload", "tensor_bytes", "cores", "ceiling_gbps", "plain_gbps", "encrypted_gbps", "ratio_encrypted_over_plain",
                     "percent_of_ceiling", "fresh_plain_gbps", "fresh_encrypted_gbps", "peak_rss_over_tensor_bytes", "per_tensor_us", "encrypt_gbps", "backend" })
            Assert.That(root.TryGetProperty(field, out _), Is.True, field);
        Assert.That(root.GetProperty("workload").GetString(), Is.EqualTo("tiny"));
        Assert.That(root.GetProperty("tensor_bytes").GetInt64(), Is.EqualTo(Gpu.Workloads.DemoWorkloads.Tiny().Sum(t => t.ByteLength)));
        Assert.That(root.GetProperty("ceiling_gbps").GetDouble(), Is.GreaterThan(0));
        // Peak RSS comes from rss-probe child processes: they ran and loaded (and encrypted) the whole workload.
        Assert.That(root.GetProperty("peak_rss_bytes").GetInt64(), Is.GreaterThan(root.GetProperty("process_baseline_rss_bytes").GetInt64()), r.Err);
        Assert.That(root.GetProperty("process_baseline_rss_bytes").GetInt64(), Is.GreaterThan(0));
        Assert.That(root.GetProperty("encrypt_peak_rss_bytes").GetInt64(), Is.GreaterThan(0));
        // The tiny loads run on for the short-run budget: the best of them is no slower than the first.
        Assert.That(root.GetProperty("encrypted_load_runs").GetInt32(), Is.GreaterThan(1));
        Assert.That(root.GetProperty("first_load_per_tensor_us").GetDouble(), Is.GreaterThanOrEqualTo(root.GetProperty("per_tensor_us").GetDouble()));
    }

    [Test]
    public void RepeatedRunsAtLeastTheMinimumAndOnWithinTheBudget()
    {
        var calls = 0;
        // Runs of 0.1 s: the minimum (5) already exceeds the 0.25 s budget.
        var slow = CryptoTensors.Cli.Commands.LoadTiming.Repeated(5, () => ++calls == 3 ? 0.05 : 0.1);
        Assert.That((slow.Runs, calls, slow.Best, slow.First), Is.EqualTo((5, 5, 0.05, 0.1)));
        // Runs of 0.01 s: on until 0.25 s have passed.
        var fast = CryptoTensors.Cli.Commands.LoadTiming.Repeated(1, () => 0.01);
        Assert.That(fast.Runs, Is.EqualTo(25));
        // Runs of no time: stops at the cap.
        Assert.That(CryptoTensors.Cli.Commands.LoadTiming.Repeated(1, () => 0).Runs, Is.EqualTo(CryptoTensors.Cli.Commands.LoadTiming.MaxRuns));
    }

    [Test]
    public void RssProbeLoadsInItsOwnProcessAndReportsItsPeak()
    {
        using var tmp = new TempDir();
        Assert.That(Ctensors("keygen", "--out-dir", tmp.File("k")).Code, Is.Zero);
        var plain = tmp.File("plain.safetensors");
        Gpu.Writing.CryptoTensorsWriter.Write(plain, Gpu.Workloads.DemoWorkloads.Tiny(), new Gpu.Writing.WriterOptions());
        var (enc, err) = CryptoTensors.Cli.Commands.RssProbeCommand.RunChild("--mode", "encrypt", "--input", plain, "--output", tmp.File("e.ct"), "--key", tmp.File("k/enc.jwk"), "--sign-key", tmp.File("k/sign.jwk"));
        Assert.That(err, Is.Null);
        Assert.That(enc!.Value.GetProperty("tensor_bytes").GetInt64(), Is.EqualTo(Gpu.Workloads.DemoWorkloads.Tiny().Sum(t => t.ByteLength)));
        var (load, err2) = CryptoTensors.Cli.Commands.RssProbeCommand.RunChild("--mode", "load", "--input", tmp.File("e.ct"), "--key", tmp.File("k/enc.jwk"), "--verify-key", tmp.File("k/sign.pub.jwk"));
        Assert.That(err2, Is.Null);
        Assert.That(load!.Value.GetProperty("peak_rss_bytes").GetInt64(), Is.GreaterThanOrEqualTo(load.Value.GetProperty("baseline_rss_bytes").GetInt64()));
        var (_, bad) = CryptoTensors.Cli.Commands.RssProbeCommand.RunChild("--mode", "load", "--input", tmp.File("e.ct"), "--key", tmp.File("k/enc.jwk"));
        Assert.That(bad, Does.Contain("rss-probe exited with"), "no verification key: the child fails and says why");
    }

    [TestCase("gpu1")]
    [TestCase("cuda:x")]
    [TestCase("cuda:-1")]
    public void BenchRefusesADeviceThatIsNotCuda(string device)
    {
        var r = Ctensors("bench", "--workload", "tiny", "--device", device);
        Assert.That(r.Code, Is.EqualTo(CliApp.UsageExitCode));
        Assert.That(r.Err, Does.Contain($"--device must be cuda, cuda:N or cpu-ilgpu, not '{device}'"));
        Assert.That(r.Out, Is.Empty);
    }

    [Test]
    public void BenchOnAGpuSaysWhyWhenThereIsNone()
    {
        // Its own process, pointed at a driver that does not exist (this one may run on a real or the fake driver).
        var r = Devices.CudaTests.CtensorsProcess(new Dictionary<string, string> { ["CRYPTOTENSORS_CUDA_DRIVER"] = "/nonexistent/libcuda.so.1" },
            "bench", "--workload", "tiny", "--device", "cuda:0", "--json");
        Assert.That(r.Code, Is.EqualTo(CliApp.UsageExitCode));
        Assert.That(r.Err, Does.Match("ctensors: error: (CUDA driver not found|no CUDA device)"));
        Assert.That(r.Out, Is.Empty, "no JSON object for a run that did not happen");
    }

    [Test]
    public void WorkloadsHaveTheSizesOfTheRealModels()
    {
        var gpt2 = Gpu.Workloads.DemoWorkloads.Gpt2();
        Assert.That((gpt2.Count, gpt2.Sum(t => t.ByteLength)), Is.EqualTo((160, 548_090_880L)));
        var lora = Gpu.Workloads.DemoWorkloads.Lora();
        Assert.That((lora.Count, lora.Sum(t => t.ByteLength)), Is.EqualTo((1000, 4_096_000L)));
        var q06 = Gpu.Workloads.DemoWorkloads.Create("qwen3-0.6b");
        Assert.That(q06.Count, Is.EqualTo(2 + 28 * 11));
        Assert.That(q06.Sum(t => t.ByteLength) / 2, Is.EqualTo(596_049_920L), "Qwen3-0.6B parameters (tied embeddings)");
        Assert.That(q06.All(t => t.Dtype == Gpu.Format.Dtype.BF16), Is.True);
        var q4 = Gpu.Workloads.DemoWorkloads.Create("qwen3-4b");
        Assert.That(q4.Sum(t => t.ByteLength) / 2, Is.EqualTo(4_022_468_096L), "Qwen3-4B parameters (tied embeddings)");
        var a = new byte[100];
        var b = new byte[60];
        gpt2[0].Read(1000, a);
        gpt2[0].Read(1040, b);
        Assert.That(b, Is.EqualTo(a[40..]), "generated bytes depend only on their position");
    }

    [Test]
    public void DemoRunsOnTheTinyWorkload()
    {
        var r = Ctensors("demo", "--workload", "tiny", "--repeat", "1");
        Assert.That(r.Code, Is.Zero, r.Err);
        Assert.That(r.Out, Does.Contain("load encrypted (v2)").And.Contain("encrypted / plain load time"));
    }
}
