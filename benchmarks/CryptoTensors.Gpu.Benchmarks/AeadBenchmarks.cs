using BenchmarkDotNet.Attributes;
using CryptoTensors.Gpu.Crypto;

namespace CryptoTensors.Gpu.Benchmarks;

/// <summary>In-cache AEAD throughput of one chunk (the decrypt ceiling per core), per algorithm and backend.</summary>
[MemoryDiagnoser]
public class AeadBenchmarks
{
    private AeadCipher _cipher = null!;
    private byte[] _data = null!;
    private readonly byte[] _nonce = new byte[12];
    private readonly byte[] _tag = new byte[16];

    /// <summary>An algorithm on a backend, shown as e.g. <c>aes256gcm/ipsec-mb</c>.</summary>
    public readonly record struct Variant(AeadAlgorithm Algorithm, AeadBackend Backend)
    {
        public override string ToString() => $"{Algorithm.CanonicalName()}/{(Backend == AeadBackend.IpsecMb ? "ipsec-mb" : "bcl")}";
    }

    /// <summary>AES-GCM on each available backend; ChaCha20-Poly1305 has only the BCL.</summary>
    public static IEnumerable<Variant> Variants()
    {
        foreach (var algorithm in new[] { AeadAlgorithm.Aes256Gcm, AeadAlgorithm.Aes128Gcm })
        {
            yield return new(algorithm, AeadBackend.Bcl);
            if (AeadBackends.IpsecMbAvailable) yield return new(algorithm, AeadBackend.IpsecMb);
        }
        yield return new(AeadAlgorithm.ChaCha20Poly1305, AeadBackend.Bcl);
    }

    [ParamsSource(nameof(Variants))]
    public Variant Cipher { get; set; }

    [Params(64 * 1024, 2 * 1024 * 1024)]
    public int ChunkBytes { get; set; }

    [GlobalSetup]
    public void Setup()
    {
        _cipher = new AeadCipher(Cipher.Algorithm, new byte[Cipher.Algorithm.KeySize()], Cipher.Backend);
        _data = new byte[ChunkBytes];
        _cipher.Encrypt(_nonce, _data, _data, _tag);
    }

    [Benchmark]
    public void EncryptInPlace() => _cipher.Encrypt(_nonce, _data, _data, _tag);

    [Benchmark]
    public bool DecryptAndAuthenticate()
    {
        _cipher.Encrypt(_nonce, _data, _data, _tag);
        return _cipher.TryDecrypt(_nonce, _data, _tag, _data);
    }

    [GlobalCleanup]
    public void Cleanup() => _cipher.Dispose();
}
