using System.Diagnostics;
using System.Text;

namespace CryptoTensors.Gpu.Tests;

/// <summary>
/// Runs a build or tool as a child of a test: standard output and error merged, the outer build's MSBuild variables
/// removed, no node reuse or first-run noise (nothing outlives the test), killed with its whole tree at the time limit.
/// </summary>
internal static class ChildProcess
{
    /// <summary>The start info with the clean environment; callers add or remove variables before <see cref="Run"/>.</summary>
    public static ProcessStartInfo Start(string program, string directory, IEnumerable<string> args)
    {
        var start = new ProcessStartInfo(program)
        {
            WorkingDirectory = directory,
            RedirectStandardOutput = true,
            RedirectStandardError = true,
            UseShellExecute = false,
        };
        foreach (var arg in args) start.ArgumentList.Add(arg);
        foreach (var name in start.Environment.Keys.Where(k => k.StartsWith("MSBUILD", StringComparison.OrdinalIgnoreCase)).ToList())
            start.Environment.Remove(name);
        start.Environment["MSBUILDDISABLENODEREUSE"] = "1";
        start.Environment["DOTNET_CLI_TELEMETRY_OPTOUT"] = "1";
        start.Environment["DOTNET_NOLOGO"] = "1";
        return start;
    }

    /// <summary>Runs <paramref name="start"/>; fails the test (after killing the tree) when it outlives <paramref name="limit"/>.</summary>
    public static (int Code, string Output) Run(ProcessStartInfo start, TimeSpan limit)
    {
        var output = new StringBuilder();
        using var process = new Process { StartInfo = start };
        process.OutputDataReceived += (_, e) => { if (e.Data is not null) lock (output) output.AppendLine(e.Data); };
        process.ErrorDataReceived += (_, e) => { if (e.Data is not null) lock (output) output.AppendLine(e.Data); };
        process.Start();
        process.BeginOutputReadLine();
        process.BeginErrorReadLine();
        if (!process.WaitForExit(limit))
        {
            process.Kill(entireProcessTree: true);
            process.WaitForExit();
            Assert.Fail($"{start.FileName} {string.Join(' ', start.ArgumentList)} did not finish within {limit.TotalMinutes} minutes:\n{output}");
        }
        process.WaitForExit(); // drains the redirected streams
        lock (output) return (process.ExitCode, output.ToString());
    }
}
