using System.CommandLine;
using System.Security.Cryptography;
using CryptoTensors.Gpu.Crypto;
using CryptoTensors.Gpu.Keys;
using CryptoTensors.Gpu.Writing;

namespace CryptoTensors.Cli.Commands;

/// <summary><c>ctensors keygen</c>: a master key and an Ed25519 key pair as reference-form JWKs.</summary>
internal static class KeygenCommand
{
    public static Command Create(CliIO io)
    {
        var outDir = new Option<string>("--out-dir") { Description = "Directory for enc.jwk, sign.jwk and sign.pub.jwk", Required = true };
        var alg = new Option<string>("--alg") { Description = "Master key algorithm", DefaultValueFactory = _ => "aes256gcm" };
        alg.OneOf("aes256gcm", "aes128gcm", "chacha20poly1305");
        var kidPrefix = new Option<string?>("--kid-prefix") { Description = "Prefix of the key ids (default: a random one)" };
        var force = new Option<bool>("--force") { Description = "Overwrite existing key files" };
        var cmd = new Command("keygen", "Generate a master key (enc.jwk) and a signing key pair (sign.jwk private, sign.pub.jwk public).")
        {
            outDir, alg, kidPrefix, force,
        };
        cmd.SetAction(r => io.Guard(() =>
        {
            var dir = r.GetValue(outDir)!;
            Directory.CreateDirectory(dir);
            AeadAlgorithms.TryParse(r.GetValue(alg), out var algorithm);
            var prefix = r.GetValue(kidPrefix) ?? "ct-" + Convert.ToHexStringLower(RandomNumberGenerator.GetBytes(4)) + "-";
            string enc = Path.Combine(dir, "enc.jwk"), sign = Path.Combine(dir, "sign.jwk"), pub = Path.Combine(dir, "sign.pub.jwk");
            if (!r.GetValue(force))
            {
                foreach (var f in new[] { enc, sign, pub })
                {
                    if (File.Exists(f)) throw new IOException($"'{f}' exists; use --force to overwrite keys");
                }
            }
            using var master = MasterKey.Generate(algorithm, prefix + "enc");
            using var signer = SigningKey.Generate(prefix + "sign");
            const UnixFileMode Private = UnixFileMode.UserRead | UnixFileMode.UserWrite;
            WriteText(enc, Jwk.Write(master), Private);
            WriteText(sign, Jwk.Write(signer), Private);
            WriteText(pub, Jwk.Write(signer.Public), Private | UnixFileMode.GroupRead | UnixFileMode.OtherRead);
            io.Out.WriteLine($"wrote {enc} ({master.Alg}, kid {master.Kid}), {sign} and {pub} (ed25519, kid {signer.Kid})");
            return 0;
        }));
        return cmd;
    }

    internal static void WriteText(string path, string text, UnixFileMode mode)
    {
        using var f = new AtomicFile(path, mode);
        f.Stream.Write(System.Text.Encoding.UTF8.GetBytes(text + "\n"));
        f.Commit();
        if (!OperatingSystem.IsWindows()) File.SetUnixFileMode(path, mode);
    }
}
