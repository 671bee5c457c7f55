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
        RequireInput(input);
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

    /// <summary>True when <paramref name="input"/> is a sharded model (a directory with an index, or the index file).</summary>
    public static bool IsSharded(string input) => ShardedModel.IsSharded(input);

    /// <summary>Refuses a missing input, or a directory that holds no sharded model, naming the cause.</summary>
    public static void RequireInput(string input)
    {
        if (Directory.Exists(input))
        {
            if (!ShardedModel.IsSharded(input))
                throw new IOException($"'{input}' is a directory without {ShardedModel.IndexFileName}: give a .safetensors file or a sharded model directory");
        }
        else if (!File.Exists(input)) throw new FileNotFoundException($"'{input}': no such file", input);
    }

    /// <summary>
    /// The layout of every file of the input (one, or every shard of a sharded model), read without keys and before
    /// any work: lets a command refuse an input as a whole (already encrypted, an unknown tensor name) up front.
    /// </summary>
    public static IReadOnlyList<FileSummary> Inspect(string input)
    {
        RequireInput(input);
        if (!ShardedModel.IsSharded(input)) return [FileInspector.Inspect(input)];
        var indexPath = Directory.Exists(input) ? Path.Combine(input, ShardedModel.IndexFileName) : input;
        var dir = Path.GetDirectoryName(Path.GetFullPath(indexPath))!;
        var map = ShardedModel.ParseWeightMap(File.ReadAllText(indexPath));
        return [.. map.Values.Distinct(StringComparer.Ordinal).Order(StringComparer.Ordinal).Select(f => FileInspector.Inspect(Path.Combine(dir, Path.GetFileName(f))))];
    }
}
