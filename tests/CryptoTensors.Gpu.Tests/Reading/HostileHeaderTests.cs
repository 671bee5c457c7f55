using CryptoTensors.Gpu.Crypto;
using CryptoTensors.Gpu.Format;
using CryptoTensors.Gpu.Keys;
using CryptoTensors.Gpu.Policy;
using CryptoTensors.Gpu.Reading;
using CryptoTensors.Gpu.Tests.Cli;
using CryptoTensors.Gpu.Writing;
using static CryptoTensors.Gpu.Tests.Reading.StreamReaderTests;

namespace CryptoTensors.Gpu.Tests.Reading;

/// <summary>
/// Regression tests of what an outside black-box probe found with signed hostile files (issue 18): sizes claimed by a
/// header never size a buffer before the bytes arrive, both readers classify a file the same way, and a policy whose
/// pattern a .NET component refuses is a policy error, never a crash.
/// </summary>
[NonParallelizable]
public class HostileHeaderTests
{
    /// <summary>The managed bytes allocated by <paramref name="action"/> on any thread (ArrayPool rents included).</summary>
    private static async Task<long> Allocated(Func<Task> action)
    {
        var before = GC.GetTotalAllocatedBytes(precise: true);
        await action();
        return GC.GetTotalAllocatedBytes(precise: true) - before;
    }

    [TestCase(2_147_483_647L)]
    [TestCase(2_147_483_592L)]
    [TestCase(2_147_483_591L)]
    [TestCase(1L << 30)]
    public async Task AHugeSignedChunkSizeCostsOnlyTheBytesThatArrive(long chunkSize)
    {
        using var tmp = new TempDir();
        using var m = MasterKey.Generate();
        using var s = SigningKey.Generate();
        var path = tmp.File("m");
        CryptoTensorsWriter.Write(path, TestModels.EveryDtype(), new WriterOptions { MasterKey = m, SigningKey = s });
        // Every tensor is one chunk under either chunk size, so the re-signed file is valid: it must load, cheaply.
        TestModels.MutateAndResign(path, s, meta =>
            meta[ReservedFields.CryptoKeys] = (CryptoKeysField.Parse(meta[ReservedFields.CryptoKeys]) with { ChunkSize = chunkSize }).Serialize());
        var bytes = File.ReadAllBytes(path);
        Dictionary<string, string>? got = null;
        var allocated = await Allocated(async () =>
        {
            using var r = await CryptoTensorsStreamReader.OpenAsync(new TrickleStream(bytes, 4096), "m", TestModels.Keys(m, s));
            got = await HashAll(r);
        });
        Assert.That(allocated, Is.LessThan(64L << 20), $"a {bytes.Length}-byte stream allocated {allocated:N0} bytes");
        using var reader = CryptoTensorsReader.Open(path, TestModels.Keys(m, s));
        Assert.That(got!.Keys, Is.EquivalentTo(reader.Tensors.Select(t => t.Name)), "the path reader and the stream reader agree");
    }

    [TestCase(1_610_612_736L)] // 1.5 GiB
    [TestCase(2_147_483_648L)] // 2 GiB
    [TestCase(3_221_225_472L)] // 3 GiB: beyond one .NET array
    public async Task AV1TensorClaimingGigabytesOnAShortStreamIsMalformedInBothReadersAndCheap(long claimed)
    {
        using var tmp = new TempDir();
        using var m = MasterKey.Generate();
        using var s = SigningKey.Generate();
        var path = tmp.File("m");
        CryptoTensorsWriter.Write(path, [TestModels.Tensor("w", Dtype.U8, [3000])], new WriterOptions { MasterKey = m, SigningKey = s, FormatVersion = 1 });
        TestModels.MutateAndResign(path, s, _ => { }, tensors => [new HeaderTensor("w", Dtype.U8, [(ulong)claimed], 0, (ulong)claimed)]);
        var bytes = File.ReadAllBytes(path);

        var pathError = Assert.Throws(Is.InstanceOf<CryptoTensorsException>(), () => CryptoTensorsReader.Open(path, TestModels.Keys(m, s)).Dispose());
        Exception? streamError = null;
        var allocated = await Allocated(async () =>
        {
            try
            {
                using var r = await CryptoTensorsStreamReader.OpenAsync(new TrickleStream(bytes, 4096), "m", TestModels.Keys(m, s));
                await HashAll(r);
            }
            catch (Exception e)
            {
                streamError = e;
            }
        });
        Assert.That(streamError, Is.InstanceOf<MalformedFileException>(), streamError?.ToString());
        Assert.That(((CryptoTensorsException)pathError!).Kind, Is.EqualTo(ErrorKind.Malformed), "both readers call the file malformed");
        // Below 2 GiB the stream simply ends early; from 2 GiB on, the claim is refused before a byte is buffered.
        Assert.That(((CryptoTensorsException)streamError!).Code, Is.EqualTo(claimed > int.MaxValue ? ErrorCode.TensorTooLarge : ErrorCode.IncompleteBuffer));
        Assert.That(allocated, Is.LessThan(64L << 20), $"a {bytes.Length}-byte stream allocated {allocated:N0} bytes");

        // The CLI: `verify -` and `verify FILE` give the same exit code (2) and one line.
        using var stdin = new MemoryStream(bytes);
        var err = new StringWriter();
        Assert.That(CryptoTensors.Cli.CliApp.Run(["verify", "-", "--key", WriteKey(tmp, m), "--verify-key", WritePub(tmp, s)], new StringWriter(), err, stdin), Is.EqualTo(2), err.ToString());
        var file = CliTests.Ctensors("verify", path, "--key", WriteKey(tmp, m), "--verify-key", WritePub(tmp, s));
        Assert.That(file.Code, Is.EqualTo(2), file.Err);
    }

    private static string WriteKey(TempDir tmp, MasterKey m)
    {
        File.WriteAllText(tmp.File("enc.jwk"), Jwk.Write(m));
        return tmp.File("enc.jwk");
    }

    private static string WritePub(TempDir tmp, SigningKey s)
    {
        File.WriteAllText(tmp.File("sign.pub.jwk"), Jwk.Write(s.Public));
        return tmp.File("sign.pub.jwk");
    }

    public static IEnumerable<TestCaseData> HugePatterns()
    {
        yield return new TestCaseData(new string('?', 2000)).SetName("Glob2000QuestionMarks");
        yield return new TestCaseData(string.Concat(Enumerable.Repeat("[a-z]", 3000))).SetName("Glob3000Classes");
        yield return new TestCaseData(new string('a', 10_001)).SetName("Glob10001CharacterLiteral");
    }

    [TestCaseSource(nameof(HugePatterns))]
    public void AConstantGlobTooComplexForTheMatcherIsAPolicyErrorNotACrash(string pattern)
    {
        var rego = $"package model\nimport rego.v1\ndefault allow := false\nallow if glob.match(\"{pattern}\", [], input.context.name)\n";
        var ex = Assert.Throws<PolicyDeniedException>(() => PolicyEngine.Compile(rego));
        Assert.That(ex!.Code, Is.EqualTo(ErrorCode.PolicyUnsupported));
        Assert.That(ex.Message, Does.Contain("glob.match").And.Length.LessThan(1000), "the message names the built-in and does not quote the whole pattern");

        using var tmp = new TempDir();
        File.WriteAllText(tmp.File("p.rego"), rego);
        var r = CliTests.Ctensors("policy", "eval", "--policy", tmp.File("p.rego"));
        Assert.That(r.Code, Is.EqualTo(2), r.Err);

        // A signed file carrying that policy: refused at open as a policy error (exit 6), never an abort.
        using var m = MasterKey.Generate();
        using var s = SigningKey.Generate();
        var path = tmp.File("m.ct");
        CryptoTensorsWriter.Write(path, TestModels.EveryDtype(), new WriterOptions { MasterKey = m, SigningKey = s });
        TestModels.MutateAndResign(path, s, meta => meta[ReservedFields.Policy] = new AccessPolicy(rego, AccessPolicy.DefaultText).Serialize());
        var open = Assert.Throws<PolicyDeniedException>(() => CryptoTensorsReader.Open(path, TestModels.Keys(m, s)).Dispose());
        Assert.That(open!.Code, Is.EqualTo(ErrorCode.PolicyUnsupported));
        var v = CliTests.Ctensors("verify", path, "--key", WriteKey(tmp, m), "--verify-key", WritePub(tmp, s));
        Assert.That(v.Code, Is.EqualTo(6), v.Err);
    }

    [Test]
    public void PolicyEvalOfAnInputNestedTooDeeplyNamesTheLimit()
    {
        using var tmp = new TempDir();
        File.WriteAllText(tmp.File("p.rego"), "package model\nimport rego.v1\ndefault allow := true\n");
        File.WriteAllText(tmp.File("deep.json"), new string('[', 100) + new string(']', 100));
        var r = CliTests.Ctensors("policy", "eval", "--policy", tmp.File("p.rego"), "--input", tmp.File("deep.json"));
        Assert.That(r.Code, Is.EqualTo(2), r.Err);
        Assert.That(r.Err, Does.Contain("nests deeper than 64 levels").And.Not.Contain("is not JSON"));
        File.WriteAllText(tmp.File("ok.json"), new string('[', 30) + new string(']', 30));
        Assert.That(CliTests.Ctensors("policy", "eval", "--policy", tmp.File("p.rego"), "--input", tmp.File("ok.json")).Code, Is.Zero);
    }

    [Test]
    public void TheWriterRefusesAChunkSizeAboveItsDocumentedBound()
    {
        using var tmp = new TempDir();
        using var m = MasterKey.Generate();
        using var s = SigningKey.Generate();
        var ex = Assert.Throws<CryptoHeaderException>(() => CryptoTensorsWriter.Write(tmp.File("o"), TestModels.EveryDtype(),
            new WriterOptions { MasterKey = m, SigningKey = s, ChunkSize = WriterOptions.MaxChunkSize + 1 }));
        Assert.That(ex!.Code, Is.EqualTo(ErrorCode.InvalidChunkSize));
        Assert.That(File.Exists(tmp.File("o")), Is.False);
        CryptoTensorsWriter.Write(tmp.File("o"), TestModels.EveryDtype(), new WriterOptions { MasterKey = m, SigningKey = s, ChunkSize = WriterOptions.MaxChunkSize });
        using var r = CryptoTensorsReader.Open(tmp.File("o"), TestModels.Keys(m, s));
        Assert.That(r.CryptoKeys!.ChunkSize, Is.EqualTo(WriterOptions.MaxChunkSize));
    }
}
