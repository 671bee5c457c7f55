using System.Diagnostics;
using System.Security.Cryptography;
using CryptoTensors.Gpu;
using CryptoTensors.Gpu.Format;
using CryptoTensors.Gpu.Keys;
using CryptoTensors.Gpu.Reading;
using CryptoTensors.Gpu.Writing;

namespace CryptoTensors.Gpu.KillTest;

/// <summary>What a kill run saw.</summary>
/// <param name="Runs">Child processes started (one per attempted kill).</param>
/// <param name="Killed">Children killed with SIGKILL before they exited.</param>
/// <param name="Absent">Runs after which the output did not exist.</param>
/// <param name="Complete">Runs after which the output existed and verified completely.</param>
/// <param name="StaleTemporaries">Temporary files left by killed children (seen before the next write of the same output).</param>
/// <param name="StaleRemoved">Of those, how many the next write removed.</param>
/// <param name="Failures">Everything that broke atomicity: changed input, invalid output, temporaries left at the end.</param>
public sealed record KillReport(int Runs, int Killed, int Absent, int Complete, int StaleTemporaries, int StaleRemoved, IReadOnlyList<string> Failures)
{
    /// <summary>One line for logs and test output.</summary>
    public override string ToString()
        => $"{Runs} runs, {Killed} killed with SIGKILL; outputs: {Absent} absent, {Complete} complete and valid, {Runs - Absent - Complete} other; " +
           $"{StaleTemporaries} temporaries left by killed children, {StaleRemoved} removed by the next write; {Failures.Count} failures";
}

/// <summary>
/// Starts <c>ctensors</c> (<c>dotnet ctensors.dll</c>) for <c>encrypt</c>, <c>decrypt</c> and <c>rewrap</c> in turn and kills
/// it with SIGKILL after a random delay (uniform over the command's measured duration), then checks: the input is
/// byte-identical; the output is absent or complete and valid (decrypted and compared with the plaintext, or checked
/// under the new keys); temporaries of killed children are removed by the next write of the same output and none is
/// left at the end.
/// </summary>
public static class KillHarness
{
    private enum Op { Encrypt, Decrypt, Rewrap }

    public static KillReport Run(string ctensorsDll, string workDir, int runs, int seed, TextWriter log, int tensorCount = 24, int tensorBytes = 512 << 10)
    {
        Directory.CreateDirectory(workDir);
        var failures = new List<string>();
        string P(string name) => Path.Combine(workDir, name);

        // Set-up, not killed: keys (through the CLI, as a user would), a plain model, its encryption.
        RunToEnd(ctensorsDll, ["keygen", "--out-dir", P("keys"), "--force"]);
        RunToEnd(ctensorsDll, ["keygen", "--out-dir", P("keys2"), "--kid-prefix", "new-", "--force"]);
        var tensors = Enumerable.Range(0, tensorCount).Select(i =>
        {
            var b = new byte[tensorBytes];
            new Random(seed * 1000 + i).NextBytes(b);
            return TensorSource.FromMemory($"layer.{i:D3}.weight", Dtype.U8, [(ulong)tensorBytes], b);
        }).ToList();
        var plain = tensors.ToDictionary(t => t.Name, t => { var b = new byte[t.ByteLength]; t.Read(0, b); return b; });
        CryptoTensorsWriter.Write(P("plain.safetensors"), tensors, new WriterOptions());
        RunToEnd(ctensorsDll, ["encrypt", P("plain.safetensors"), "-o", P("model.ct"), "--key", P("keys/enc.jwk"), "--sign-key", P("keys/sign.jwk"), "--chunk-size", "65536"]);
        var inputHashes = new Dictionary<string, string> { ["plain.safetensors"] = Hash(P("plain.safetensors")), ["model.ct"] = Hash(P("model.ct")) };

        string[] Args(Op op) => op switch
        {
            Op.Encrypt => ["encrypt", P("plain.safetensors"), "-o", P("out-enc.ct"), "--key", P("keys/enc.jwk"), "--sign-key", P("keys/sign.jwk"), "--chunk-size", "65536"],
            Op.Decrypt => ["decrypt", P("model.ct"), "-o", P("out-dec.safetensors"), "--key", P("keys/enc.jwk"), "--verify-key", P("keys/sign.pub.jwk")],
            _ => ["rewrap", P("model.ct"), "-o", P("out-rew.ct"), "--key", P("keys/enc.jwk"), "--verify-key", P("keys/sign.pub.jwk"),
                "--new-key", P("keys2/enc.jwk"), "--new-sign-key", P("keys2/sign.jwk")],
        };
        string Output(Op op) => op switch { Op.Encrypt => P("out-enc.ct"), Op.Decrypt => P("out-dec.safetensors"), _ => P("out-rew.ct") };

        // How long each command takes when it is not killed: the kill delays are drawn over that span.
        var durations = new Dictionary<Op, double>();
        foreach (var op in Enum.GetValues<Op>())
        {
            var sw = Stopwatch.StartNew();
            RunToEnd(ctensorsDll, Args(op));
            durations[op] = sw.Elapsed.TotalMilliseconds;
            Check(op, Output(op), plain, P, failures, "calibration");
            File.Delete(Output(op));
        }
        log.WriteLine($"kill test: {runs} runs in {workDir}; uninterrupted durations: " + string.Join(", ", durations.Select(d => $"{d.Key.ToString().ToLowerInvariant()} {d.Value:F0} ms")));

        var rng = new Random(seed);
        int killed = 0, absent = 0, complete = 0, staleRemoved = 0;
        // Temporaries left by killed children, per output, not yet removed: a later write of that output that gets as far
        // as creating its own temporary (or finishing) must have removed them first.
        var pending = Enum.GetValues<Op>().ToDictionary(op => op, _ => new HashSet<string>());
        var seen = new HashSet<string>();
        for (var i = 0; i < runs; i++)
        {
            var op = (Op)(i % 3);
            var output = Output(op);
            File.Delete(output);
            var before = Temporaries(output).ToHashSet();
            bool finished;
            using (var child = Start(ctensorsDll, Args(op)))
            {
                var delay = (int)(rng.NextDouble() * durations[op] * 1.1);
                finished = child.WaitForExit(delay);
                if (!finished)
                {
                    child.Kill(); // SIGKILL on Unix
                    killed++;
                }
                child.WaitForExit();
                if (finished && child.ExitCode != 0) failures.Add($"run {i} ({op}): exited {child.ExitCode} without being killed");
            }
            var after = Temporaries(output).ToHashSet();
            var reachedWrite = finished || after.Except(before).Any();
            var gone = pending[op].Where(t => !after.Contains(t)).ToList();
            staleRemoved += gone.Count;
            pending[op].ExceptWith(gone);
            if (reachedWrite && pending[op].Count > 0)
                failures.Add($"run {i} ({op}): {pending[op].Count} temporaries of killed children survived a write of the same output");
            foreach (var t in after.Except(before)) { pending[op].Add(t); seen.Add(t); }
            foreach (var (name, hash) in inputHashes)
                if (Hash(P(name)) != hash) failures.Add($"run {i} ({op}): input {name} changed");
            if (!File.Exists(output)) absent++;
            else if (Check(op, output, plain, P, failures, $"run {i}")) complete++;
        }

        // One more uninterrupted write of each output removes what the last kills left; nothing may remain.
        foreach (var op in Enum.GetValues<Op>())
        {
            RunToEnd(ctensorsDll, Args(op));
            staleRemoved += pending[op].Count(t => !File.Exists(t));
            Check(op, Output(op), plain, P, failures, "final run");
        }
        var stale = seen.Count;
        var left = Directory.EnumerateFiles(workDir, "*.ctensors-tmp-*").ToList();
        if (left.Count > 0) failures.Add($"{left.Count} temporary files left at the end: {string.Join(", ", left.Select(Path.GetFileName))}");
        var report = new KillReport(runs, killed, absent, complete, stale, staleRemoved, failures);
        log.WriteLine("kill test: " + report);
        foreach (var f in failures.Take(20)) log.WriteLine("  FAIL " + f);
        return report;
    }

    private static List<string> Temporaries(string output)
        => Directory.EnumerateFiles(Path.GetDirectoryName(output)!, "." + Path.GetFileName(output) + ".ctensors-tmp-*").ToList();

    /// <summary>Opens an output and compares every tensor with the plaintext; false (with a failure recorded) when it does not verify.</summary>
    private static bool Check(Op op, string output, Dictionary<string, byte[]> plain, Func<string, string> p, List<string> failures, string when)
    {
        try
        {
            using var master = Jwk.LoadMasterKey(op == Op.Rewrap ? p("keys2/enc.jwk") : p("keys/enc.jwk"));
            using var signer = Jwk.LoadSigningKey(op == Op.Rewrap ? p("keys2/sign.jwk") : p("keys/sign.jwk"));
            var options = op == Op.Decrypt ? new ReaderOptions { Keys = new KeyRegistry() }
                : new ReaderOptions { MasterKey = master, VerificationKey = signer.Public, Keys = new KeyRegistry(), RequireAllTensorsEncrypted = true };
            using var r = CryptoTensorsReader.Open(output, options);
            if (r.Tensors.Count != plain.Count) throw new InvalidDataException($"{r.Tensors.Count} tensors, expected {plain.Count}");
            foreach (var t in r.Tensors)
                if (!r.ReadTensor(t.Name).AsSpan().SequenceEqual(plain[t.Name])) throw new InvalidDataException($"tensor {t.Name} differs");
            return true;
        }
        catch (Exception e) when (e is CryptoTensorsException or IOException or KeyNotFoundException)
        {
            failures.Add($"{when} ({op}): output {Path.GetFileName(output)} exists but does not verify: {e.Message}");
            return false;
        }
    }

    private static Process Start(string dll, string[] args)
    {
        var psi = new ProcessStartInfo("dotnet") { RedirectStandardOutput = true, RedirectStandardError = true, UseShellExecute = false };
        psi.ArgumentList.Add(dll);
        foreach (var a in args) psi.ArgumentList.Add(a);
        var child = Process.Start(psi) ?? throw new InvalidOperationException("could not start dotnet");
        // Drained so a child never blocks on a full pipe.
        child.OutputDataReceived += (_, _) => { };
        child.ErrorDataReceived += (_, _) => { };
        child.BeginOutputReadLine();
        child.BeginErrorReadLine();
        return child;
    }

    private static void RunToEnd(string dll, string[] args)
    {
        var psi = new ProcessStartInfo("dotnet") { RedirectStandardOutput = true, RedirectStandardError = true, UseShellExecute = false };
        psi.ArgumentList.Add(dll);
        foreach (var a in args) psi.ArgumentList.Add(a);
        using var child = Process.Start(psi) ?? throw new InvalidOperationException("could not start dotnet");
        var stdout = child.StandardOutput.ReadToEndAsync();
        var stderr = child.StandardError.ReadToEnd();
        child.WaitForExit();
        if (child.ExitCode != 0)
            throw new InvalidOperationException($"ctensors {string.Join(' ', args.Take(1))} failed ({child.ExitCode}): {stderr.Trim()} {stdout.Result.Trim()}");
    }

    private static string Hash(string path)
    {
        using var f = File.OpenRead(path);
        return Convert.ToHexString(SHA256.HashData(f));
    }
}
