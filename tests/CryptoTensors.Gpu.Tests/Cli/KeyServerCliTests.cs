using System.Diagnostics;
using System.Text.RegularExpressions;
using CryptoTensors.Gpu.Keys;
using CryptoTensors.Gpu.Writing;
using static CryptoTensors.Gpu.Tests.Cli.CliTests;

namespace CryptoTensors.Gpu.Tests.Cli;

/// <summary>
/// The vendor/customer walk-through of the README's "Remote keys" with the real CLI: <c>ctensors keyserver</c> as a
/// child process on 127.0.0.1 (self-signed TLS written on first start, stopped by SIGTERM), the customer's verify,
/// decrypt and rewrap with <c>--key-url</c> in process; usage errors exit 1, key errors 7, each one line.
/// </summary>
[NonParallelizable]
[System.Runtime.Versioning.UnsupportedOSPlatform("windows")]
public sealed partial class KeyServerCliTests
{
    private const string Token = "cust-acme-5b0c1e9a7f3d42c8b6a1";
    private const UnixFileMode Private = UnixFileMode.UserRead | UnixFileMode.UserWrite;

    private static void OneLine(string err, string contains)
    {
        var lines = err.Split('\n', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries);
        Assert.That(lines, Has.Length.EqualTo(1), "one line on stderr: " + err);
        Assert.That(lines[0], Does.StartWith("ctensors: error: ").And.Contain(contains));
    }

    private static void WritePrivate(string path, string text)
    {
        File.WriteAllText(path, "");
        File.SetUnixFileMode(path, Private);
        File.WriteAllText(path, text);
    }

    [GeneratedRegex("listening on (https://\\S+)")]
    private static partial Regex Listening();

    [Test]
    public void VendorServesCustomerLoadsWithKeyUrlAndTheServerStopsOnSigterm()
    {
        using var tmp = new TempDir();
        var vendor = Directory.CreateDirectory(tmp.File("vendor")).FullName;
        var keys = Path.Combine(vendor, "keys");
        Assert.That(Ctensors("keygen", "--out-dir", keys, "--kid-prefix", "v-").Code, Is.Zero);
        var plain = tmp.File("model.safetensors");
        CryptoTensorsWriter.Write(plain, TestModels.EveryDtype(), new WriterOptions());
        File.WriteAllText(tmp.File("remote-only.rego"), "package model\nimport rego.v1\ndefault allow := false\nallow if input.keys.source == \"https\"\n");
        var model = tmp.File("model.ct");
        var enc = Ctensors("encrypt", plain, "-o", model, "--key", Path.Combine(keys, "enc.jwk"), "--sign-key", Path.Combine(keys, "sign.jwk"), "--policy", tmp.File("remote-only.rego"));
        Assert.That(enc.Code, Is.Zero, enc.Err);
        var expires = DateTimeOffset.UtcNow.AddDays(30).ToString("O");
        WritePrivate(Path.Combine(vendor, "licences.json"),
            $$"""{"tokens":[{"id":"acme","token":"{{Token}}","kids":["v-enc","v-sign"],"expires":"{{expires}}"}]}""");

        var start = new ProcessStartInfo(Path.Combine(AppContext.BaseDirectory, "ctensors"))
        {
            RedirectStandardOutput = true, RedirectStandardError = true, UseShellExecute = false,
        };
        foreach (var a in new[] { "keyserver", "--keys", keys, "--tokens", Path.Combine(vendor, "licences.json"), "--listen", "127.0.0.1:0" }) start.ArgumentList.Add(a);
        using var server = Process.Start(start)!;
        var output = new System.Collections.Concurrent.ConcurrentQueue<string>();
        var listening = new TaskCompletionSource<string>(TaskCreationOptions.RunContinuationsAsynchronously);
        server.OutputDataReceived += (_, e) =>
        {
            if (e.Data is null) return;
            output.Enqueue(e.Data);
            if (Listening().Match(e.Data) is { Success: true } m) listening.TrySetResult(m.Groups[1].Value);
        };
        var stderr = new System.Text.StringBuilder();
        server.ErrorDataReceived += (_, e) => stderr.AppendLine(e.Data);
        server.BeginOutputReadLine();
        server.BeginErrorReadLine();
        try
        {
            Assert.That(listening.Task.Wait(TimeSpan.FromSeconds(30)), Is.True, "the server did not start: " + stderr);
            var url = listening.Task.Result;
            var ca = Path.Combine(vendor, "tls.crt");
            Assert.That(string.Join("\n", output), Does.Contain($"--key-ca '{ca}'").And.Contain("self-signed, written now"));
            Assert.That(File.GetUnixFileMode(Path.Combine(vendor, "tls.key")), Is.EqualTo(Private));

            // The customer: a token file (0600), the vendor's CA, the server's URL; no key file at all.
            var token = tmp.File("licence.token");
            WritePrivate(token, Token + "\n");
            string[] Remote(string tokenFile) => ["--key-url", url, "--key-token-file", tokenFile, "--key-ca", ca];
            var ok = Ctensors(["verify", model, "--json", .. Remote(token)]);
            Assert.That(ok.Code, Is.Zero, ok.Err);
            Assert.That(ok.Out, Does.Contain("\"ok\":true").And.Contain("\"authenticated\":true"));
            var dec = Ctensors(["decrypt", model, "-o", tmp.File("out.safetensors"), .. Remote(token)]);
            Assert.That(dec.Code, Is.Zero, dec.Err);
            Assert.That(Ctensors("keygen", "--out-dir", tmp.File("new"), "--kid-prefix", "n-").Code, Is.Zero);
            var rot = Ctensors(["rewrap", model, "-o", tmp.File("rotated.ct"), "--new-key", tmp.File("new/enc.jwk"), "--new-sign-key", tmp.File("new/sign.jwk"), .. Remote(token)]);
            Assert.That(rot.Code, Is.Zero, rot.Err);
            var bench = Ctensors(["bench", "--workload", "tiny", "--repeat", "1", "--json", "--dir", tmp.File("bench"), .. Remote(token)]);
            Assert.That(bench.Code, Is.Zero, bench.Err);
            Assert.That(bench.Out, Does.Contain("\"key_source\":\"https\"").And.Contain("\"key_fetch_ms\":"));

            // The same file with the key given as a file: the policy sees keys.source "file" and denies.
            var local = Ctensors("verify", model, "--key", Path.Combine(keys, "enc.jwk"), "--verify-key", Path.Combine(keys, "sign.pub.jwk"), "--explain");
            Assert.That(local.Code, Is.EqualTo(6), local.Err);
            Assert.That(local.Err, Does.Contain("\"source\":\"file\""));

            // Key errors: exit 7, one line naming the host and the kid, never the token.
            var wrong = tmp.File("wrong.token");
            WritePrivate(wrong, "not-the-token-0123456789");
            var refused = Ctensors(["verify", model, .. Remote(wrong)]);
            Assert.That(refused.Code, Is.EqualTo(7), refused.Err);
            OneLine(refused.Err, new Uri(url).Authority);
            Assert.That(refused.Err, Does.Contain("kid 'v-").And.Contain("401").And.Not.Contain("not-the-token"));
            var untrusted = Ctensors("verify", model, "--key-url", url, "--key-token-file", token);
            Assert.That(untrusted.Code, Is.EqualTo(7), untrusted.Err);
            OneLine(untrusted.Err, "TLS");

            // Usage errors: exit 1, one line.
            File.SetUnixFileMode(token, Private | UnixFileMode.GroupRead | UnixFileMode.OtherRead);
            var open = Ctensors(["verify", model, .. Remote(token)]);
            Assert.That(open.Code, Is.EqualTo(1));
            OneLine(open.Err, "chmod 600");
            var http = Ctensors("verify", model, "--key-url", "http://127.0.0.1:1");
            Assert.That(http.Code, Is.EqualTo(1));
            OneLine(http.Err, "must be an https URL");
            var lone = Ctensors("verify", model, "--key-token-file", token);
            Assert.That(lone.Code, Is.EqualTo(1));
            OneLine(lone.Err, "--key-token-file needs --key-url");
            var badHost = Ctensors("verify", model, "--key-allow-host", "https://x.example.com");
            Assert.That(badHost.Code, Is.EqualTo(1));
            OneLine(badHost.Err, "--key-allow-host");

            // Graceful stop on SIGTERM.
            using (var kill = Process.Start("kill", ["-TERM", server.Id.ToString(System.Globalization.CultureInfo.InvariantCulture)])) kill.WaitForExit();
            Assert.That(server.WaitForExit(TimeSpan.FromSeconds(15)), Is.True, "the server stops on SIGTERM");
            server.WaitForExit();
            Assert.That(server.ExitCode, Is.Zero, stderr.ToString());
            Assert.That(output, Does.Contain("keyserver: stopped"));

            // Nothing secret in the server's output or its audit log; the audit log names the licence and kids.
            var audit = File.ReadAllText(Path.Combine(vendor, "audit.log"));
            Assert.That(audit, Does.Contain("\"licence\":\"acme\"").And.Contain("\"kid\":\"v-enc\"").And.Contain("\"status\":401"));
            var k = Jwk.ReadMasterKey(File.ReadAllText(Path.Combine(keys, "enc.jwk")));
            var secret = Convert.ToBase64String(k.Bytes);
            k.Dispose();
            foreach (var text in new[] { audit, string.Join("\n", output), stderr.ToString(), ok.Out, refused.Err, bench.Out })
                Assert.That(text, Does.Not.Contain(secret).And.Not.Contain(Token).And.Not.Contain(secret.TrimEnd('=').Replace('+', '-').Replace('/', '_')));
        }
        finally
        {
            if (!server.HasExited) server.Kill();
        }
    }

    [Test]
    public void TheServerRefusesABadConfigurationInOneLine()
    {
        using var tmp = new TempDir();
        var keys = tmp.File("keys");
        Assert.That(Ctensors("keygen", "--out-dir", keys).Code, Is.Zero);
        WritePrivate(tmp.File("t.json"), """{"tokens":[{"id":"a","token":"0123456789abcdef0123","kids":["enc"]}]}""");
        var r = Ctensors("keyserver", "--keys", keys, "--tokens", tmp.File("t.json"), "--listen", "localhost");
        Assert.That(r.Code, Is.EqualTo(1));
        OneLine(r.Err, "--listen 'localhost' is not ADDRESS:PORT");
        File.SetUnixFileMode(Path.Combine(keys, "enc.jwk"), Private | UnixFileMode.OtherRead);
        r = Ctensors("keyserver", "--keys", keys, "--tokens", tmp.File("t.json"), "--listen", "127.0.0.1:0");
        Assert.That(r.Code, Is.EqualTo(1));
        OneLine(r.Err, "chmod 600");
        File.SetUnixFileMode(Path.Combine(keys, "enc.jwk"), Private);
        WritePrivate(tmp.File("bad.json"), """{"tokens":[{"id":"a","token":"short","kids":[]}]}""");
        r = Ctensors("keyserver", "--keys", keys, "--tokens", tmp.File("bad.json"), "--listen", "127.0.0.1:0");
        Assert.That(r.Code, Is.EqualTo(1));
        OneLine(r.Err, "at least 16 characters");
        Assert.That(File.Exists(tmp.File("tls.key")), Is.False, "nothing is written before the configuration is good");
    }
}
