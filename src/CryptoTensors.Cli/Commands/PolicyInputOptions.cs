using System.CommandLine;
using System.Text.Json;
using CryptoTensors.Gpu;
using CryptoTensors.Gpu.Policy;

namespace CryptoTensors.Cli.Commands;

/// <summary>
/// The options that set what the file's access policy sees (<c>--context</c>, <c>--device</c>) and that explain a
/// denial (<c>--explain</c>), shared by every command that opens an encrypted file with keys.
/// </summary>
internal sealed class PolicyInputOptions
{
    public Option<string?> Context { get; } = new("--context")
    {
        Description = "JSON file holding an object given to the policy as input.context (the rest of the input document is filled by ctensors)",
    };

    public Option<string> Device { get; } = new("--device")
    {
        Description = "The device the load is for, given to the policy as input.device: cpu (default) or cuda:N",
        DefaultValueFactory = _ => PolicyInput.CpuDevice,
        CustomParser = r =>
        {
            var v = r.Tokens.Count == 0 ? PolicyInput.CpuDevice : r.Tokens[^1].Value.ToLowerInvariant();
            if (v != PolicyInput.CpuDevice && !(v.StartsWith("cuda:", StringComparison.Ordinal) && int.TryParse(v.AsSpan(5), System.Globalization.NumberStyles.None, System.Globalization.CultureInfo.InvariantCulture, out _)))
                r.AddError($"--device '{r.Tokens[^1].Value}' is not cpu or cuda:N");
            return v;
        },
    };

    public Option<bool> Explain { get; } = new("--explain")
    {
        Description = "On a policy denial, also print the input document the policy was evaluated against (no key material)",
    };

    public void AddTo(Command command)
    {
        command.Options.Add(Context);
        command.Options.Add(Device);
        command.Options.Add(Explain);
    }

    /// <summary>The <c>input.context</c> object given with <c>--context</c>, or null.</summary>
    public JsonElement? ContextOf(ParseResult r) => r.GetValue(Context) is { } path ? CliOptions.ReadJsonObject("--context", path) : null;

    /// <summary>The device name given with <c>--device</c>.</summary>
    public string DeviceOf(ParseResult r) => r.GetValue(Device) ?? PolicyInput.CpuDevice;

    /// <summary>
    /// With <c>--explain</c>, the second line printed for a policy denial: the input document evaluated. Returns
    /// null for any other failure or without the option.
    /// </summary>
    public string? Explanation(ParseResult r, Exception e)
        => r.GetValue(Explain) && e is PolicyDeniedException { InputDocument: { } doc }
            ? "ctensors: policy data.model.allow was evaluated with input = " + doc
            : null;
}
