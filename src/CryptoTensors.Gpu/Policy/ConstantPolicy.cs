using System.Text.RegularExpressions;

namespace CryptoTensors.Gpu.Policy;

/// <summary>
/// Evaluates the constant policies the reference can decide without input: <c>package model</c>, optionally
/// <c>import rego.v1</c>, and <c>allow = true|false</c>, <c>allow := true|false</c>, <c>default allow := …</c>.
/// Anything else is refused as unsupported: never allowed by default.
/// </summary>
internal static partial class ConstantPolicy
{
    public static void EnsureAllowed(string rego)
    {
        bool? value = null;
        bool? @default = null;
        var sawPackage = false;
        var lineNo = 0;
        foreach (var raw in rego.Split('\n'))
        {
            lineNo++;
            var line = StripComment(raw).Trim();
            if (line.Length == 0) continue;
            if (!sawPackage)
            {
                if (line != "package model")
                    throw Errors.Create(ErrorCode.PolicyEvaluationFailed, $"policy evaluation failed: not a valid rule path (line {lineNo}: expected 'package model')", field: "__policy__");
                sawPackage = true;
                continue;
            }
            if (line == "import rego.v1") continue;
            var m = RulePattern().Match(line);
            if (!m.Success)
                throw Errors.Create(ErrorCode.PolicyUnsupported, $"unsupported policy construct at line {lineNo}: '{line}' (only constant 'allow' rules are supported)", field: "__policy__");
            var v = m.Groups["v"].Value == "true";
            if (m.Groups["d"].Success)
            {
                if (@default is not null) throw Errors.Create(ErrorCode.PolicyEvaluationFailed, "policy evaluation failed: multiple default rules for allow", field: "__policy__");
                @default = v;
            }
            else
            {
                if (value is { } prev && prev != v) throw Errors.Create(ErrorCode.PolicyEvaluationFailed, "policy evaluation failed: conflicting values for allow", field: "__policy__");
                value = v;
            }
        }
        if (!sawPackage) throw Errors.Create(ErrorCode.PolicyEvaluationFailed, "policy evaluation failed: not a valid rule path", field: "__policy__");
        var result = value ?? @default;
        if (result is null) throw Errors.Create(ErrorCode.PolicyUndefined, "policy returned undefined", field: "__policy__");
        if (result == false) throw Errors.Create(ErrorCode.PolicyDenied, "policy evaluation denied", field: "__policy__");
    }

    private static string StripComment(string line)
    {
        var i = line.IndexOf('#', StringComparison.Ordinal);
        return i < 0 ? line : line[..i];
    }

    [GeneratedRegex(@"^(?<d>default\s+)?allow\s*(:=|=)\s*(?<v>true|false)$")]
    private static partial Regex RulePattern();
}
