using System.Globalization;
using CryptoTensors.Gpu.Writing;
using Spectre.Console;

namespace CryptoTensors.Cli;

/// <summary>
/// Progress of a long command on standard error: a Spectre.Console progress bar when standard error is a terminal,
/// otherwise a plain line every 10 % (so logs and pipes stay readable). Standard output is never used.
/// </summary>
internal static class CliProgress
{
    public static void Run(CliIO io, string label, Action<IProgress<TensorProgress>> work)
    {
        if (ReferenceEquals(io.Err, Console.Error) && !Console.IsErrorRedirected)
        {
            var console = AnsiConsole.Create(new AnsiConsoleSettings { Out = new AnsiConsoleOutput(Console.Error) });
            console.Progress().AutoClear(true).Columns(new TaskDescriptionColumn(), new ProgressBarColumn(), new PercentageColumn(), new TransferSpeedColumn(), new RemainingTimeColumn())
                .Start(ctx =>
                {
                    var task = ctx.AddTask(Markup.Escape(label), maxValue: 1);
                    work(new Sink(p =>
                    {
                        task.MaxValue = Math.Max(1, p.BytesTotal);
                        task.Value = p.BytesDone;
                    }));
                });
            return;
        }
        var lastDecile = -1;
        var gate = new object();
        work(new Sink(p =>
        {
            var decile = p.BytesTotal == 0 ? 10 : (int)(p.BytesDone * 10 / p.BytesTotal);
            lock (gate)
            {
                if (decile <= lastDecile) return;
                lastDecile = decile;
                io.Err.WriteLine(string.Create(CultureInfo.InvariantCulture,
                    $"{label}: {decile * 10}% ({p.TensorsDone}/{p.TensorsTotal} tensors, {p.BytesDone / 1e6:F1}/{p.BytesTotal / 1e6:F1} MB)"));
            }
        }));
    }

    /// <summary>Reports synchronously on the calling thread (Progress&lt;T&gt; would post to the thread pool, out of order).</summary>
    private sealed class Sink(Action<TensorProgress> report) : IProgress<TensorProgress>
    {
        public void Report(TensorProgress value) => report(value);
    }
}
