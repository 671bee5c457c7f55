using System.CommandLine;
using CryptoTensors.Gpu.Crypto;
using CryptoTensors.Gpu.Keys;
using CryptoTensors.Gpu.Policy;
using CryptoTensors.Gpu.Writing;

namespace CryptoTensors.Cli.Commands;

/// <summary><c>ctensors rewrap</c>: rotate the master and signing keys, rewriting only the header.</summary>
internal static class RewrapCommand
{
    public static Command Create(CliIO io)
    {
        var input = new Argument<string>("input") { Description = "CryptoTensors file" };
        var output = new Option<string>("--output", "-o") { Description = "Output file (may be the input)", Required = true };
        var key = new Option<string?>("--key") { Description = "Old master key JWK" };
        var verifyKey = new Option<string?>("--verify-key") { Description = "Old Ed25519 public JWK" };
        var newKey = new Option<string>("--new-key") { Description = "New master key JWK (same algorithm)", Required = true };
        var newSign = new Option<string>("--new-sign-key") { Description = "New Ed25519 private JWK", Required = true };
        var policy = new Option<string?>("--policy") { Description = "Replace the local policy with this Rego file" };
        var cmd = new Command("rewrap", "Re-wrap every data key under a new master key and re-sign (data untouched).") { input, output, key, verifyKey, newKey, newSign, policy };
        cmd.SetAction(r => io.Guard(() =>
        {
            AccessPolicy? accessPolicy = null;
            if (r.GetValue(policy) is { } p)
            {
                var text = File.ReadAllText(p);
                PolicyGate.Check(text);
                accessPolicy = new AccessPolicy(text, AccessPolicy.DefaultText);
            }
            using var master = Jwk.LoadMasterKey(r.GetValue(newKey)!);
            using var signer = Jwk.LoadSigningKey(r.GetValue(newSign)!);
            var outPath = r.GetValue(output)!;
            Rewrapper.Rewrap(r.GetValue(input)!, outPath, KeyOptions.ReaderOptions(r.GetValue(key), r.GetValue(verifyKey)), master, signer, accessPolicy);
            io.Out.WriteLine($"wrote {outPath}");
            return 0;
        }));
        return cmd;
    }
}
