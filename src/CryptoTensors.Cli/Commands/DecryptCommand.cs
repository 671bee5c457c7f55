using System.CommandLine;
using CryptoTensors.Gpu.Crypto;
using CryptoTensors.Gpu.Reading;
using CryptoTensors.Gpu.Writing;

namespace CryptoTensors.Cli.Commands;

/// <summary><c>ctensors decrypt</c>: a verified CryptoTensors file to a plain safetensors file.</summary>
internal static class DecryptCommand
{
    public static Command Create(CliIO io)
    {
        var input = new Argument<string>("input") { Description = "CryptoTensors file, or a directory with model.safetensors.index.json (every shard)" };
        var output = new Option<string>("--output", "-o") { Description = "Plain safetensors output (a directory for a sharded input); refused when it is the input, unless --force", Required = true };
        var key = new Option<string?>("--key") { Description = "Master key JWK or JWK Set (" + KeyOptions.EnvNote + ")" };
        var verifyKey = new Option<string?>("--verify-key") { Description = "Ed25519 public JWK or JWK Set (" + KeyOptions.EnvNote + ")" };
        var force = new Option<bool>("--force") { Description = "Allow the output to be the input (replacing the protected file with plaintext)" };
        var policyInput = new PolicyInputOptions();
        var remoteKeys = new RemoteKeyOptions();
        var cmd = new Command("decrypt", "Verify and decrypt into a plain safetensors file (same tensors and user metadata); a refused decrypt writes nothing.")
        {
            input, output, key, verifyKey, force,
        };
        remoteKeys.AddTo(cmd);
        policyInput.AddTo(cmd);
        cmd.SetAction(r => io.Guard(() =>
        {
            var inPath = r.GetValue(input)!;
            var outPath = r.GetValue(output)!;
            ShardedInputs.RequireInput(inPath);
            CliOptions.CheckOutput(inPath, outPath, ShardedInputs.IsSharded(inPath), r.GetValue(force));
            using var remote = remoteKeys.ProviderOf(r);
            var options = KeyOptions.ReaderOptions(r.GetValue(key), r.GetValue(verifyKey), context: policyInput.ContextOf(r), device: policyInput.DeviceOf(r),
                remote: remote, followHeaderKeyLocations: remoteKeys.FollowsHeaderLocations(r));
            using var releaseKeys = KeyOptions.Owning(options);
            ShardedInputs.ForEach(inPath, outPath, options, (reader, target) =>
            {
                var meta = reader.Metadata.Concat(reader.ReservedMetadata).Where(kv => !ReservedFields.All.Contains(kv.Key))
                    .ToDictionary(kv => kv.Key, kv => kv.Value, StringComparer.Ordinal);
                CliProgress.Run(io, "decrypt " + Path.GetFileName(target), progress =>
                    CryptoTensorsWriter.Write(target, reader.Tensors.Select(t => TensorSource.FromReader(reader, t.Name)), new WriterOptions
                    {
                        Metadata = meta.Count == 0 && reader.Header.Metadata is null ? null : meta,
                    }, progress));
            });
            io.Out.WriteLine($"wrote {outPath}");
            return 0;
        }, e => io.Explain(policyInput.Explanation(r, e))));
        return cmd;
    }
}
