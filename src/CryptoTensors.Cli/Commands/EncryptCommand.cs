using System.CommandLine;
using CryptoTensors.Gpu;
using CryptoTensors.Gpu.Crypto;
using CryptoTensors.Gpu.Format;
using CryptoTensors.Gpu.Policy;
using CryptoTensors.Gpu.Reading;
using CryptoTensors.Gpu.Writing;

namespace CryptoTensors.Cli.Commands;

/// <summary><c>ctensors encrypt</c>: a plain safetensors file to an encrypted, signed CryptoTensors file.</summary>
internal static class EncryptCommand
{
    /// <summary>Bytes one chunk's tag adds to the stored header: 24 base64 characters, escaped quotes and a comma.</summary>
    internal const int TagBytesPerChunk = 29;

    public static Command Create(CliIO io)
    {
        var input = new Argument<string>("input") { Description = "Plain safetensors file, or a directory with model.safetensors.index.json" };
        var output = new Option<string>("--output", "-o") { Description = "Output file (a directory for a sharded input); refused when it is the input, unless --force", Required = true };
        var key = new Option<string?>("--key") { Description = "Master key JWK (" + KeyOptions.EnvNote + ")" };
        var signKey = new Option<string?>("--sign-key") { Description = "Ed25519 private JWK (" + KeyOptions.EnvNote + ")" };
        var tensors = new Option<string?>("--tensors") { Description = "Comma-separated names to encrypt (default: all); every name must exist" };
        var allowPlain = new Option<bool>("--allow-plain") { Description = "Let a --tensors filter that selects nothing write a plain, unsigned copy (as the reference does)" };
        var version = new Option<string>("--format-version") { Description = "1 (monolithic) or 2 (chunked)", DefaultValueFactory = _ => "2" }.OneOf("1", "2");
        var chunk = new Option<long>("--chunk-size")
        {
            Description = $"v2 chunk size in bytes, 1 to {WriterOptions.MaxChunkSize} (default {CryptoKeysField.DefaultChunkSize}); not with --format-version 1",
            DefaultValueFactory = _ => CryptoKeysField.DefaultChunkSize,
        };
        var policy = new Option<string?>("--policy") { Description = "Rego policy file for __policy__.local (a policy that cannot be compiled: exit 2)" };
        var metadata = new Option<string[]>("--metadata") { Description = "User metadata k=v (repeatable)", AllowMultipleArgumentsPerToken = false };
        var force = new Option<bool>("--force") { Description = "Allow the output to be the input (replacing the plain file)" };
        var cmd = new Command("encrypt", "Encrypt and sign a safetensors file.") { input, output, key, signKey, tensors, allowPlain, version, chunk, policy, metadata, force };
        cmd.SetAction(r => io.Guard(() =>
        {
            var inPath = r.GetValue(input)!;
            var outPath = r.GetValue(output)!;
            var formatVersion = int.Parse(r.GetValue(version)!, System.Globalization.CultureInfo.InvariantCulture);
            var chunkSize = r.GetValue(chunk);
            var chunkGiven = r.GetResult(chunk) is { Implicit: false };
            if (chunkGiven && formatVersion == 1)
                throw new ArgumentException("--chunk-size applies to format version 2 only; --format-version 1 encrypts each tensor whole");
            if (chunkSize is < 1 or > WriterOptions.MaxChunkSize)
                throw new ArgumentException($"--chunk-size must be between 1 and {WriterOptions.MaxChunkSize} bytes, not {chunkSize}");

            // Everything that can refuse the input as a whole is checked before any key is loaded or byte written.
            var files = ShardedInputs.Inspect(inPath);
            CliOptions.CheckOutput(inPath, outPath, ShardedInputs.IsSharded(inPath), r.GetValue(force));
            if (files.FirstOrDefault(f => f.IsEncrypted) is { } encrypted)
                throw new ArgumentException($"'{encrypted.Path}' is already encrypted: use rewrap to change its keys or policy, or decrypt it first");
            var filter = r.GetValue(tensors)?.Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries);
            var selected = files.SelectMany(f => f.Header.Tensors).Where(t => filter is null || filter.Contains(t.Name, StringComparer.Ordinal)).ToList();
            if (filter is not null)
            {
                var names = files.SelectMany(f => f.Header.Tensors).Select(t => t.Name).ToHashSet(StringComparer.Ordinal);
                var unknown = filter.Where(n => !names.Contains(n)).ToList();
                if (unknown.Count > 0)
                    throw new ArgumentException($"--tensors: no tensor named {string.Join(", ", unknown.Select(n => $"'{n}'"))} in '{inPath}'");
                if (selected.Count == 0 && !r.GetValue(allowPlain))
                    throw new ArgumentException("--tensors selects no tensor: the output would be a plain, unsigned copy; give --allow-plain if that is what you want");
            }
            if (formatVersion == 2) WarnIfTagsGrowTheFile(io, files, selected, chunkSize);

            AccessPolicy? accessPolicy = r.GetValue(policy) is { } policyPath ? LoadPolicy(policyPath) : null;
            using var master = KeyOptions.MasterKey(r.GetValue(key));
            using var signer = KeyOptions.SigningKey(r.GetValue(signKey));
            var extra = r.GetValue(metadata) ?? [];
            void EncryptOne(CryptoTensorsReader source, string target)
            {
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
                        FormatVersion = formatVersion,
                        ChunkSize = chunkSize,
                        EncryptOnly = filter,
                        Policy = accessPolicy,
                        Metadata = meta.Count == 0 && source.Header.Metadata is null ? null : meta,
                    }, progress));
            }
            ShardedInputs.ForEach(inPath, outPath, new ReaderOptions { Keys = new() }, EncryptOne);
            io.Out.WriteLine($"wrote {outPath}");
            return 0;
        }));
        return cmd;
    }

    /// <summary>
    /// Reads and compiles a policy file. A policy that cannot be compiled is a policy error (exit 2, as from
    /// <c>policy eval</c>); a file that cannot be read is an I/O error (exit 1).
    /// </summary>
    internal static AccessPolicy LoadPolicy(string path, string option = "--policy")
    {
        var text = CliOptions.ReadText(option, path);
        try
        {
            PolicyGate.Check(text);
        }
        catch (CryptoTensorsException e)
        {
            throw new CliException(PolicyCommand.PolicyErrorExitCode, $"{option} '{path}': {e.Message}", e);
        }
        return new AccessPolicy(text, AccessPolicy.DefaultText);
    }

    /// <summary>
    /// Warns on standard error when the chunk size makes the file grow by more than 10 %: the tags of the chunks
    /// beyond each tensor's first (which v1 and any chunk size store too) are what the chunk size adds.
    /// </summary>
    private static void WarnIfTagsGrowTheFile(CliIO io, IReadOnlyList<FileSummary> files, List<TensorInfo> selected, long chunkSize)
    {
        var chunks = selected.Sum(t => Math.Max(0, (t.ByteLength + chunkSize - 1) / chunkSize - 1));
        var added = chunks * TagBytesPerChunk;
        var inputBytes = files.Sum(f => f.FileLength);
        if (inputBytes > 0 && added * 10 > inputBytes)
            io.Err.WriteLine(string.Create(System.Globalization.CultureInfo.InvariantCulture,
                $"ctensors: warning: --chunk-size {chunkSize} stores {chunks:N0} extra chunk tags in the header, about {added:N0} bytes ({100.0 * added / inputBytes:F0} % of the input); a larger chunk size keeps the file smaller"));
    }
}
