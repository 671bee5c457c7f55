using System.CommandLine;
using CryptoTensors.Gpu;
using CryptoTensors.Gpu.Crypto;
using CryptoTensors.Gpu.Policy;
using CryptoTensors.Gpu.Reading;
using CryptoTensors.Gpu.Writing;

namespace CryptoTensors.Cli.Commands;

/// <summary><c>ctensors encrypt</c>: a plain safetensors file to an encrypted, signed CryptoTensors file.</summary>
internal static class EncryptCommand
{
    public static Command Create(CliIO io)
    {
        var input = new Argument<string>("input") { Description = "Plain safetensors file, or a directory with model.safetensors.index.json" };
        var output = new Option<string>("--output", "-o") { Description = "Output file (a directory for a sharded input)", Required = true };
        var key = new Option<string?>("--key") { Description = "Master key JWK (default: CRYPTOTENSOR_KEYS)" };
        var signKey = new Option<string?>("--sign-key") { Description = "Ed25519 private JWK (default: CRYPTOTENSOR_KEYS)" };
        var tensors = new Option<string?>("--tensors") { Description = "Comma-separated names to encrypt (default: all)" };
        var version = new Option<int>("--format-version") { Description = "1 (monolithic) or 2 (chunked)", DefaultValueFactory = _ => 2 };
        version.AcceptOnlyFromAmong("1", "2");
        var chunk = new Option<long>("--chunk-size") { Description = "v2 chunk size in bytes", DefaultValueFactory = _ => CryptoKeysField.DefaultChunkSize };
        var policy = new Option<string?>("--policy") { Description = "Rego policy file for __policy__.local" };
        var metadata = new Option<string[]>("--metadata") { Description = "User metadata k=v (repeatable)", AllowMultipleArgumentsPerToken = false };
        var cmd = new Command("encrypt", "Encrypt and sign a safetensors file.") { input, output, key, signKey, tensors, version, chunk, policy, metadata };
        cmd.SetAction(r => io.Guard(() =>
        {
            AccessPolicy? accessPolicy = null;
            if (r.GetValue(policy) is { } policyPath)
            {
                var text = File.ReadAllText(policyPath);
                PolicyGate.Check(text);
                accessPolicy = new AccessPolicy(text, AccessPolicy.DefaultText);
            }
            using var master = KeyOptions.MasterKey(r.GetValue(key));
            using var signer = KeyOptions.SigningKey(r.GetValue(signKey));
            var filter = r.GetValue(tensors)?.Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries);
            var outPath = r.GetValue(output)!;
            var extra = r.GetValue(metadata) ?? [];
            void EncryptOne(CryptoTensorsReader source, string target)
            {
                if (source.IsEncrypted) throw new ArgumentException($"'{source.Path}' is already encrypted (use rewrap to change keys)");
                var meta = new Dictionary<string, string>(StringComparer.Ordinal);
                foreach (var kv in source.Metadata.Concat(source.ReservedMetadata)) meta[kv.Key] = kv.Value;
                foreach (var kv in extra)
                {
                    var eq = kv.IndexOf('=', StringComparison.Ordinal);
                    if (eq <= 0) throw new ArgumentException($"--metadata '{kv}' is not k=v");
                    meta[kv[..eq]] = kv[(eq + 1)..];
                }
                CliProgress.Run(io, "encrypt " + Path.GetFileName(target), progress =>
                    CryptoTensorsWriter.Write(target, source.Tensors.Select(t => TensorSource.FromReader(source, t.Name)), new WriterOptions
                    {
                        MasterKey = master,
                        SigningKey = signer,
                        FormatVersion = r.GetValue(version),
                        ChunkSize = r.GetValue(chunk),
                        EncryptOnly = filter,
                        Policy = accessPolicy,
                        Metadata = meta.Count == 0 && source.Header.Metadata is null ? null : meta,
                    }, progress));
            }
            ShardedInputs.ForEach(r.GetValue(input)!, outPath, new ReaderOptions { Keys = new() }, EncryptOne);
            io.Out.WriteLine($"wrote {outPath}");
            return 0;
        }));
        return cmd;
    }
}
