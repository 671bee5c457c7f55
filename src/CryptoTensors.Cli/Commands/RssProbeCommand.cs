using System.CommandLine;
using System.Diagnostics;
using System.Globalization;
using System.Runtime.InteropServices;
using System.Text.Json;
using CryptoTensors.Gpu.Loading;
using CryptoTensors.Gpu.Reading;
using CryptoTensors.Gpu.Writing;

namespace CryptoTensors.Cli.Commands;

/// <summary>
/// <c>ctensors rss-probe</c> (hidden; run by <c>bench</c> in a child process): one load into fresh memory, or one
/// encrypt, in a process that does nothing else, so its peak resident set is what a program doing only that would
/// have. Prints one JSON object: baseline RSS (the runtime, before the work), peak RSS (VmHWM, after clearing it),
/// the peak's file-backed part at the end (mapped libraries), tensor bytes and seconds.
/// </summary>
internal static unsafe class RssProbeCommand
{
    public static Command Create(CliIO io)
    {
        var mode = new Option<string>("--mode") { Description = "load or encrypt", Required = true };
        mode.OneOf("load", "encrypt");
        var input = new Option<string>("--input") { Required = true };
        var output = new Option<string?>("--output");
        var key = new Option<string?>("--key");
        var verifyKey = new Option<string?>("--verify-key");
        var signKey = new Option<string?>("--sign-key");
        var readPath = new Option<ReadPath>("--read-path") { DefaultValueFactory = _ => ReadPath.Auto };
        var cmd = new Command("rss-probe", "Peak RSS of one load or encrypt in its own process (used by bench).") { mode, input, output, key, verifyKey, signKey, readPath };
        cmd.Hidden = true;
        cmd.SetAction(r => io.Guard(() => Run(io, r.GetValue(mode)!, r.GetValue(input)!, r.GetValue(output), r.GetValue(key), r.GetValue(verifyKey),
            r.GetValue(signKey), r.GetValue(readPath))));
        return cmd;
    }

    private static int Run(CliIO io, string mode, string input, string? output, string? key, string? verifyKey, string? signKey, ReadPath readPath)
    {
        // Everything the work needs is loaded first, so the baseline holds the runtime and the libraries, not the work.
        var options = mode == "load" ? KeyOptions.ReaderOptions(key, verifyKey) : null;
        using var releaseKeys = options is null ? null : KeyOptions.Owning(options);
        using var master = mode == "encrypt" ? KeyOptions.MasterKey(key) : null;
        using var signer = mode == "encrypt" ? KeyOptions.SigningKey(signKey) : null;
        GC.Collect(2, GCCollectionMode.Forced, blocking: true, compacting: true);
        BenchCommand.ResetPeakRss();
        var baseline = BenchCommand.ReadStatus("VmRSS:") ?? -1;
        var sw = Stopwatch.StartNew();
        long bytes;
        if (mode == "load")
        {
            using var reader = CryptoTensorsReader.Open(input, options!);
            bytes = reader.Tensors.Sum(t => t.ByteLength);
            var destination = (byte*)NativeMemory.AlignedAlloc((nuint)Math.Max(1, bytes), 4096);
            try
            {
                LoadTiming.LoadAll(reader, destination, readPath);
            }
            finally
            {
                NativeMemory.AlignedFree(destination);
            }
        }
        else
        {
            bytes = BenchCommand.EncryptCopy(input, output ?? throw new ArgumentException("--output is required with --mode encrypt"),
                new WriterOptions { MasterKey = master, SigningKey = signer });
        }
        var seconds = sw.Elapsed.TotalSeconds;
        var result = new Dictionary<string, object>
        {
            ["mode"] = mode,
            ["tensor_bytes"] = bytes,
            ["baseline_rss_bytes"] = baseline,
            ["peak_rss_bytes"] = BenchCommand.ReadStatus("VmHWM:") ?? -1,
            ["file_rss_bytes_at_end"] = BenchCommand.ReadStatus("RssFile:") ?? -1,
            ["seconds"] = Math.Round(seconds, 4),
        };
        io.Out.WriteLine(JsonSerializer.Serialize(result));
        return 0;
    }

    /// <summary>Runs this program's <c>rss-probe</c> in a child process and returns its JSON, or the reason it failed.</summary>
    internal static (JsonElement? Result, string? Error) RunChild(params string[] arguments)
    {
        var start = new ProcessStartInfo { RedirectStandardOutput = true, RedirectStandardError = true, UseShellExecute = false };
        var host = Environment.ProcessPath ?? "dotnet";
        var self = typeof(RssProbeCommand).Assembly;
        if (System.Reflection.Assembly.GetEntryAssembly() == self && !Path.GetFileNameWithoutExtension(host).Equals("dotnet", StringComparison.OrdinalIgnoreCase))
        {
            start.FileName = host; // the ctensors apphost (or a single-file publish)
        }
        else
        {
            // `dotnet ctensors.dll`, or ctensors hosted by another program (the tests): the dotnet host runs the assembly.
            start.FileName = Path.GetFileNameWithoutExtension(host).Equals("dotnet", StringComparison.OrdinalIgnoreCase) ? host
                : Environment.GetEnvironmentVariable("DOTNET_HOST_PATH") is { Length: > 0 } h ? h : "dotnet";
            start.ArgumentList.Add(self.Location);
        }
        start.ArgumentList.Add("rss-probe");
        foreach (var a in arguments) start.ArgumentList.Add(a);
        try
        {
            using var p = Process.Start(start)!;
            var stdout = p.StandardOutput.ReadToEndAsync();
            var stderr = p.StandardError.ReadToEndAsync();
            p.WaitForExit();
            if (p.ExitCode != 0) return (null, $"rss-probe exited with {p.ExitCode.ToString(CultureInfo.InvariantCulture)}: {stderr.Result.Trim()}");
            var line = stdout.Result.Split('\n', StringSplitOptions.RemoveEmptyEntries).LastOrDefault() ?? "";
            return (JsonDocument.Parse(line).RootElement.Clone(), null);
        }
        catch (Exception e) when (e is System.ComponentModel.Win32Exception or JsonException or InvalidOperationException)
        {
            return (null, $"rss-probe could not run: {e.Message}");
        }
    }
}
