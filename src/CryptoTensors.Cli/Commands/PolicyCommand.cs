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
        var input = new Option<string?>("--input") { Description = "JSON file: the input document (default: none, as the reference)" };
        var cmd = new Command("eval", "Evaluate data.model.allow: prints allow (exit 0), deny (exit 6) or the error (exit 2).") { policy, input };
        cmd.SetAction(r =>
        {
            try
            {
                var text = File.ReadAllText(r.GetValue(policy)!);
                JsonElement? doc = null;
                if (r.GetValue(input) is { } path)
                {
                    try { doc = JsonDocument.Parse(File.ReadAllText(path)).RootElement.Clone(); }
                    catch (JsonException e) { throw new ArgumentException($"--input '{path}' is not JSON: {e.Message}", e); }
                }
                var decision = PolicyEngine.Compile(text).Evaluate(doc);
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
