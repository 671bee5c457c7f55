using System.Diagnostics;
using CryptoTensors.Cli;
using CryptoTensors.Gpu.Format;
using CryptoTensors.Gpu.KillTest;
using CryptoTensors.Gpu.Keys;
using CryptoTensors.Gpu.Reading;
using CryptoTensors.Gpu.Writing;

namespace CryptoTensors.Gpu.Tests.Hardening;

/// <summary>
/// Atomic writes under failure (issue 18 item 4): a killed writer (SIGKILL, through the CLI), leftover temporaries, a
/// full disk (a 1 MiB tmpfs where mounting is allowed, and a stream that fails after N bytes through
/// <see cref="AtomicFile.TestStreamWrapper"/> everywhere).
/// </summary>
[NonParallelizable]
public class AtomicWriteTests
{
    /// <summary>
    /// 30 SIGKILLs at random points of <c>ctensors encrypt|decrypt|rewrap</c> (the full run, 240, is
    /// <c>dotnet run --project tests/CryptoTensors.Gpu.KillTest -c Release</c>): inputs byte-identical, every output absent or
    /// complete and valid, every temporary of a killed child removed by the next write.
    /// </summary>
    [Test]
    public void KilledWritersLeaveNoPartialOutputAndTheirTemporariesAreRemovedNextTime()
    {
        using var tmp = new TempDir();
        var log = new StringWriter();
        var report = KillHarness.Run(Path.Combine(AppContext.BaseDirectory, "ctensors.dll"), tmp.Path, runs: 30, seed: 7, log, tensorCount: 12, tensorBytes: 256 << 10);
        TestContext.Out.WriteLine(log.ToString());
        Assert.That(report.Failures, Is.Empty, log.ToString());
        Assert.That(report.Killed, Is.GreaterThan(0), "some children were killed before they finished");
        Assert.That(report.Absent + report.Complete, Is.EqualTo(report.Runs), "every output is absent or complete");
    }

    [Test]
    public void StaleTemporariesOfDeadWritersAreRemovedAtTheNextWriteAndNoOthers()
    {
        if (!OperatingSystem.IsLinux()) Assert.Ignore("process liveness is read from /proc (Linux)");
        using var tmp = new TempDir();
        var target = tmp.File("out.safetensors");
        int deadPid;
        using (var p = Process.Start(new ProcessStartInfo("true") { UseShellExecute = false })!)
        {
            p.WaitForExit();
            deadPid = p.Id;
        }
        Assert.That(AtomicFile.ProcessIsAlive(deadPid), Is.False, "the exited child's pid is free");
        var dead = tmp.File($".out.safetensors.ctensors-tmp-{deadPid}-0123456789ab");
        var live = tmp.File($".out.safetensors.ctensors-tmp-{Environment.ProcessId}-0123456789ab");
        var init = tmp.File(".out.safetensors.ctensors-tmp-1-0123456789ab");
        var otherTarget = tmp.File($".other.safetensors.ctensors-tmp-{deadPid}-0123456789ab");
        var unrelated = tmp.File($".out.safetensors.ctensors-tmp-notapid-0123456789ab");
        foreach (var f in new[] { dead, live, init, otherTarget, unrelated }) File.WriteAllText(f, "partial");

        CryptoTensorsWriter.Write(target, [TestModels.Tensor("x", Dtype.U8, [100], 1)], new WriterOptions());

        Assert.That(File.Exists(dead), Is.False, "a dead writer's temporary is removed");
        Assert.That(File.Exists(live), Is.True, "this process's own (a concurrent writer) is kept");
        Assert.That(File.Exists(init), Is.True, "a live process's is kept");
        Assert.That(File.Exists(otherTarget), Is.True, "another output's is not this write's business");
        Assert.That(File.Exists(unrelated), Is.True, "a name without a pid is left alone");
        using var r = CryptoTensorsReader.Open(target, new ReaderOptions { Keys = new() });
        Assert.That(r.ReadTensor("x"), Is.EqualTo(TestModels.Bytes(100, 1)));
        Assert.That(Directory.EnumerateFiles(tmp.Path, ".out.safetensors.ctensors-tmp-*").Count(), Is.EqualTo(3));
    }

    [Test]
    public void TemporariesAreNamedForTheirTargetAndWriter()
    {
        var name = Path.GetFileName(AtomicFile.TempPathFor("/x/model.ct", 4242));
        Assert.That(name, Does.Match(@"^\.model\.ct\.ctensors-tmp-4242-[0-9a-f]{12}$"));
    }

    /// <summary>A stream that fails like a full disk once <paramref name="limit"/> bytes were written.</summary>
    private sealed class FullDisk(Stream inner, long limit) : Stream
    {
        private long _written;
        public override bool CanRead => inner.CanRead;
        public override bool CanSeek => inner.CanSeek;
        public override bool CanWrite => true;
        public override long Length => inner.Length;
        public override long Position { get => inner.Position; set => inner.Position = value; }
        public override void Flush() => inner.Flush();
        public override int Read(byte[] buffer, int offset, int count) => inner.Read(buffer, offset, count);
        public override long Seek(long offset, SeekOrigin origin) => inner.Seek(offset, origin);
        public override void SetLength(long value) => inner.SetLength(value);
        public override void Write(byte[] buffer, int offset, int count) => Write(buffer.AsSpan(offset, count));

        public override void Write(ReadOnlySpan<byte> buffer)
        {
            var room = (int)Math.Max(0, Math.Min(buffer.Length, limit - _written));
            inner.Write(buffer[..room]);
            _written += room;
            if (room < buffer.Length) throw new IOException("No space left on device");
        }

        protected override void Dispose(bool disposing)
        {
            if (disposing) inner.Dispose();
            base.Dispose(disposing);
        }
    }

    private static void AssertFullDiskOutcome(TempDir tmp, string target, Action write, byte[]? previous)
    {
        var ex = Assert.Throws<OutputWriteException>(() => write());
        Assert.That(ex!.Message, Does.Contain(Path.GetFullPath(target)), "the error names the output");
        Assert.That(ex.Message, Does.Contain("No space left on device"));
        Assert.That(ex.InnerException, Is.InstanceOf<IOException>());
        if (previous is null) Assert.That(File.Exists(target), Is.False, "nothing half-written");
        else Assert.That(File.ReadAllBytes(target), Is.EqualTo(previous), "the previous output is untouched");
        Assert.That(Directory.EnumerateFiles(tmp.Path, "*.ctensors-tmp-*"), Is.Empty, "the temporary is removed");
    }

    [TestCase(0L)]
    [TestCase(100L)]
    [TestCase(300_000L)]
    public void AFullDiskIsOneErrorNamingTheOutputAndNothingHalfWritten(long limit)
    {
        using var tmp = new TempDir();
        using var master = MasterKey.Generate();
        using var signer = SigningKey.Generate();
        var tensors = Enumerable.Range(0, 4).Select(i => TestModels.Tensor($"w{i}", Dtype.U8, [200_000], i)).ToList();
        var input = tmp.File("in.ct");
        CryptoTensorsWriter.Write(input, tensors, new WriterOptions { MasterKey = master, SigningKey = signer });
        var previous = File.ReadAllBytes(input);
        var target = tmp.File("out.ct");
        File.WriteAllBytes(target, [1, 2, 3]);
        AtomicFile.TestStreamWrapper.Value = s => new FullDisk(s, limit);
        try
        {
            AssertFullDiskOutcome(tmp, target, () => CryptoTensorsWriter.Write(target, tensors, new WriterOptions { MasterKey = master, SigningKey = signer }), [1, 2, 3]);
            using var newMaster = MasterKey.Generate();
            using var newSigner = SigningKey.Generate();
            AssertFullDiskOutcome(tmp, target, () => Rewrapper.Rewrap(input, target, TestModels.Keys(master, signer), newMaster, newSigner), [1, 2, 3]);
            AssertFullDiskOutcome(tmp, tmp.File("fresh.ct"), () => CryptoTensorsWriter.Write(tmp.File("fresh.ct"), tensors, new WriterOptions()), null);
        }
        finally
        {
            AtomicFile.TestStreamWrapper.Value = null;
        }
        Assert.That(File.ReadAllBytes(input), Is.EqualTo(previous), "the input is untouched");
    }

    /// <summary>
    /// A real full disk: a 1 MiB tmpfs (mounting needs root; skipped saying why where it fails), written by the library
    /// and by <c>ctensors encrypt</c> (exit 1, one line naming the output).
    /// </summary>
    [Test]
    public void ARealFullDiskOnATmpfs()
    {
        if (!OperatingSystem.IsLinux()) Assert.Ignore("tmpfs is Linux");
        using var tmp = new TempDir();
        var mnt = tmp.File("small");
        Directory.CreateDirectory(mnt);
        var (code, err) = Exec("mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", mnt);
        if (code != 0) Assert.Ignore($"cannot mount a 1 MiB tmpfs here (needs root): {err.Trim()}");
        try
        {
            using var master = MasterKey.Generate();
            using var signer = SigningKey.Generate();
            var tensors = Enumerable.Range(0, 4).Select(i => TestModels.Tensor($"w{i}", Dtype.U8, [512 << 10], i)).ToList();
            var target = Path.Combine(mnt, "model.ct");
            var ex = Assert.Throws<OutputWriteException>(() => CryptoTensorsWriter.Write(target, tensors, new WriterOptions { MasterKey = master, SigningKey = signer }));
            Assert.That(ex!.Message, Does.Contain(target));
            Assert.That(Directory.EnumerateFileSystemEntries(mnt), Is.Empty, "nothing half-written, no temporary left");

            var plain = tmp.File("plain.safetensors");
            CryptoTensorsWriter.Write(plain, tensors, new WriterOptions());
            Assert.That(CliTestsHelpers.Run("keygen", "--out-dir", tmp.File("keys")).Code, Is.Zero);
            var (cliCode, _, cliErr) = CliTestsHelpers.Run("encrypt", plain, "-o", target, "--key", tmp.File("keys/enc.jwk"), "--sign-key", tmp.File("keys/sign.jwk"));
            Assert.That(cliCode, Is.EqualTo(1), cliErr);
            Assert.That(cliErr.Trim().Split('\n'), Has.Length.EqualTo(1), "one line");
            Assert.That(cliErr, Does.Contain(target).And.Contain("No space left on device"));
            Assert.That(Directory.EnumerateFileSystemEntries(mnt), Is.Empty);
        }
        finally
        {
            Exec("umount", mnt);
        }
    }

    private static (int Code, string Err) Exec(string file, params string[] args)
    {
        try
        {
            var psi = new ProcessStartInfo(file) { RedirectStandardError = true, RedirectStandardOutput = true, UseShellExecute = false };
            foreach (var a in args) psi.ArgumentList.Add(a);
            using var p = Process.Start(psi)!;
            var err = p.StandardError.ReadToEnd();
            p.StandardOutput.ReadToEnd();
            p.WaitForExit();
            return (p.ExitCode, err);
        }
        catch (System.ComponentModel.Win32Exception e)
        {
            return (-1, e.Message);
        }
    }
}

/// <summary>The CLI in process (as CliTests does).</summary>
internal static class CliTestsHelpers
{
    public static (int Code, string Out, string Err) Run(params string[] args)
    {
        var o = new StringWriter();
        var e = new StringWriter();
        var code = CliApp.Run(args, o, e);
        return (code, o.ToString(), e.ToString());
    }
}
