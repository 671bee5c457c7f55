using System.CommandLine;
using CryptoTensors.Gpu.Crypto;
using CryptoTensors.Gpu.Writing;

namespace CryptoTensors.Cli.Commands;

/// <summary><c>ctensors rewrap</c>: rotate the master and signing keys (and optionally the policy), rewriting only the header.</summary>
internal static class RewrapCommand
{
    public static Command Create(CliIO io)
    {
        var input = new Argument<string>("input") { Description = "CryptoTensors file" };
        var output = new Option<string>("--output", "-o") { Description = "Output file (may be the input: rotation in place, atomic)", Required = true };
        var key = new Option<string?>("--key") { Description = "Old master key JWK or JWK Set (" + KeyOptions.EnvNote + ")" };
        var verifyKey = new Option<string?>("--verify-key") { Description = "Old Ed25519 public JWK or JWK Set (" + KeyOptions.EnvNote + ")" };
        var newKey = new Option<string>("--new-key") { Description = "New master key JWK (same algorithm)", Required = true };
        var newSign = new Option<string>("--new-sign-key") { Description = "New Ed25519 private JWK", Required = true };
        var policy = new Option<string?>("--policy") { Description = "Replace the local policy with this Rego file (a policy that cannot be compiled: exit 2)" };
        var ignoreOldPolicy = new Option<bool>("--ignore-old-policy")
        {
            Description = "Do not evaluate the old policy (the key owner replacing an expired or over-strict one); the signature and every key unwrap are still checked",
        };
        var policyInput = new PolicyInputOptions();
        var remoteKeys = new RemoteKeyOptions();
        var cmd = new Command("rewrap", "Re-wrap every data key under a new master key and re-sign (data untouched). The old policy is evaluated, as at any open, unless --ignore-old-policy.")
        {
            input, output, key, verifyKey, newKey, newSign, policy, ignoreOldPolicy,
        };
        remoteKeys.AddTo(cmd);
        policyInput.AddTo(cmd);
        cmd.SetAction(r => io.Guard(() =>
        {
            var inPath = r.GetValue(input)!;
            var outPath = r.GetValue(output)!;
            if (Directory.Exists(inPath)) throw new IOException($"'{inPath}' is a directory: rewrap takes one file (rotate each shard)");
            if (Directory.Exists(outPath)) throw new ArgumentException($"-o '{outPath}' is an existing directory; name the output file");
            AccessPolicy? accessPolicy = r.GetValue(policy) is { } p ? EncryptCommand.LoadPolicy(p) : null;
            using var master = KeyOptions.MasterKey(r.GetValue(newKey)!, "--new-key");
            using var signer = KeyOptions.SigningKey(r.GetValue(newSign)!, "--new-sign-key");
            using var remote = remoteKeys.ProviderOf(r);
            var oldKeys = KeyOptions.ReaderOptions(r.GetValue(key), r.GetValue(verifyKey), context: policyInput.ContextOf(r), device: policyInput.DeviceOf(r),
                remote: remote, followHeaderKeyLocations: remoteKeys.FollowsHeaderLocations(r));
            using var releaseKeys = KeyOptions.Owning(oldKeys);
            Rewrapper.Rewrap(inPath, outPath, oldKeys, master, signer, accessPolicy, evaluateOldPolicy: !r.GetValue(ignoreOldPolicy));
            io.Out.WriteLine($"wrote {outPath}");
            return 0;
        }, e => io.Explain(policyInput.Explanation(r, e))));
        return cmd;
    }
}
