using System.Buffers;
using System.Diagnostics;
using System.Globalization;
using System.Net;
using System.Reflection;
using System.Text.Json;

namespace CryptoTensors.Gpu.Policy;

/// <summary>
/// The <c>input</c> document given to an access policy. <see cref="ToJsonElement"/> produces:
/// <code>
/// {
///   "time": "2025-01-02T03:04:05.1234567Z",   // RFC 3339, UTC
///   "time_ns": 1735787045123456700,           // integer nanoseconds since the Unix epoch (same instant)
///   "host": { "name": "..." }, "user": { "name": "..." }, "process": { "name": "..." },
///   "device": "cpu" | "cuda:0",
///   "tensors": [ "name", ... ],               // only when the requested tensors are known
///   "keys": { "enc_kid": "...", "sign_kid": "...", "source": "file" | "env" | "direct" | "https" },
///   "library": { "version": "..." },
///   "file": { "name": "..." },
///   "context": { ... }                        // caller-supplied JSON object
/// }
/// </code>
/// A member whose value is null is omitted (so a policy sees it as undefined, not as <c>null</c>), and so is an
/// object all of whose members are omitted. <c>time</c> and <c>time_ns</c> are always present.
/// </summary>
public sealed class PolicyInput
{
    /// <summary>The device name for the CPU.</summary>
    public const string CpuDevice = "cpu";

    /// <summary>The instant of the load (<c>input.time</c>, <c>input.time_ns</c>).</summary>
    public required DateTimeOffset Time { get; init; }

    /// <summary><c>input.host.name</c>.</summary>
    public string? HostName { get; init; }

    /// <summary><c>input.user.name</c>.</summary>
    public string? UserName { get; init; }

    /// <summary><c>input.process.name</c>.</summary>
    public string? ProcessName { get; init; }

    /// <summary><c>input.device</c>: <see cref="CpuDevice"/> or <see cref="CudaDevice"/>.</summary>
    public string? Device { get; init; }

    /// <summary><c>input.tensors</c>: the requested tensor names, or null when unknown (then omitted).</summary>
    public IReadOnlyList<string>? Tensors { get; init; }

    /// <summary><c>input.keys.enc_kid</c>: the key id of the master (encryption) key.</summary>
    public string? EncKid { get; init; }

    /// <summary><c>input.keys.sign_kid</c>: the key id of the signature verification key.</summary>
    public string? SignKid { get; init; }

    /// <summary>
    /// <c>input.keys.source</c>: where the master key actually used came from (<see cref="Keys.KeySources"/>:
    /// <c>file</c>, <c>env</c>, <c>direct</c>, <c>https</c>, or a custom provider's name).
    /// </summary>
    public string? KeySource { get; init; }

    /// <summary><c>input.library.version</c>.</summary>
    public string? LibraryVersion { get; init; }

    /// <summary><c>input.file.name</c>: the file name as the caller gave it.</summary>
    public string? FileName { get; init; }

    /// <summary><c>input.context</c>: a caller-supplied JSON object (any other kind is rejected by <see cref="ToJsonElement"/>).</summary>
    public JsonElement? Context { get; init; }

    /// <summary>The version of this library, as reported in <c>input.library.version</c>.</summary>
    public static string CurrentLibraryVersion { get; } = ReadLibraryVersion();

    /// <summary>The device name of CUDA device <paramref name="ordinal"/>: <c>cuda:N</c>.</summary>
    public static string CudaDevice(int ordinal)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(ordinal);
        return "cuda:" + ordinal.ToString(CultureInfo.InvariantCulture);
    }

    // Host, user and process names do not change during a process; looking them up costs ~100 µs, so once.
    private static readonly Lazy<(string? Host, string? User, string? Process)> ProcessFacts =
        new(() => (HostNameOrNull(), Environment.UserName, ProcessNameOrNull()));

    /// <summary>
    /// An input for a load by this process: fills the time (from <paramref name="timeProvider"/>), host, user and
    /// process names and the library version; the other members come from the arguments.
    /// </summary>
    /// <param name="fileName">The file being loaded (<c>input.file.name</c>).</param>
    /// <param name="device">The target device, e.g. <see cref="CpuDevice"/> or <see cref="CudaDevice"/>.</param>
    /// <param name="tensors">The requested tensor names, or null when unknown.</param>
    /// <param name="encKid">The master key id, if known.</param>
    /// <param name="signKid">The verification key id, if known.</param>
    /// <param name="context">A caller-supplied JSON object.</param>
    /// <param name="timeProvider">The clock; <see cref="TimeProvider.System"/> when null.</param>
    /// <param name="keySource">Where the master key came from (<c>input.keys.source</c>), if known.</param>
    public static PolicyInput ForCurrentProcess(string fileName, string? device = null, IReadOnlyList<string>? tensors = null,
        string? encKid = null, string? signKid = null, JsonElement? context = null, TimeProvider? timeProvider = null, string? keySource = null)
    {
        ArgumentNullException.ThrowIfNull(fileName);
        return new PolicyInput
        {
            Time = (timeProvider ?? TimeProvider.System).GetUtcNow(),
            HostName = ProcessFacts.Value.Host,
            UserName = ProcessFacts.Value.User,
            ProcessName = ProcessFacts.Value.Process,
            Device = device,
            Tensors = tensors,
            EncKid = encKid,
            SignKid = signKid,
            KeySource = keySource,
            LibraryVersion = CurrentLibraryVersion,
            FileName = fileName,
            Context = context,
        };
    }

    /// <summary>Builds the JSON document (see the class summary). The result does not depend on a live <see cref="JsonDocument"/>.</summary>
    /// <exception cref="ArgumentException"><see cref="Context"/> is not a JSON object.</exception>
    public JsonElement ToJsonElement()
    {
        if (Context is { } ctx && ctx.ValueKind != JsonValueKind.Object)
            throw new ArgumentException($"the policy context must be a JSON object, not {ctx.ValueKind}", nameof(Context));
        var utc = Time.ToUniversalTime();
        long timeNs;
        try
        {
            timeNs = checked((utc.UtcTicks - DateTime.UnixEpoch.Ticks) * 100);
        }
        catch (OverflowException e)
        {
            throw new ArgumentOutOfRangeException(nameof(Time), Time, $"the time cannot be expressed in 64-bit nanoseconds: {e.Message}");
        }

        var buffer = new ArrayBufferWriter<byte>(512);
        using (var w = new Utf8JsonWriter(buffer))
        {
            w.WriteStartObject();
            w.WriteString("time", FormatRfc3339(utc));
            w.WriteNumber("time_ns", timeNs);
            WriteNamed(w, "host", "name", HostName);
            WriteNamed(w, "user", "name", UserName);
            WriteNamed(w, "process", "name", ProcessName);
            if (Device is not null) w.WriteString("device", Device);
            if (Tensors is not null)
            {
                w.WriteStartArray("tensors");
                foreach (var t in Tensors) w.WriteStringValue(t);
                w.WriteEndArray();
            }
            if (EncKid is not null || SignKid is not null || KeySource is not null)
            {
                w.WriteStartObject("keys");
                if (EncKid is not null) w.WriteString("enc_kid", EncKid);
                if (SignKid is not null) w.WriteString("sign_kid", SignKid);
                if (KeySource is not null) w.WriteString("source", KeySource);
                w.WriteEndObject();
            }
            WriteNamed(w, "library", "version", LibraryVersion);
            WriteNamed(w, "file", "name", FileName);
            if (Context is { } c)
            {
                w.WritePropertyName("context");
                c.WriteTo(w);
            }
            w.WriteEndObject();
        }
        using var doc = JsonDocument.Parse(buffer.WrittenMemory);
        return doc.RootElement.Clone();
    }

    /// <summary>RFC 3339 in UTC with the fractional seconds trimmed (none when zero), e.g. <c>2025-01-02T03:04:05.5Z</c>.</summary>
    internal static string FormatRfc3339(DateTimeOffset time)
        => time.UtcDateTime.ToString("yyyy'-'MM'-'dd'T'HH':'mm':'ss.FFFFFFF", CultureInfo.InvariantCulture) + "Z";

    private static void WriteNamed(Utf8JsonWriter w, string obj, string member, string? value)
    {
        if (value is null) return;
        w.WriteStartObject(obj);
        w.WriteString(member, value);
        w.WriteEndObject();
    }

    private static string? HostNameOrNull()
    {
        try
        {
            return Dns.GetHostName();
        }
        catch (System.Net.Sockets.SocketException)
        {
            return Environment.MachineName;
        }
    }

    private static string? ProcessNameOrNull()
    {
        try
        {
            using var p = Process.GetCurrentProcess();
            return p.ProcessName;
        }
        catch (InvalidOperationException)
        {
            return null;
        }
        catch (PlatformNotSupportedException)
        {
            return null;
        }
    }

    private static string ReadLibraryVersion()
    {
        var asm = typeof(PolicyInput).Assembly;
        var info = asm.GetCustomAttribute<AssemblyInformationalVersionAttribute>()?.InformationalVersion;
        if (!string.IsNullOrEmpty(info)) return info;
        return asm.GetName().Version?.ToString(3) ?? "0.0.0";
    }
}
