using System.Diagnostics;
using System.Text.Json;
using CryptoTensors.Gpu.Keys;

namespace CryptoTensors.Gpu.Tests;

/// <summary>
/// tests/oracle/ctoracle.py, the independent implementation checked against the reference, run the way
/// the format's compatibility tests run it: under Debian's /usr/bin/python3, which needs python3-cryptography. Where either is
/// missing the calling test is skipped with that reason; the oracle itself is part of the repository (its absence fails).
/// </summary>
internal static class Oracle
{
    /// <summary>Debian's python3, where python3-cryptography is installed (pyenv or venv pythons may lack it).</summary>
    public const string Python = "/usr/bin/python3";

    /// <summary>Skips the calling test (Assert.Ignore) when the oracle cannot run here.</summary>
    public static void Require()
    {
        if (!File.Exists(TestPaths.Oracle)) Assert.Fail($"oracle not found at {TestPaths.Oracle} (tests/oracle/ctoracle.py is part of the repository)");
        if (!File.Exists(Python)) Assert.Ignore($"the oracle needs {Python}, which this machine lacks (apt-get install python3 python3-cryptography)");
        var (code, _, err) = Run(Python, "-c", "import cryptography");
        if (code != 0)
        {
            var last = err.Trim().Split('\n')[^1].Trim();
            Assert.Ignore($"the oracle needs python3-cryptography, which {Python} cannot import ({last}); .ci/run installs it with apt-get install python3-cryptography");
        }
    }

    /// <summary>
    /// Runs <c>ctoracle.py verify</c> on <paramref name="path"/> (with the keys written as JWK files into
    /// <paramref name="dir"/> when given), asserts it succeeds, and returns the oracle's SHA-256 of each tensor's plaintext.
    /// </summary>
    public static Dictionary<string, string> Verify(string path, string dir, MasterKey? master = null, SigningKey? signer = null)
    {
        var args = new List<string> { TestPaths.Oracle, "verify", path };
        if (master is not null)
        {
            File.WriteAllText(Path.Combine(dir, "oracle-enc.jwk"), Jwk.Write(master));
            args.AddRange(["--enc-key", Path.Combine(dir, "oracle-enc.jwk")]);
        }
        if (signer is not null)
        {
            File.WriteAllText(Path.Combine(dir, "oracle-sign.pub.jwk"), Jwk.Write(signer.Public));
            args.AddRange(["--sign-key", Path.Combine(dir, "oracle-sign.pub.jwk")]);
        }
        var (code, stdout, stderr) = Run(Python, [.. args]);
        Assert.That(code, Is.Zero, "oracle verify: " + stdout + stderr);
        using var doc = JsonDocument.Parse(stdout[stdout.IndexOf('{', StringComparison.Ordinal)..]);
        var result = new Dictionary<string, string>(StringComparer.Ordinal);
        if (doc.RootElement.TryGetProperty("tensors", out var tensors))
            foreach (var t in tensors.EnumerateArray())
                result[t.GetProperty("name").GetString()!] = t.GetProperty("sha256").GetString()!;
        return result;
    }

    /// <summary>Runs a program to completion; returns its exit code and its whole standard output and error.</summary>
    public static (int Code, string Out, string Err) Run(string exe, params string[] args)
    {
        var psi = new ProcessStartInfo(exe) { RedirectStandardOutput = true, RedirectStandardError = true };
        foreach (var a in args) psi.ArgumentList.Add(a);
        // Under scripts/torch-run this process runs on Debian 13's runtime libraries (LD_LIBRARY_PATH); the system's
        // python3 must not load them with the system's own loader.
        if (Environment.GetEnvironmentVariable("LD_LIBRARY_PATH") is { } ld && ld.Contains("trixie-runtime", StringComparison.Ordinal))
            psi.Environment.Remove("LD_LIBRARY_PATH");
        using var p = Process.Start(psi)!;
        var stdout = p.StandardOutput.ReadToEndAsync();
        var stderr = p.StandardError.ReadToEndAsync();
        p.WaitForExit();
        return (p.ExitCode, stdout.Result, stderr.Result);
    }
}
