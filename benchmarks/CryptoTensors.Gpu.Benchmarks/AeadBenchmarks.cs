using BenchmarkDotNet.Attributes;
using CryptoTensors.Gpu.Crypto;

namespace CryptoTensors.Gpu.Benchmarks;

/// <summary>In-cache AEAD throughput of one chunk (the decrypt ceiling per core).</summary>
[MemoryDiagnoser]
public class AeadBenchmarks
{
    private AeadCipher _cipher = null!;
    private byte[] _data = null!;
    private readonly byte[] _nonce = new byte[12];
    private readonly byte[] _tag = new byte[16];

    [Params(AeadAlgorithm.Aes256Gcm, AeadAlgorithm.Aes128Gcm, AeadAlgorithm.ChaCha20Poly1305)]
    public AeadAlgorithm Algorithm { get; set; }

    [Params(64 * 1024, 2 * 1024 * 1024)]
    public int ChunkBytes { get; set; }

    [GlobalSetup]
    public void Setup()
    {
        _cipher = new AeadCipher(Algorithm, new byte[Algorithm.KeySize()]);
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
