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
        var input = new Argument<string>("input") { Description = "CryptoTensors file" };
        var output = new Option<string>("--output", "-o") { Description = "Plain safetensors output", Required = true };
        var key = new Option<string?>("--key") { Description = "Master key JWK or JWK Set" };
        var verifyKey = new Option<string?>("--verify-key") { Description = "Ed25519 public JWK or JWK Set" };
        var context = new Option<string?>("--context") { Description = "JSON object given to the policy as input.context" };
        var cmd = new Command("decrypt", "Verify and decrypt into a plain safetensors file (same tensors and user metadata).") { input, output, key, verifyKey, context };
        cmd.SetAction(r => io.Guard(() =>
        {
            var outPath = r.GetValue(output)!;
            ShardedInputs.ForEach(r.GetValue(input)!, outPath, KeyOptions.ReaderOptions(r.GetValue(key), r.GetValue(verifyKey), contextPath: r.GetValue(context)), (reader, target) =>
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
        }));
        return cmd;
    }
}
