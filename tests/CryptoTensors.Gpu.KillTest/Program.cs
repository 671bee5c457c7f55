using CryptoTensors.Gpu.KillTest;

// ctensors-killtest [--runs N] [--seed S] [--dir DIR] [--ctensors PATH/ctensors.dll]
// The documented full run: dotnet run --project tests/CryptoTensors.Gpu.KillTest -c Release -- --runs 240
var runs = 240;
var seed = 1;
string? dir = null;
var dll = Path.Combine(AppContext.BaseDirectory, "ctensors.dll");
for (var i = 0; i < args.Length; i++)
{
    switch (args[i])
    {
        case "--runs": runs = int.Parse(args[++i], System.Globalization.CultureInfo.InvariantCulture); break;
        case "--seed": seed = int.Parse(args[++i], System.Globalization.CultureInfo.InvariantCulture); break;
        case "--dir": dir = args[++i]; break;
        case "--ctensors": dll = args[++i]; break;
        default:
            Console.Error.WriteLine($"ctensors-killtest: unknown argument '{args[i]}' (--runs N, --seed S, --dir DIR, --ctensors DLL)");
            return 1;
    }
}
var work = dir ?? Path.Combine(Path.GetTempPath(), "ctensors-killtest-" + Guid.NewGuid().ToString("N")[..8]);
try
{
    var report = KillHarness.Run(dll, work, runs, seed, Console.Out);
    return report.Failures.Count == 0 ? 0 : 2;
}
finally
{
    if (dir is null) Directory.Delete(work, recursive: true);
}
