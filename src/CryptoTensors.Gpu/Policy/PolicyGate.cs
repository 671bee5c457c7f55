using CryptoTensors.Gpu.Crypto;
using CryptoTensors.Gpu.Reading;

namespace CryptoTensors.Gpu.Policy;

/// <summary>
/// Evaluates a file's local policy at open — after the signature is verified and before any data key is unwrapped —
/// with an input document describing the load; checks policies before they are written into a file.
/// </summary>
public static class PolicyGate
{
    internal static void EnsureAllowed(AccessPolicy policy, string path, CryptoKeysField keys, ReaderOptions options, string? keySource = null)
    {
        if (options.SkipPolicyEvaluation) return;
        var input = PolicyInput.ForCurrentProcess(Path.GetFileName(path), options.Device, options.RequestedTensors,
            keys.Enc.Kid, keys.Sign.Kid, options.PolicyContext, options.PolicyClock, keySource);
        var compiled = PolicyEngine.Compile(policy.Local, options.PolicyLimits);
        var document = input.ToJsonElement();
        try
        {
            compiled.EnsureAllowed(document, options.PolicyClock);
        }
        catch (PolicyDeniedException e)
        {
            e.InputDocument = document.GetRawText();
            throw;
        }
    }

    /// <summary>Checks that a policy is within the supported Rego subset (a denying policy is fine); throws <see cref="PolicyDeniedException"/> with <see cref="ErrorCode.PolicyUnsupported"/> otherwise.</summary>
    public static void Check(string rego) => PolicyEngine.Compile(rego);
}
