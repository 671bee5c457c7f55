using System.Diagnostics;
using System.Globalization;
using System.Text;

namespace CryptoTensors.Gpu.Fuzz;

/// <summary>
/// The CryptoTensors fuzzer (issue 18): mutates the test vectors, the seed corpus and files it writes itself, and hostile
/// Rego policies and inputs, and runs every case in-process through the path reader (open, read every tensor, ranges),
/// the streaming reader and the policy engine under a watchdog.
/// </summary>
/// <remarks>
/// <code>
/// dotnet run -c Release --project tests/CryptoTensors.Gpu.Fuzz -- --cases 100000 --seed 1 [--corpus DIR] [--time-limit S]
///     [--vectors DIR] [--findings DIR] [--no-big] [--replay CASE_SEED] [--write-corpus DIR] [--quiet] [--big-only]
/// </code>
/// Every outcome must be a success (with the right bytes where the plaintext is known) or a
/// <see cref="CryptoTensorsException"/>; anything else, a hang over 10 s or memory over 4 × the input + 64 MiB is a
/// finding, printed with the case's seed and saved (input and report) under the findings folder (default
/// <c>fuzz-findings/</c>). Exit code: 0 without findings, 1 with findings, 2 for bad options, 3 after a hang.
/// <c>--replay CASE_SEED</c> re-runs one case (the seed a finding prints).
/// </remarks>
public static class Program
{
    public static int Main(string[] args)
    {
        FuzzOptions o;
        try
        {
            o = FuzzOptions.Parse(args);
        }
        catch (ArgumentException e)
        {
            Console.Error.WriteLine(e.Message);
            Console.Error.WriteLine("usage: --cases N --seed S [--corpus DIR] [--vectors DIR] [--findings DIR] [--time-limit S] [--no-big] [--big-only] [--replay CASE_SEED] [--write-corpus DIR] [--quiet]");
            return 2;
        }
        if (o.WriteCorpus is { } dir)
        {
            CorpusWriter.Write(dir);
            Console.WriteLine($"wrote the seed corpus files to {dir}");
            return 0;
        }
        var fuzzer = new Fuzzer(o);
        return fuzzer.Run();
    }
}

internal sealed class FuzzOptions
{
    public long Cases { get; private set; } = 100_000;
    public long Seed { get; private set; } = 1;
    public string Corpus { get; private set; } = "";
    public string Vectors { get; private set; } = "";
    public string Findings { get; private set; } = "fuzz-findings";
    public double? TimeLimit { get; private set; }
    public bool Big { get; private set; } = true;
    public long? Replay { get; private set; }
    public string? WriteCorpus { get; private set; }
    public bool Quiet { get; private set; }
    public bool BigOnly { get; private set; }

    public static FuzzOptions Parse(string[] args)
    {
        var o = new FuzzOptions();
        for (var i = 0; i < args.Length; i++)
        {
            string Next() => i + 1 < args.Length ? args[++i] : throw new ArgumentException($"{args[i]} needs a value");
            switch (args[i])
            {
                case "--cases": o.Cases = long.Parse(Next(), CultureInfo.InvariantCulture); break;
                case "--seed": o.Seed = long.Parse(Next(), CultureInfo.InvariantCulture); break;
                case "--corpus": o.Corpus = Next(); break;
                case "--vectors": o.Vectors = Next(); break;
                case "--findings": o.Findings = Next(); break;
                case "--time-limit": o.TimeLimit = double.Parse(Next(), CultureInfo.InvariantCulture); break;
                case "--no-big": o.Big = false; break;
                case "--replay": o.Replay = long.Parse(Next(), CultureInfo.InvariantCulture); break;
                case "--write-corpus": o.WriteCorpus = Next(); break;
                case "--quiet": o.Quiet = true; break;
                case "--big-only": o.BigOnly = true; break;
                default: throw new ArgumentException($"unknown option {args[i]}");
            }
        }
        var root = RepoRoot();
        if (o.Corpus.Length == 0) o.Corpus = Path.Combine(root, "tests", "CryptoTensors.Gpu.Fuzz", "corpus");
        if (o.Vectors.Length == 0) o.Vectors = Path.Combine(root, "tests", "vectors");
        return o;
    }

    private static string RepoRoot()
    {
        for (var d = new DirectoryInfo(AppContext.BaseDirectory); d is not null; d = d.Parent)
            if (File.Exists(Path.Combine(d.FullName, "CryptoTensors.Gpu.sln"))) return d.FullName;
        for (var d = new DirectoryInfo(Environment.CurrentDirectory); d is not null; d = d.Parent)
            if (File.Exists(Path.Combine(d.FullName, "CryptoTensors.Gpu.sln"))) return d.FullName;
        return Environment.CurrentDirectory;
    }
}

/// <summary>One generated case: what to run, on which bytes, and how to judge a success.</summary>
internal sealed class FuzzCase
{
    public required string Kind { get; init; }
    public required string Description { get; set; }
    public byte[] File { get; set; } = [];
    public Seed? Base { get; init; }
    /// <summary>Re-signed with the fuzz signing key (verify with its public key).</summary>
    public bool Resigned { get; set; }
    /// <summary>The tensor table and the per-tensor crypto entries mean what the base's did.</summary>
    public bool PreservesTable { get; set; } = true;
    /// <summary>Bytes of the data section were changed.</summary>
    public bool TouchedData { get; set; }
    public string PolicySource { get; set; } = "";
    public string PolicyInput { get; set; } = "";
    public long InputBytes => Kind == "policy" ? Encoding.UTF8.GetByteCount(PolicySource) + Encoding.UTF8.GetByteCount(PolicyInput) : File.Length;
}

internal sealed class Finding(string what, string detail) : Exception(what + ": " + detail)
{
    public string What { get; } = what;
    public string Detail { get; } = detail;
}

internal sealed class Fuzzer(FuzzOptions options)
{
    /// <summary>A case running longer than this is a hang.</summary>
    private static readonly TimeSpan HangLimit = TimeSpan.FromSeconds(10);

    private readonly Dictionary<string, int> _outcomes = new(StringComparer.Ordinal);
    private long _findings;
    private long _currentStart; // Stopwatch ticks, 0 when idle
    private readonly MemoryWatch _memory = new();
    private FuzzCase? _current;
    private long _currentSeed;

    public int Run()
    {
        Directory.CreateDirectory(options.Findings);
        var sw = Stopwatch.StartNew();
        var corpus = Corpus.Load(options.Corpus, options.Vectors, options.Big);
        Console.WriteLine($"corpus: {corpus.Seeds.Count} files ({string.Join(", ", corpus.Seeds.Select(s => s.Name).Take(8))}, ...), {corpus.Policies.Count} policies, {corpus.Inputs.Count} inputs; loaded in {sw.Elapsed.TotalSeconds:F1} s");
        var exec = new Executor(corpus, _memory);
        var gen = new Generator(corpus, options.BigOnly);
        var watchdog = new Thread(Watch) { IsBackground = true, Name = "fuzz-watchdog" };
        watchdog.Start();

        sw.Restart();
        long ran = 0;
        var lastReport = 0.0;
        var seeds = options.Replay is { } one ? [one] : Enumerable.Range(0, int.MaxValue).Select(i => CaseSeed(options.Seed, i));
        foreach (var caseSeed in seeds)
        {
            if (options.Replay is null && ran >= options.Cases) break;
            if (options.TimeLimit is { } limit && sw.Elapsed.TotalSeconds >= limit) break;
            var c = gen.Make(caseSeed);
            RunOne(exec, c, caseSeed);
            ran++;
            if (!options.Quiet && sw.Elapsed.TotalSeconds - lastReport >= 10)
            {
                lastReport = sw.Elapsed.TotalSeconds;
                Console.WriteLine($"  {ran:N0} cases, {sw.Elapsed.TotalSeconds:F0} s, {_findings} findings");
            }
        }
        Interlocked.Exchange(ref _currentStart, 0);
        Console.WriteLine($"ran {ran:N0} cases in {sw.Elapsed.TotalSeconds:F1} s (seed {options.Seed}); findings: {_findings}");
        foreach (var (k, v) in _outcomes.OrderByDescending(kv => kv.Value).Take(40)) Console.WriteLine($"  {v,8:N0}  {k}");
        File.WriteAllText(Path.Combine(options.Findings, "summary.txt"),
            $"cases {ran}\nseed {options.Seed}\nseconds {sw.Elapsed.TotalSeconds:F1}\nfindings {_findings}\n");
        return _findings == 0 ? 0 : 1;
    }

    /// <summary>The seed of case <paramref name="index"/> of a run (splitmix64, so any case replays alone).</summary>
    internal static long CaseSeed(long runSeed, long index)
    {
        var z = unchecked((ulong)runSeed * 0x9E3779B97F4A7C15UL + (ulong)index + 1);
        z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9UL;
        z = (z ^ (z >> 27)) * 0x94D049BB133111EBUL;
        return (long)((z ^ (z >> 31)) & long.MaxValue);
    }

    private void RunOne(Executor exec, FuzzCase c, long caseSeed)
    {
        File.WriteAllText(Path.Combine(options.Findings, "last-case.txt"), caseSeed.ToString(CultureInfo.InvariantCulture) + " " + c.Kind + "\n");
        _current = c;
        _currentSeed = caseSeed;
        var budget = 4 * c.InputBytes + (64L << 20);
        Interlocked.Exchange(ref _currentStart, Stopwatch.GetTimestamp());
        try
        {
            Count(exec.Run(c, budget));
        }
        catch (Finding f)
        {
            Report(c, caseSeed, f.What, f.Detail);
        }
        catch (Exception e)
        {
            Report(c, caseSeed, "harness", e.ToString());
        }
        finally
        {
            Interlocked.Exchange(ref _currentStart, 0);
        }
    }

    private void Count(string outcome)
    {
        _outcomes.TryGetValue(outcome, out var n);
        _outcomes[outcome] = n + 1;
    }

    private void Report(FuzzCase c, long caseSeed, string what, string detail)
    {
        _findings++;
        Count("FINDING " + what);
        var name = $"{caseSeed}-{what}";
        var dir = options.Findings;
        var text = $"finding: {what}\ncase seed: {caseSeed} (replay: --replay {caseSeed})\nkind: {c.Kind}\ncase: {c.Description}\nbase: {c.Base?.Name}\n\n{detail}\n";
        File.WriteAllText(Path.Combine(dir, name + ".txt"), text);
        if (c.Kind == "policy")
        {
            File.WriteAllText(Path.Combine(dir, name + ".rego"), c.PolicySource);
            File.WriteAllText(Path.Combine(dir, name + ".input.json"), c.PolicyInput);
        }
        else File.WriteAllBytes(Path.Combine(dir, name + ".safetensors"), c.File);
        var firstLines = string.Join('\n', detail.Split('\n').Take(6));
        Console.WriteLine($"FINDING {what} (case seed {caseSeed}, {c.Kind}: {c.Description})\n{firstLines}");
    }

    /// <summary>The watchdog: samples the resident set every 10 ms (into <see cref="MemoryWatch"/>) and ends the run on a hang (the case is saved first).</summary>
    private void Watch()
    {
        using var self = Process.GetCurrentProcess();
        while (true)
        {
            Thread.Sleep(10);
            var start = Interlocked.Read(ref _currentStart);
            if (start == 0) continue;
            self.Refresh();
            _memory.Sample(self.WorkingSet64);
            if (Stopwatch.GetElapsedTime(start) > HangLimit && _current is { } c)
            {
                Report(c, _currentSeed, "hang", $"the case ran for more than {HangLimit.TotalSeconds} s");
                Console.Out.Flush();
                Environment.Exit(3);
            }
        }
    }
}

/// <summary>
/// The resident set's growth over a window (one reader's run, or one policy's compile and evaluation), sampled by the
/// watchdog. A window over a large input starts after a full collection, so that earlier garbage is not counted.
/// </summary>
internal sealed class MemoryWatch
{
    private long _baseline;
    private long _peak;

    public void Reset(bool collect)
    {
        if (collect)
        {
            GC.Collect();
            GC.WaitForPendingFinalizers();
            GC.Collect();
        }
        var rss = Environment.WorkingSet;
        Interlocked.Exchange(ref _baseline, rss);
        Interlocked.Exchange(ref _peak, rss);
    }

    public void Sample(long rss)
    {
        long peak;
        while (rss > (peak = Interlocked.Read(ref _peak)) && Interlocked.CompareExchange(ref _peak, rss, peak) != peak) { }
    }

    /// <summary>The growth so far, the current resident set sampled once more.</summary>
    public long Growth
    {
        get
        {
            Sample(Environment.WorkingSet);
            return Interlocked.Read(ref _peak) - Interlocked.Read(ref _baseline);
        }
    }
}
