using System.CommandLine;
using System.Security.Cryptography;
using System.Text.Encodings.Web;
using System.Text.Json;
using CryptoTensors.Gpu;
using CryptoTensors.Gpu.Format;
using CryptoTensors.Gpu.Reading;

namespace CryptoTensors.Cli.Commands;

/// <summary>
/// <c>ctensors verify</c>: signature, policy, every data key and every chunk tag checked, every tensor decrypted
/// and hashed, nothing written.
/// </summary>
internal static class VerifyCommand
{
    public static Command Create(CliIO io)
    {
        var input = new Argument<string>("input") { Description = "File, sharded model directory, or - for standard input" };
        var key = new Option<string?>("--key") { Description = "Master key JWK or JWK Set (" + KeyOptions.EnvNote + ")" };
        var verifyKey = new Option<string?>("--verify-key") { Description = "Ed25519 public JWK or JWK Set (" + KeyOptions.EnvNote + ")" };
        var json = new Option<bool>("--json") { Description = "Print exactly one JSON object on stdout" };
        var requireEncrypted = new Option<bool>("--require-encrypted") { Description = "Refuse plain (unencrypted, unsigned) files" };
        var requireAllEncrypted = new Option<bool>("--require-all-encrypted")
        {
            Description = "Refuse files with any tensor stored in plain (the signature does not cover tensor bytes; only encrypted tensors are authenticated)",
        };
        var policyInput = new PolicyInputOptions();
        var remoteKeys = new RemoteKeyOptions();
        var cmd = new Command("verify", "Check signature, policy, keys and every tag; decrypt and hash every tensor (listed by name); write nothing.")
        {
            input, key, verifyKey, json, requireEncrypted, requireAllEncrypted,
        };
        remoteKeys.AddTo(cmd);
        policyInput.AddTo(cmd);
        cmd.SetAction(r =>
        {
            var asJson = r.GetValue(json);
            return io.Guard(() =>
            {
                var results = new List<(TensorDescriptor T, string Sha)>();
                using var remote = remoteKeys.ProviderOf(r);
                var options = KeyOptions.ReaderOptions(r.GetValue(key), r.GetValue(verifyKey), r.GetValue(requireEncrypted),
                    policyInput.ContextOf(r), policyInput.DeviceOf(r), remote: remote, followHeaderKeyLocations: remoteKeys.FollowsHeaderLocations(r),
                    requireAllEncrypted: r.GetValue(requireAllEncrypted));
                using var releaseKeys = KeyOptions.Owning(options);
                var authenticated = true;
                if (r.GetValue(input) == "-")
                {
                    authenticated = VerifyStream(io.In, options, results);
                }
                else ShardedInputs.ForEach(r.GetValue(input)!, null, options, (reader, _) =>
                {
                    authenticated &= reader.IsEncrypted;
                    foreach (var t in reader.Tensors)
                    {
                        var bytes = reader.ReadTensor(t.Name);
                        results.Add((t, Convert.ToHexStringLower(SHA256.HashData(bytes))));
                        CryptographicOperations.ZeroMemory(bytes);
                    }
                });
                // One order whatever the input's form (single file, shards, stream): by name, UTF-8 byte order.
                results.Sort((a, b) => Utf8Order.Instance.Compare(a.T.Name, b.T.Name));
                if (asJson) WriteOk(io.Out, results, authenticated);
                else
                {
                    foreach (var (t, sha) in results)
                        io.Out.WriteLine($"ok {(t.IsEncrypted ? "enc  " : "plain")} {t.Dtype.Name(),-8} {SafetensorsHeader.FormatShape(t.Shape),-20} {sha}  {t.Name}");
                    io.Out.WriteLine(authenticated
                        ? $"verified {results.Count} tensors: signature, policy, keys and every tag checked"
                        : $"read {results.Count} tensors: a plain file (not encrypted, not signed): NOTHING WAS AUTHENTICATED; the hashes only describe the bytes read");
                }
                return 0;
            }, e =>
            {
                io.Explain(policyInput.Explanation(r, e));
                if (!asJson) return null;
                WriteError(io.Out, e);
                io.WriteError(e);
                return CliIO.ExitCode(e);
            });
        });
        return cmd;
    }

    /// <summary>Verifies a non-seekable stream in file order with bounded memory, hashing each tensor incrementally.</summary>
    private static bool VerifyStream(Stream stream, ReaderOptions options, List<(TensorDescriptor T, string Sha)> results)
    {
        using var reader = CryptoTensorsStreamReader.OpenAsync(stream, "stdin", options).GetAwaiter().GetResult();
        using var hash = IncrementalHash.CreateHash(HashAlgorithmName.SHA256);
        reader.ReadAllAsync((t, offset, data) =>
        {
            hash.AppendData(data.Span);
            if (offset + data.Length == t.ByteLength) results.Add((t, Convert.ToHexStringLower(hash.GetHashAndReset())));
            return ValueTask.CompletedTask;
        }).GetAwaiter().GetResult();
        return reader.IsEncrypted;
    }

    private static Utf8JsonWriter Writer(Stream s) => new(s, new JsonWriterOptions { Encoder = JavaScriptEncoder.UnsafeRelaxedJsonEscaping });

    private static void WriteOk(TextWriter o, List<(TensorDescriptor T, string Sha)> results, bool authenticated)
    {
        using var ms = new MemoryStream();
        using (var w = Writer(ms))
        {
            w.WriteStartObject();
            w.WriteBoolean("ok", true);
            w.WriteBoolean("authenticated", authenticated);
            w.WriteStartArray("tensors");
            foreach (var (t, sha) in results)
            {
                w.WriteStartObject();
                w.WriteString("name", t.Name);
                w.WriteString("dtype", t.Dtype.Name());
                w.WriteStartArray("shape");
                foreach (var d in t.Shape) w.WriteNumberValue(d);
                w.WriteEndArray();
                w.WriteNumber("nbytes", t.ByteLength);
                w.WriteBoolean("encrypted", t.IsEncrypted);
                w.WriteString("sha256", sha);
                w.WriteEndObject();
            }
            w.WriteEndArray();
            w.WriteEndObject();
        }
        o.WriteLine(System.Text.Encoding.UTF8.GetString(ms.ToArray()));
    }

    private static void WriteError(TextWriter o, Exception e)
    {
        using var ms = new MemoryStream();
        using (var w = Writer(ms))
        {
            w.WriteStartObject();
            w.WriteBoolean("ok", false);
            w.WriteStartObject("error");
            w.WriteString("kind", e is CryptoTensorsException ce ? ce.Kind.ToVectorName() : "io");
            w.WriteString("message", CliIO.Message(e));
            if (e is CryptoTensorsException { Tensor: { } t }) w.WriteString("tensor", t); else w.WriteNull("tensor");
            w.WriteEndObject();
            w.WriteEndObject();
        }
        o.WriteLine(System.Text.Encoding.UTF8.GetString(ms.ToArray()));
    }
}
