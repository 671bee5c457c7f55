using System.CommandLine;
using CryptoTensors.Gpu.Keys;

namespace CryptoTensors.Cli.Commands;

/// <summary>
/// The options that fetch keys from a key server (<c>--key-url</c>, <c>--key-token-file</c>, <c>--key-ca</c>,
/// <c>--key-allow-host</c>), shared by verify, decrypt, rewrap and bench. A <c>--key-url</c> host is allowed by naming
/// it; <c>--key-allow-host</c> allows more hosts for key locations (<c>jku</c>) named in a file's header, which are
/// followed only when it is given. Errors in these options are usage errors (exit 1); a server's refusal is a key
/// error (exit 7).
/// </summary>
internal sealed class RemoteKeyOptions
{
    public Option<string[]> Urls { get; } = new("--key-url")
    {
        Description = "Key server base URL (https; repeatable): master and public keys are fetched as GET URL/keys/KID with the licence token",
        AllowMultipleArgumentsPerToken = false,
    };

    public Option<string?> TokenFile { get; } = new("--key-token-file")
    {
        Description = "File holding the licence token for the key server (mode 0600; sent as Authorization: Bearer)",
    };

    public Option<string?> Ca { get; } = new("--key-ca")
    {
        Description = "PEM file of the CA (or self-signed certificate) the key server's certificate must chain to (default: the system roots)",
    };

    public Option<string[]> AllowHosts { get; } = new("--key-allow-host")
    {
        Description = "Also allow this key server host (exact, or *.domain; repeatable) and follow key locations (jku) in file headers to allowed hosts",
        AllowMultipleArgumentsPerToken = false,
    };

    public void AddTo(Command command)
    {
        command.Options.Add(Urls);
        command.Options.Add(TokenFile);
        command.Options.Add(Ca);
        command.Options.Add(AllowHosts);
    }

    /// <summary>Whether header key locations are followed (only with <c>--key-allow-host</c>).</summary>
    public bool FollowsHeaderLocations(ParseResult r) => (r.GetValue(AllowHosts) ?? []).Length > 0;

    /// <summary>The first <c>--key-url</c>, or null.</summary>
    public Uri? FirstUrl(ParseResult r) => (r.GetValue(Urls) ?? []) is [var first, ..] ? ParseUrl(first) : null;

    /// <summary>
    /// The key server provider these options describe, or null when neither <c>--key-url</c> nor
    /// <c>--key-allow-host</c> is given. The caller disposes it.
    /// </summary>
    public HttpsKeyProvider? ProviderOf(ParseResult r)
    {
        var urls = (r.GetValue(Urls) ?? []).Select(ParseUrl).ToList();
        var allow = (r.GetValue(AllowHosts) ?? []).ToList();
        var tokenFile = r.GetValue(TokenFile);
        var ca = r.GetValue(Ca);
        if (urls.Count == 0 && allow.Count == 0)
        {
            if (tokenFile is not null) throw new ArgumentException("--key-token-file needs --key-url (or --key-allow-host)");
            if (ca is not null) throw new ArgumentException("--key-ca needs --key-url (or --key-allow-host)");
            return null;
        }
        string? token = null;
        if (tokenFile is not null)
        {
            var text = CliOptions.ReadText("--key-token-file", tokenFile);
            if (!OperatingSystem.IsWindows() && (File.GetUnixFileMode(tokenFile) & (UnixFileMode.GroupRead | UnixFileMode.OtherRead)) != 0)
                throw new ArgumentException($"--key-token-file '{tokenFile}' is readable by others: a licence token is a secret (chmod 600 '{tokenFile}')");
            token = text.Trim();
            if (token.Length == 0 || token.Any(c => c < 0x21 || c > 0x7e))
                throw new ArgumentException($"--key-token-file '{tokenFile}' must hold one token (printable ASCII, no spaces)");
        }
        System.Security.Cryptography.X509Certificates.X509Certificate2Collection? roots = null;
        if (ca is not null)
        {
            CliOptions.ReadText("--key-ca", ca);
            try
            {
                roots = HttpsKeyProviderOptions.LoadTrustedRoots(ca);
            }
            catch (ArgumentException e)
            {
                throw new ArgumentException($"--key-ca {e.Message}", e);
            }
        }
        foreach (var u in urls) allow.Add(u.IdnHost);
        try
        {
            return new HttpsKeyProvider(new HttpsKeyProviderOptions
            {
                BaseUrls = urls, AllowedHosts = allow, LicenceToken = token, TrustedRoots = roots,
            });
        }
        catch (ArgumentException e)
        {
            throw new ArgumentException(e.Message.Contains("allowlist entry", StringComparison.Ordinal) ? "--key-allow-host: " + e.Message : e.Message, e);
        }
    }

    private static Uri ParseUrl(string s)
    {
        if (!Uri.TryCreate(s, UriKind.Absolute, out var u) || u.Scheme != Uri.UriSchemeHttps)
            throw new ArgumentException($"--key-url '{s}' must be an https URL (e.g. https://keys.example.com)");
        if (u.UserInfo.Length > 0 || u.Query.Length > 0 || u.Fragment.Length > 0)
            throw new ArgumentException($"--key-url '{s}' must not carry user info, a query or a fragment");
        return u;
    }
}
