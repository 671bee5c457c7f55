using System.Collections.Concurrent;
using CryptoTensors.Gpu.Keys;

namespace CryptoTensors.Gpu.Tests.Hardening;

/// <summary>
/// Records, through <see cref="SecretBuffer.Observer"/>, every secret buffer created in the test's flow and the key bytes
/// each held just before it was zeroed. Dispose detaches it.
/// </summary>
internal sealed class SecretRecorder : ISecretBufferObserver, IDisposable
{
    private readonly ISecretBufferObserver? _previous;
    private readonly ConcurrentQueue<SecretBuffer> _created = new();
    private readonly ConcurrentQueue<byte[]> _zeroed = new();

    public SecretRecorder()
    {
        _previous = SecretBuffer.Observer.Value;
        SecretBuffer.Observer.Value = this;
    }

    public IReadOnlyCollection<SecretBuffer> CreatedBuffers => _created;

    /// <summary>The bytes buffers held when they were zeroed (data keys, master keys, signing seeds).</summary>
    public IReadOnlyCollection<byte[]> ZeroedSecrets => _zeroed;

    public void Created(SecretBuffer buffer) => _created.Enqueue(buffer);

    public void Zeroing(SecretBuffer buffer, ReadOnlySpan<byte> bytes) => _zeroed.Enqueue(bytes.ToArray());

    /// <summary>Buffers created and not disposed, or disposed but not all zero.</summary>
    public List<string> Leaks()
        => _created.Where(b => !b.IsDisposed || b.BytesForTests.IndexOfAnyExcept((byte)0) >= 0)
            .Select(b => $"{b} disposed={b.IsDisposed}").ToList();

    /// <summary>The individual keys in what was zeroed (a data-key buffer holds one key per tensor), all-zero slots left out.</summary>
    public IEnumerable<byte[]> Keys()
    {
        foreach (var s in _zeroed)
        {
            var size = s.Length % 32 == 0 ? 32 : s.Length % 16 == 0 ? 16 : s.Length;
            for (var o = 0; o + size <= s.Length; o += size)
            {
                var k = s.AsSpan(o, size);
                if (k.IndexOfAnyExcept((byte)0) >= 0) yield return k.ToArray();
            }
        }
    }

    public void Dispose() => SecretBuffer.Observer.Value = _previous;
}
