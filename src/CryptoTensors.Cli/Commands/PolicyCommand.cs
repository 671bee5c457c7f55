using System.CommandLine;
using System.Text.Json;
using CryptoTensors.Gpu;
using CryptoTensors.Gpu.Policy;
using CryptoTensors.Gpu.Reading;

namespace CryptoTensors.Cli.Commands;

/// <summary><c>ctensors policy eval|show</c>.</summary>
internal static class PolicyCommand
{
    public static Command Create(CliIO io)
    {
        var cmd = new Command("policy", "Evaluate a Rego policy, or show the policy embedded in a model.");
        cmd.Subcommands.Add(Eval(io));
        cmd.Subcommands.Add(Show(io));
        return cmd;
    }

    /// <summary>Exit code of a policy that cannot be evaluated (parse error, unsupported construct, bound, non-boolean, conflict).</summary>
    public const int PolicyErrorExitCode = 2;

    private static Command Eval(CliIO io)
    {
        var policy = new Option<string>("--policy") { Description = "Rego file", Required = true };
        var input = new Option<string?>("--input") { Description = "JSON file: the whole input document (default: none, as the reference; or built from --context/--device)" };
        var context = new Option<string?>("--context") { Description = "Build the input document a load would see, with this JSON object as input.context" };
        var device = new Option<string?>("--device") { Description = "Build the input document a load would see, for this device (cpu or cuda:N)" };
        var file = new Option<string?>("--file") { Description = "With --context/--device: input.file.name of the built document" };
        var explain = new Option<bool>("--explain") { Description = "Print the input document evaluated (on stderr)" };
        var cmd = new Command("eval", "Evaluate data.model.allow: prints allow (exit 0), deny (exit 6) or the error (exit 2; an unreadable file: exit 1).")
        {
            policy, input, context, device, file, explain,
        };
        cmd.SetAction(r =>
        {
            try
            {
                var policyPath = r.GetValue(policy)!;
                var text = CliOptions.ReadText("--policy", policyPath);
                JsonElement? doc = null;
                if (r.GetValue(input) is { } path)
                {
                    if (r.GetValue(context) is not null || r.GetValue(device) is not null || r.GetValue(file) is not null)
                        throw new ArgumentException("--input gives the whole input document: not with --context, --device or --file");
                    doc = ReadInputDocument(path);
                }
                else if (r.GetValue(context) is not null || r.GetValue(device) is not null || r.GetValue(file) is not null)
                {
                    var dev = (r.GetValue(device) ?? PolicyInput.CpuDevice).ToLowerInvariant();
                    if (dev != PolicyInput.CpuDevice && !(dev.StartsWith("cuda:", StringComparison.Ordinal) && int.TryParse(dev.AsSpan(5), System.Globalization.NumberStyles.None, System.Globalization.CultureInfo.InvariantCulture, out _)))
                        throw new ArgumentException($"--device '{r.GetValue(device)}' is not cpu or cuda:N");
                    doc = PolicyInput.ForCurrentProcess(r.GetValue(file) ?? "", dev,
                        context: r.GetValue(context) is { } c ? CliOptions.ReadJsonObject("--context", c) : null).ToJsonElement();
                }
                if (r.GetValue(explain)) io.Err.WriteLine("ctensors: policy data.model.allow evaluated with input = " + (doc is { } d ? d.GetRawText() : "(none)"));
                CompiledPolicy compiled;
                try
                {
                    compiled = PolicyEngine.Compile(text);
                }
                catch (CryptoTensorsException e)
                {
                    throw new CliException(PolicyErrorExitCode, $"--policy '{policyPath}': {e.Message}", e);
                }
                var decision = compiled.Evaluate(doc);
                switch (decision)
                {
                    case PolicyDecision.Allow:
                        io.Out.WriteLine("allow");
                        return 0;
                    case PolicyDecision.Deny:
                        io.Out.WriteLine("deny");
                        return (int)ErrorKind.Policy;
                    default:
                        io.Out.WriteLine("deny (allow is undefined)");
                        return (int)ErrorKind.Policy;
                }
            }
            catch (CliException e)
            {
                io.Err.WriteLine("ctensors: error: " + CliIO.OneLine(e.Message));
                return e.ExitCode;
            }
            catch (CryptoTensorsException e)
            {
                io.Err.WriteLine("ctensors: error: " + CliIO.OneLine(e.Message));
                return PolicyErrorExitCode;
            }
            catch (Exception e) when (e is IOException or UnauthorizedAccessException or ArgumentException)
            {
                io.Err.WriteLine("ctensors: error: " + CliIO.OneLine(e.Message));
                return CliApp.UsageExitCode;
            }
        });
        return cmd;
    }

    /// <summary>The <c>--input</c> document: any JSON value (the reference evaluates without one; OPA takes any value).</summary>
    private static JsonElement ReadInputDocument(string path)
    {
        var text = CliOptions.ReadText("--input", path);
        try
        {
            // Parsed up to the engine's own ceiling, so a deep document is refused by the policy bound it breaks
            // (PolicyLimits.MaxInputDepth, named in the message) rather than as "not JSON".
            using var parsed = JsonDocument.Parse(text, new JsonDocumentOptions { MaxDepth = PolicyLimits.MaxDepthLimit });
            return parsed.RootElement.Clone();
        }
        catch (JsonException e)
        {
            throw new ArgumentException($"--input '{path}' is not JSON: {e.Message}", e);
        }
    }

    private static Command Show(CliIO io)
    {
        var model = new Argument<string>("model") { Description = "CryptoTensors file" };
        var remote = new Option<bool>("--remote") { Description = "Show the remote policy instead of the local one" };
        var cmd = new Command("show", "Print the policy embedded in a model (no keys needed; not verified).") { model, remote };
        cmd.SetAction(r => io.Guard(() =>
        {
            var s = FileInspector.Inspect(r.GetValue(model)!);
            if (s.Policy is null) throw Errors.Create(ErrorCode.InvalidCryptoField, "the file carries no __policy__", field: "__policy__");
            io.Out.WriteLine(r.GetValue(remote) ? s.Policy.Remote : s.Policy.Local);
            return 0;
        }));
        return cmd;
    }
}
