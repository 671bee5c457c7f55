using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;

namespace CryptoTensors.Gpu.Crypto;

/// <summary>
/// Ed25519 verification on OpenSSL's <c>libcrypto.so.3</c> (the library .NET's own cryptography uses on Linux), called
/// through raw function pointers: its SHA-512 runs about twice as fast as libsodium's here, and verification hashes
/// the whole signed header (hundreds of KB for many-tensor models). Usable only when the library loads and a start-up
/// self-test passes (RFC 8032 test 1 and 3 accepted, a flipped bit of the message, signature or key refused), checked
/// once, lazily; else <see cref="Ed25519"/> verifies with libsodium. Passes the Wycheproof Ed25519 vectors like it.
/// </summary>
internal static unsafe class OpenSslEd25519
{
    private const int NidEd25519 = 1087; // EVP_PKEY_ED25519

    private static readonly Lazy<Functions?> State = new(Load);

    private sealed class Functions
    {
        public required delegate* unmanaged<int, nint, byte*, nuint, nint> NewRawPublicKey;
        public required delegate* unmanaged<nint, void> FreeKey;
        public required delegate* unmanaged<nint> NewContext;
        public required delegate* unmanaged<nint, void> FreeContext;
        public required delegate* unmanaged<nint, nint, nint, nint, nint, int> DigestVerifyInit;
        public required delegate* unmanaged<nint, byte*, nuint, byte*, nuint, int> DigestVerify;
    }

    /// <summary>Whether OpenSSL verifies here (library loaded, self-test passed).</summary>
    internal static bool Available => State.Value is not null;

    /// <summary>
    /// Verifies <paramref name="signature"/> (64 bytes) over <paramref name="message"/> with <paramref name="publicKey"/>
    /// (32 bytes). False for a bad signature or a key OpenSSL refuses; callers check lengths and <see cref="Available"/>.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    internal static bool Verify(ReadOnlySpan<byte> publicKey, ReadOnlySpan<byte> message, ReadOnlySpan<byte> signature)
        => Verify(State.Value ?? throw new InvalidOperationException("OpenSSL Ed25519 is unavailable"), publicKey, message, signature);

    private static bool Verify(Functions f, ReadOnlySpan<byte> publicKey, ReadOnlySpan<byte> message, ReadOnlySpan<byte> signature)
    {
        if (publicKey.Length != Ed25519.PublicKeySize || signature.Length != Ed25519.SignatureSize) return false;
        nint key = 0, context = 0;
        try
        {
            fixed (byte* k = publicKey)
                key = f.NewRawPublicKey(NidEd25519, 0, k, (nuint)publicKey.Length);
            if (key == 0) return false;
            context = f.NewContext();
            if (context == 0) throw new OutOfMemoryException("EVP_MD_CTX_new failed");
            if (f.DigestVerifyInit(context, 0, 0, 0, key) != 1) return false;
            // A non-null pointer for an empty message: OpenSSL reads none of it.
            byte none = 0;
            fixed (byte* m = message, s = signature)
                return f.DigestVerify(context, s, (nuint)signature.Length, message.IsEmpty ? &none : m, (nuint)message.Length) == 1;
        }
        finally
        {
            if (context != 0) f.FreeContext(context);
            if (key != 0) f.FreeKey(key);
        }
    }

    private static Functions? Load()
    {
        if (!OperatingSystem.IsLinux() || !NativeLibrary.TryLoad("libcrypto.so.3", out var lib)) return null;
        try
        {
            var f = new Functions
            {
                NewRawPublicKey = (delegate* unmanaged<int, nint, byte*, nuint, nint>)NativeLibrary.GetExport(lib, "EVP_PKEY_new_raw_public_key"),
                FreeKey = (delegate* unmanaged<nint, void>)NativeLibrary.GetExport(lib, "EVP_PKEY_free"),
                NewContext = (delegate* unmanaged<nint>)NativeLibrary.GetExport(lib, "EVP_MD_CTX_new"),
                FreeContext = (delegate* unmanaged<nint, void>)NativeLibrary.GetExport(lib, "EVP_MD_CTX_free"),
                DigestVerifyInit = (delegate* unmanaged<nint, nint, nint, nint, nint, int>)NativeLibrary.GetExport(lib, "EVP_DigestVerifyInit"),
                DigestVerify = (delegate* unmanaged<nint, byte*, nuint, byte*, nuint, int>)NativeLibrary.GetExport(lib, "EVP_DigestVerify"),
            };
            return SelfTest(f) ? f : null;
        }
        catch (EntryPointNotFoundException)
        {
            return null;
        }
    }

    /// <summary>RFC 8032 §7.1 tests 1 (empty message) and 3 (two bytes), and each with one bit flipped.</summary>
    private static bool SelfTest(Functions f)
    {
        foreach (var (pk, msg, sig) in new[]
        {
            ("d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a", "",
                "e5564300c360ac729086e2cc806e828a84877f1eb8e5d974d873e065224901555fb8821590a33bacc61e39701cf9b46bd25bf5f0595bbe24655141438e7a100b"),
            ("fc51cd8e6218a1a38da47ed00230f0580816ed13ba3303ac5deb911548908025", "af82",
                "6291d657deec24024827e69c3abe01a30ce548a284743a445e3680d7db5ac3ac18ff9b538d16f290ae67f760984dc6594a7c15e9716ed28dc027beceea1ec40a"),
        })
        {
            var (k, m, s) = (Convert.FromHexString(pk), Convert.FromHexString(msg), Convert.FromHexString(sig));
            if (!Verify(f, k, m, s)) return false;
            s[5] ^= 1;
            if (Verify(f, k, m, s)) return false;
            s[5] ^= 1;
            k[3] ^= 1;
            if (Verify(f, k, m, s)) return false;
            k[3] ^= 1;
            if (Verify(f, k, [.. m, 0], s)) return false;
        }
        return true;
    }
}
