using System.CommandLine;
using System.Net;
using System.Runtime.InteropServices;
using CryptoTensors.Cli.KeyServer;

namespace CryptoTensors.Cli.Commands;

/// <summary>
/// <c>ctensors keyserver</c>: a small licensed key server over HTTPS (see the README's "Remote keys"). Runs until
/// Ctrl-C or SIGTERM, then finishes the requests in flight and stops.
/// </summary>
internal static class KeyServerCommand
{
    public static Command Create(CliIO io)
    {
        var keys = new Option<string>("--keys") { Description = "Directory of *.jwk files to serve: master keys (mode 0600) and Ed25519 public keys; private signing keys are never served", Required = true };
        var tokens = new Option<string>("--tokens") { Description = "Licence file (JSON, mode 0600): per token its id, kids, expiry, optional client certificate SHA-256, revoked flag; re-read when it changes", Required = true };
        var listen = new Option<string>("--listen") { Description = "Address and port to listen on (default 127.0.0.1:8443; port 0: any free port)", DefaultValueFactory = _ => "127.0.0.1:8443" };
        var tlsCert = new Option<string?>("--tls-cert") { Description = "TLS certificate (PEM); with --tls-key. Neither existing: a self-signed pair is written there (default: tls.crt beside --tokens)" };
        var tlsKey = new Option<string?>("--tls-key") { Description = "TLS private key (PEM, mode 0600) (default: tls.key beside --tokens)" };
        var audit = new Option<string?>("--audit-log") { Description = "Append-only audit log, one JSON line per request; no key bytes, no tokens (default: audit.log beside --tokens)" };
        var maxAge = new Option<int>("--max-age") { Description = "Seconds a client may cache a key (Cache-Control: max-age; never past the licence's expiry), default 300", DefaultValueFactory = _ => 300 };
        var rate = new Option<int>("--rate") { Description = "Requests per minute per licence (and per address without a valid token), default 120", DefaultValueFactory = _ => 120 };
        var cmd = new Command("keyserver", "Serve master keys and public keys over HTTPS to licence holders (GET /keys/KID with Authorization: Bearer TOKEN) until Ctrl-C or SIGTERM.")
        {
            keys, tokens, listen, tlsCert, tlsKey, audit, maxAge, rate,
        };
        cmd.SetAction(async (r, ct) =>
        {
            try
            {
                var tokenFile = r.GetValue(tokens)!;
                var beside = Path.GetDirectoryName(Path.GetFullPath(tokenFile))!;
                var endpointText = r.GetValue(listen)!;
                if (!IPEndPoint.TryParse(endpointText, out var endpoint) || !endpointText.Contains(':', StringComparison.Ordinal))
                    throw new ArgumentException($"--listen '{endpointText}' is not ADDRESS:PORT (e.g. 127.0.0.1:8443 or [::1]:8443)");
                if (r.GetValue(maxAge) < 0) throw new ArgumentException("--max-age must be 0 or more");
                if (r.GetValue(rate) <= 0) throw new ArgumentException("--rate must be positive");
                var settings = new KeyServerSettings
                {
                    KeysDirectory = r.GetValue(keys)!,
                    TokensFile = tokenFile,
                    Listen = endpoint,
                    TlsCert = r.GetValue(tlsCert) ?? Path.Combine(beside, "tls.crt"),
                    TlsKey = r.GetValue(tlsKey) ?? Path.Combine(beside, "tls.key"),
                    AuditLog = r.GetValue(audit) ?? Path.Combine(beside, "audit.log"),
                    MaxAgeSeconds = r.GetValue(maxAge),
                    RatePerMinute = r.GetValue(rate),
                };
                // Ctrl-C (SIGINT) and SIGTERM stop the server gracefully: the process is not killed, the wait below ends.
                using var stop = CancellationTokenSource.CreateLinkedTokenSource(ct);
                void Stop(PosixSignalContext c)
                {
                    c.Cancel = true;
                    stop.Cancel();
                }
                using var sigint = PosixSignalRegistration.Create(PosixSignal.SIGINT, Stop);
                using var sigterm = PosixSignalRegistration.Create(PosixSignal.SIGTERM, Stop);
                var host = await KeyServerHost.StartAsync(settings, io.Out, stop.Token).ConfigureAwait(false);
                try
                {
                    await Task.Delay(Timeout.Infinite, stop.Token).ConfigureAwait(false);
                }
                catch (OperationCanceledException)
                {
                }
                await host.StopAsync().ConfigureAwait(false);
                io.Out.WriteLine("keyserver: stopped");
                return 0;
            }
            catch (KeyServerConfigException e)
            {
                io.Err.WriteLine("ctensors: error: " + CliIO.OneLine(e.Message));
                return e.ExitCode;
            }
            catch (Exception e) when (CliIO.IsExpected(e))
            {
                if (e is OperationCanceledException) return 0;
                io.WriteError(e);
                return CliIO.ExitCode(e);
            }
        });
        return cmd;
    }
}
