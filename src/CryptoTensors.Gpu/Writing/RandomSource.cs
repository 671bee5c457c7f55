using System.Security.Cryptography;

namespace CryptoTensors.Gpu.Writing;

/// <summary>What a random value is for (so that a test can fix each one, as the known-answer test does).</summary>
public enum RandomPurpose
{
    /// <summary>A tensor's data key.</summary>
    DataKey,
    /// <summary>The nonce that wraps a data key under the master key.</summary>
    KeyWrapNonce,
    /// <summary>A v1 tensor's data nonce.</summary>
    DataNonce,
    /// <summary>A v2 tensor's base nonce.</summary>
    BaseNonce,
}

/// <summary>Source of the writer's randomness. The default is the OS CSPRNG; tests inject fixed values.</summary>
public interface IRandomSource
{
    /// <summary>Fills <paramref name="destination"/> with random bytes for <paramref name="purpose"/> of tensor <paramref name="tensor"/>.</summary>
    void Fill(Span<byte> destination, RandomPurpose purpose, string tensor);
}

/// <summary>The operating system's CSPRNG (<see cref="RandomNumberGenerator"/>).</summary>
public sealed class SystemRandomSource : IRandomSource
{
    /// <summary>The instance.</summary>
    public static SystemRandomSource Instance { get; } = new();

    /// <inheritdoc />
    public void Fill(Span<byte> destination, RandomPurpose purpose, string tensor) => RandomNumberGenerator.Fill(destination);
}
