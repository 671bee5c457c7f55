using CryptoTensors.Gpu.Crypto;
using CryptoTensors.Gpu.Reading;

namespace CryptoTensors.Gpu.Policy;

/// <summary>Evaluates a file's local policy at open, before any data key is unwrapped.</summary>
internal static class PolicyGate
{
    public static void EnsureAllowed(AccessPolicy policy, string path, CryptoKeysField keys, ReaderOptions options)
        => ConstantPolicy.EnsureAllowed(policy.Local);
}
