using CryptoTensors.Gpu.Reading;
using CryptoTensors.Gpu.Writing;

namespace CryptoTensors.Cli.Commands;

/// <summary>Runs a per-file action over a single file or every shard of a sharded model (a directory with an index).</summary>
internal static class ShardedInputs
{
    /// <summary>
    /// For a plain file: opens it and calls <paramref name="action"/> with <paramref name="output"/>. For a sharded model:
    /// opens every shard (all are authenticated before any output is written), calls the action once per shard with
    /// <c>output/shard</c>, then copies the index. On failure every output written so far is removed.
    /// </summary>
    public static void ForEach(string input, string? output, ReaderOptions options, Action<CryptoTensorsReader, string> action)
    {
        if (!ShardedModel.IsSharded(input))
        {
            using var reader = CryptoTensorsReader.Open(input, options);
            action(reader, output!);
            return;
        }
        using var model = ShardedModel.Open(input, options);
        if (output is null)
        {
            foreach (var name in model.Shards.Keys.Order(StringComparer.Ordinal)) action(model.Shards[name], "");
            return;
        }
        var created = !Directory.Exists(output);
        Directory.CreateDirectory(output);
        var written = new List<string>();
        try
        {
            foreach (var name in model.Shards.Keys.Order(StringComparer.Ordinal))
            {
                var target = Path.Combine(output, name);
                action(model.Shards[name], target);
                written.Add(target);
            }
            var index = Path.Combine(output, ShardedModel.IndexFileName);
            using (var f = new AtomicFile(index))
            {
                f.Stream.Write(System.Text.Encoding.UTF8.GetBytes(model.IndexJson)); // the index is copied as is
                f.Commit();
            }
        }
        catch
        {
            foreach (var f in written) File.Delete(f);
            if (created && !Directory.EnumerateFileSystemEntries(output).Any()) Directory.Delete(output);
            throw;
        }
    }
}
