using CryptoTensors.Gpu.Crypto;
using CryptoTensors.Gpu.Reading;

namespace CryptoTensors.Gpu.Policy;

/// <summary>Evaluates a file's local policy at open, before any data key is unwrapped; checks policies before they are written.</summary>
public static class PolicyGate
{
    internal static void EnsureAllowed(AccessPolicy policy, string path, CryptoKeysField keys, ReaderOptions options)
        => ConstantPolicy.EnsureAllowed(policy.Local);

    /// <summary>Checks that a policy can be evaluated (a denying policy is fine); throws on a construct outside the supported subset.</summary>
    public static void Check(string rego)
    {
        try { ConstantPolicy.EnsureAllowed(rego); }
        catch (CryptoTensorsException e) when (e.Code is ErrorCode.PolicyDenied or ErrorCode.PolicyUndefined) { }
    }
}
