using System.Text;
using CryptoTensors.Gpu.Crypto;
using CryptoTensors.Gpu.Format;
using CryptoTensors.Gpu.Keys;
using CryptoTensors.Gpu.Reading;
using CryptoTensors.Gpu.Writing;

namespace CryptoTensors.Gpu.Tests;

/// <summary>Builders for test tensors and files.</summary>
internal static class TestModels
{
    public static byte[] Bytes(int n, int seed)
    {
        var b = new byte[n];
        new Random(seed).NextBytes(b);
        return b;
    }

    public static TensorSource Tensor(string name, Dtype dtype, ulong[] shape, int seed = 1)
    {
        dtype.TryByteSize(shape, out var n);
        return TensorSource.FromMemory(name, dtype, shape, Bytes((int)n, seed));
    }

    /// <summary>One tensor of every dtype (shapes chosen so sub-byte dtypes fill whole bytes), plus a scalar and an empty one.</summary>
    public static List<TensorSource> EveryDtype()
    {
        var list = new List<TensorSource>();
        var seed = 0;
        foreach (var d in Dtypes.All)
        {
            var shape = d switch { Dtype.F4 => new ulong[] { 3, 6 }, Dtype.F6_E2M3 or Dtype.F6_E3M2 => new ulong[] { 4, 5 }, _ => new ulong[] { 3, 5 } };
            list.Add(Tensor("t." + d.Name().ToLowerInvariant(), d, shape, ++seed));
        }
        list.Add(Tensor("scalar", Dtype.F64, [], 99));
        list.Add(Tensor("empty", Dtype.F32, [0, 4], 100));
        return list;
    }

    public static Dictionary<string, byte[]> ReadAll(CryptoTensorsReader r) => r.Tensors.ToDictionary(t => t.Name, t => r.ReadTensor(t.Name));

    public static Dictionary<string, byte[]> Plain(IEnumerable<TensorSource> sources)
        => sources.ToDictionary(s => s.Name, s => { var b = new byte[s.ByteLength]; s.Read(0, b); return b; });

    public static ReaderOptions Keys(MasterKey master, SigningKey signer) => new() { MasterKey = master, VerificationKey = signer.Public, Keys = new KeyRegistry() };

    /// <summary>Rewrites a file's metadata through <paramref name="mutate"/> and re-signs it (a "tampered, re-signed" file).</summary>
    public static void MutateAndResign(string path, SigningKey signer, Action<Dictionary<string, string>> mutate)
        => MutateAndResign(path, signer, mutate, tensors => tensors);

    /// <summary>Like <see cref="MutateAndResign(string, SigningKey, Action{Dictionary{string, string}})"/>, also rewriting the tensor table (the data section is kept as it is).</summary>
    public static void MutateAndResign(string path, SigningKey signer, Action<Dictionary<string, string>> mutate, Func<List<HeaderTensor>, List<HeaderTensor>> tensorTable)
    {
        var bytes = File.ReadAllBytes(path);
        var n = (int)BitConverter.ToUInt64(bytes, 0);
        var header = SafetensorsHeader.Parse(bytes.AsSpan(8, n), bytes.Length);
        var meta = header.Metadata!.ToDictionary(kv => kv.Key, kv => kv.Value, StringComparer.Ordinal);
        meta.Remove(ReservedFields.Signature);
        mutate(meta);
        var tensors = tensorTable(header.Tensors.Select(t => new HeaderTensor(t.Name, t.Dtype, t.Shape, t.Begin, t.End)).ToList());
        meta[ReservedFields.Signature] = CryptoPlan.Sign(meta, tensors, signer);
        var newHeader = HeaderSerializer.Pad(HeaderSerializer.Serialize(meta, tensors));
        using var o = File.Create(path);
        o.Write(BitConverter.GetBytes((ulong)newHeader.Length));
        o.Write(newHeader);
        o.Write(bytes.AsSpan(8 + n));
    }

    public static string Utf8(byte[] b) => Encoding.UTF8.GetString(b);
}
