using System.CommandLine;
using CryptoTensors.Gpu.Loading;
using CryptoTensors.Gpu.Workloads;

namespace CryptoTensors.Cli.Commands;

/// <summary>The options <c>demo</c> and <c>bench</c> share: which workload, where its files go, and which read path loads them.</summary>
internal static class WorkloadOptions
{
    /// <summary><c>--workload</c>: one of <see cref="DemoWorkloads.Names"/>, gpt2 by default.</summary>
    public static Option<string> Workload()
    {
        var workload = new Option<string>("--workload") { Description = string.Join(", ", DemoWorkloads.Names) + " (default gpt2: 160 tensors, 548 MB; lora: 1000 tiny tensors)", DefaultValueFactory = _ => "gpt2" };
        return workload.OneOf([.. DemoWorkloads.Names]);
    }

    /// <summary><c>--dir</c>: where the files are written.</summary>
    public static Option<string?> Dir() => new("--dir") { Description = "Where to write the files (default: a temporary directory, removed afterwards)" };

    /// <summary><c>--repeat</c>: a count from 1 to 1000, 3 by default (anything else is a usage error).</summary>
    public static Option<int> Repeat(string description)
    {
        var repeat = new Option<int>("--repeat") { Description = description + " (1 to 1000, default 3)", DefaultValueFactory = _ => 3 };
        repeat.Validators.Add(r =>
        {
            if (r.GetValueOrDefault<int>() is < 1 or > 1000) r.AddError($"--repeat must be between 1 and 1000, not {r.GetValueOrDefault<int>()}");
        });
        return repeat;
    }

    /// <summary><c>--read-path</c>: Auto by default.</summary>
    public static Option<ReadPath> ReadPath() => new("--read-path")
    {
        Description = "Auto (default: MemoryMapped where the native shim loads, else PositionalRead), MemoryMapped or PositionalRead",
        DefaultValueFactory = _ => Gpu.Loading.ReadPath.Auto,
    };
}
