using System.Security.Cryptography;
using System.Text.Json;
using CryptoTensors.Gpu.Crypto;
using CryptoTensors.Gpu.Format;
using CryptoTensors.Gpu.Keys;
using CryptoTensors.Gpu.Writing;

namespace CryptoTensors.Gpu.Tests.Writing;

/// <summary>kat/kat.json: with every random value fixed, the writer must emit the expected bytes exactly.</summary>
public class KnownAnswerTests
{
    internal sealed class FixedRandom(JsonElement fixedRandom) : IRandomSource
    {
        public List<RandomPurpose> Draws { get; } = [];

        public void Fill(Span<byte> destination, RandomPurpose purpose, string tensor)
        {
            Draws.Add(purpose);
            var key = purpose switch
            {
                RandomPurpose.DataKey => "dek_hex",
                RandomPurpose.KeyWrapNonce => "key_iv_hex",
                RandomPurpose.DataNonce => "v1_iv_hex",
                RandomPurpose.BaseNonce => "v2_base_iv_hex",
                _ => throw new ArgumentOutOfRangeException(nameof(purpose)),
            };
            Convert.FromHexString(fixedRandom.GetProperty(key).GetString()!).CopyTo(destination);
        }
    }

    [TestCase("v1", 1)]
    [TestCase("v2", 2)]
    public void WriterReproducesTheKatByteForByte(string which, int version)
    {
        var dir = Path.Combine(TestPaths.VectorsDir, "kat");
        using var kat = JsonDocument.Parse(File.ReadAllText(Path.Combine(dir, "kat.json")));
        var inputs = kat.RootElement.GetProperty("inputs");
        var expected = kat.RootElement.GetProperty(which);
        using var master = Jwk.LoadMasterKey(Path.Combine(dir, inputs.GetProperty("master_key_jwk").GetString()!));
        using var signer = Jwk.LoadSigningKey(Path.Combine(dir, inputs.GetProperty("signing_key_jwk").GetString()!));
        var tensors = new List<TensorSource>();
        var encrypt = new List<string>();
        foreach (var t in inputs.GetProperty("tensors").EnumerateArray())
        {
            Assert.That(Dtypes.TryParse(t.GetProperty("dtype").GetString(), out var dtype), Is.True);
            var name = t.GetProperty("name").GetString()!;
            tensors.Add(TensorSource.FromMemory(name, dtype, t.GetProperty("shape").EnumerateArray().Select(x => x.GetUInt64()).ToArray(),
                Convert.FromHexString(t.GetProperty("data_hex").GetString()!)));
            if (t.GetProperty("encrypted").GetBoolean()) encrypt.Add(name);
        }
        var policy = inputs.GetProperty("policy");
        var random = new FixedRandom(inputs.GetProperty("fixed_random"));
        using var tmp = new TempDir();
        var output = tmp.File(which + ".cryptotensors");
        CryptoTensorsWriter.Write(output, tensors, new WriterOptions
        {
            MasterKey = master,
            SigningKey = signer,
            FormatVersion = version,
            ChunkSize = inputs.GetProperty("v2_chunk_size").GetInt64(),
            EncryptOnly = encrypt,
            Policy = new AccessPolicy(policy.GetProperty("local").GetString()!, policy.GetProperty("remote").GetString()!),
            Metadata = inputs.GetProperty("user_metadata").EnumerateObject().ToDictionary(p => p.Name, p => p.Value.GetString()!),
            Random = random,
        });

        var bytes = File.ReadAllBytes(output);
        var want = File.ReadAllBytes(Path.Combine(dir, expected.GetProperty("file").GetString()!));
        Assert.That(Convert.ToHexStringLower(SHA256.HashData(want)), Is.EqualTo(expected.GetProperty("file_sha256").GetString()), "the KAT file itself");
        if (!bytes.AsSpan().SequenceEqual(want))
        {
            var headerLen = (int)BitConverter.ToUInt64(bytes, 0);
            Assert.That(System.Text.Encoding.UTF8.GetString(bytes, 8, Math.Min(headerLen, bytes.Length - 8)),
                Is.EqualTo(System.Text.Encoding.UTF8.GetString(want, 8, (int)BitConverter.ToUInt64(want, 0))));
            Assert.That(bytes, Is.EqualTo(want));
        }
        Assert.That(Directory.GetFiles(tmp.Path), Has.Length.EqualTo(1), "no temporary file left beside the output");
        Assert.That(random.Draws, Is.EqualTo(version == 1
            ? new[] { RandomPurpose.DataKey, RandomPurpose.DataNonce, RandomPurpose.KeyWrapNonce }
            : new[] { RandomPurpose.DataKey, RandomPurpose.BaseNonce, RandomPurpose.KeyWrapNonce }));
    }

    [Test]
    public void SignedMessageOfTheKatIsTheCanonicalReserialization()
    {
        var dir = Path.Combine(TestPaths.VectorsDir, "kat");
        using var kat = JsonDocument.Parse(File.ReadAllText(Path.Combine(dir, "kat.json")));
        foreach (var which in new[] { "v1", "v2" })
        {
            var expected = kat.RootElement.GetProperty(which);
            var bytes = File.ReadAllBytes(Path.Combine(dir, expected.GetProperty("file").GetString()!));
            var n = (long)BitConverter.ToUInt64(bytes, 0);
            var header = SafetensorsHeader.Parse(bytes.AsSpan(8, (int)n), bytes.Length);
            var message = System.Text.Encoding.UTF8.GetString(CryptoTensors.Gpu.Reading.CryptoTensorsReader.SignedMessage(header));
            Assert.That(message, Is.EqualTo(expected.GetProperty("signed_message").GetString()), which);
            Assert.That(header.Metadata![ReservedFields.Signature], Is.EqualTo(expected.GetProperty("signature_b64").GetString()), which);
        }
    }
}
