using System.CommandLine;
using System.Text.Encodings.Web;
using System.Text.Json;
using CryptoTensors.Gpu.Format;
using CryptoTensors.Gpu.Reading;

namespace CryptoTensors.Cli.Commands;

/// <summary><c>ctensors inspect</c>: layout and crypto metadata, no keys needed, nothing verified.</summary>
internal static class InspectCommand
{
    public static Command Create(CliIO io)
    {
        var input = new Argument<string>("input") { Description = "safetensors or CryptoTensors file" };
        var json = new Option<bool>("--json") { Description = "One JSON object on stdout" };
        var cmd = new Command("inspect", "Show layout, dtypes, shapes, encryption, key ids, policy and signature presence (nothing is verified).") { input, json };
        cmd.SetAction(r => io.Guard(() =>
        {
            var s = FileInspector.Inspect(r.GetValue(input)!);
            if (r.GetValue(json)) WriteJson(io.Out, s);
            else WriteText(io.Out, s);
            return 0;
        }));
        return cmd;
    }

    private static void WriteText(TextWriter o, FileSummary s)
    {
        o.WriteLine($"file:        {s.Path} ({s.FileLength} bytes, header {s.Header.HeaderLength} bytes)");
        o.WriteLine($"format:      {(s.IsEncrypted ? "cryptotensors v" + s.CryptoKeys?.Version : "plain safetensors")}");
        if (s.CryptoKeys is { } k)
        {
            o.WriteLine($"chunk size:  {(k.ChunkSize is { } c ? c.ToString(System.Globalization.CultureInfo.InvariantCulture) : "none (monolithic)")}");
            o.WriteLine($"enc key:     {k.Enc.Alg} kid={k.Enc.Kid ?? "-"} jku={k.Enc.Jku ?? "-"}");
            o.WriteLine($"sign key:    {k.Sign.Alg} kid={k.Sign.Kid ?? "-"} jku={k.Sign.Jku ?? "-"}");
        }
        o.WriteLine($"signed:      {(s.HasSignature ? "yes (not verified by inspect)" : "no")}");
        if (s.Policy is { } p) o.WriteLine("policy:      " + p.Local.Replace("\n", "\n             ", StringComparison.Ordinal));
        foreach (var kv in s.Header.Metadata?.Where(kv => !kv.Key.StartsWith("__", StringComparison.Ordinal)) ?? [])
            o.WriteLine($"metadata:    {kv.Key} = {kv.Value}");
        o.WriteLine($"tensors:     {s.Header.Tensors.Count} ({s.EncryptedTensors.Count} encrypted), {s.Header.DataLength} bytes");
        foreach (var t in s.Header.Tensors)
            o.WriteLine($"  {(s.EncryptedTensors.Contains(t.Name) ? "enc  " : "plain")} {t.Dtype.Name(),-8} {SafetensorsHeader.FormatShape(t.Shape),-20} {t.ByteLength,14}  {t.Name}");
    }

    private static void WriteJson(TextWriter o, FileSummary s)
    {
        using var ms = new MemoryStream();
        using (var w = new Utf8JsonWriter(ms, new JsonWriterOptions { Encoder = JavaScriptEncoder.UnsafeRelaxedJsonEscaping }))
        {
            w.WriteStartObject();
            w.WriteString("file", s.Path);
            w.WriteNumber("file_size", s.FileLength);
            w.WriteNumber("header_length", s.Header.HeaderLength);
            w.WriteString("format", s.IsEncrypted ? "cryptotensors" : "safetensors");
            if (s.CryptoKeys is { } k)
            {
                w.WriteString("version", k.Version);
                if (k.ChunkSize is { } c) w.WriteNumber("chunk_size", c); else w.WriteNull("chunk_size");
                foreach (var (name, d) in new[] { ("enc", k.Enc), ("sign", k.Sign) })
                {
                    w.WriteStartObject(name);
                    w.WriteString("alg", d.Alg);
                    w.WriteString("kid", d.Kid);
                    w.WriteString("jku", d.Jku);
                    w.WriteEndObject();
                }
            }
            w.WriteBoolean("signed", s.HasSignature);
            if (s.Policy is { } p) { w.WriteString("policy_local", p.Local); w.WriteString("policy_remote", p.Remote); }
            w.WriteStartObject("metadata");
            foreach (var kv in s.Header.Metadata?.Where(kv => !kv.Key.StartsWith("__", StringComparison.Ordinal)) ?? []) w.WriteString(kv.Key, kv.Value);
            w.WriteEndObject();
            w.WriteStartArray("tensors");
            foreach (var t in s.Header.Tensors)
            {
                w.WriteStartObject();
                w.WriteString("name", t.Name);
                w.WriteString("dtype", t.Dtype.Name());
                w.WriteStartArray("shape");
                foreach (var d in t.Shape) w.WriteNumberValue(d);
                w.WriteEndArray();
                w.WriteStartArray("data_offsets");
                w.WriteNumberValue(t.Begin);
                w.WriteNumberValue(t.End);
                w.WriteEndArray();
                w.WriteBoolean("encrypted", s.EncryptedTensors.Contains(t.Name));
                w.WriteEndObject();
            }
            w.WriteEndArray();
            w.WriteEndObject();
        }
        o.WriteLine(System.Text.Encoding.UTF8.GetString(ms.ToArray()));
    }
}
