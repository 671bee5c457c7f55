using System.Runtime.CompilerServices;
using System.Security.Cryptography;
using CryptoTensors.Gpu.Loading.Native;

namespace CryptoTensors.Gpu.Crypto;

/// <summary>
/// AES-128/256-GCM on Intel ipsec-mb's VAES/AVX-512 code (<c>libctaesgcm.so</c>), the accelerated backend of
/// <see cref="AeadCipher"/>. Usable only when the library loads, the CPU has the VAES path and a start-up self-test
/// (known answers, including long messages and a tag mismatch) passes, checked once, lazily: see
/// <see cref="UnavailableReason"/>. The expanded key lives in native memory only and is zeroed on dispose.
/// Same contract as the BCL path: 12-byte nonces, 16-byte tags, in place allowed, a failed open zeroes the output.
/// </summary>
internal sealed unsafe class IpsecMbAesGcm : IDisposable
{
    /// <summary>One known answer: key, nonce, associated data, plaintext (or a generated pattern), ciphertext (optional), tag.</summary>
    internal sealed record KnownAnswer(string Name, string Key, string Nonce, string Aad, string Plaintext, string? Ciphertext, string Tag,
        int PatternLength = 0);

    private const string P60 = "d9313225f88406e5a55909c5aff5269a86a7a9531534f7da2e4c303d8a318a721c3c0c95956809532fcf0e2449a6b525b16aedf5aa0de657ba637b39";
    private const string Key128 = "000102030405060708090a0b0c0d0e0f";
    private const string Key256 = "000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f";

    /// <summary>
    /// The GCM specification's test cases 2, 4, 13 and 16, and two 4099-byte messages (the bulk code path; plaintext
    /// byte i = i*31+7, associated data "ctensors") whose tags come from OpenSSL.
    /// </summary>
    internal static readonly IReadOnlyList<KnownAnswer> SelfTestVectors =
    [
        new("gcm-tc2", "00000000000000000000000000000000", "000000000000000000000000", "", "00000000000000000000000000000000",
            "0388dace60b6a392f328c2b971b2fe78", "ab6e47d42cec13bdf53a67b21257bddf"),
        new("gcm-tc4", "feffe9928665731c6d6a8f9467308308", "cafebabefacedbaddecaf888", "feedfacedeadbeeffeedfacedeadbeefabaddad2", P60,
            "42831ec2217774244b7221b784d0d49ce3aa212f2c02a4e035c17e2329aca12e21d514b25466931c7d8f6a5aac84aa051ba30b396a0aac973d58e091",
            "5bc94fbc3221a5db94fae95ae7121a47"),
        new("gcm-tc13", new string('0', 64), "000000000000000000000000", "", "", "", "530f8afbc74536b9a963b4f1c4cb738b"),
        new("gcm-tc16", "feffe9928665731c6d6a8f9467308308feffe9928665731c6d6a8f9467308308", "cafebabefacedbaddecaf888",
            "feedfacedeadbeeffeedfacedeadbeefabaddad2", P60,
            "522dc1f099567d07f47f37a32a84427d643a8cdcbfe5c0c97598a2bd2555d1aa8cb08e48590dbb3da7b08b1056828838c5f61e6393ba7a0abcc9f662",
            "76fc6ece0f4e1768cddf8853bb2d551b"),
        new("long-128", Key128, "000102030405060708090a0b", "6374656e736f7273", "", null, "0133d5a13f6611248f3d9daaa07a6f42", 4099),
        new("long-256", Key256, "000102030405060708090a0b", "6374656e736f7273", "", null, "3c4fc50c1e3fdb8e9c596684e60240c5", 4099),
    ];

    private static volatile Lazy<string?> _state = new(() => Probe(SelfTestVectors));

    private readonly AesGcmKeyHandle _key;

    private IpsecMbAesGcm(AesGcmKeyHandle key) => _key = key;

    /// <summary>
    /// Why the backend is unusable (library missing or unloadable, no VAES path, self-test failure), or <c>null</c> when
    /// it is usable. The first call loads the library and runs the self-test.
    /// </summary>
    internal static string? UnavailableReason => _state.Value;

    /// <summary>What the native library reports when usable (ipsec-mb version and code path), else <c>null</c>.</summary>
    internal static string? Description => UnavailableReason is null ? AesGcmNativeMethods.Info : null;

    /// <summary>A cipher for a 16- or 32-byte key. Callers check <see cref="UnavailableReason"/> first.</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    internal static IpsecMbAesGcm Create(ReadOnlySpan<byte> key) => new(AesGcmKeyHandle.Create(key));

    /// <summary>Test hook: forgets the outcome of the start-up check and runs it again, lazily, with <paramref name="vectors"/> (default: the real ones).</summary>
    internal static void ResetForTests(IReadOnlyList<KnownAnswer>? vectors = null)
    {
        var v = vectors ?? SelfTestVectors;
        _state = new Lazy<string?>(() => Probe(v));
    }

    private static string? Probe(IReadOnlyList<KnownAnswer> vectors)
    {
        if (!AesGcmNativeMethods.Available)
            return AesGcmNativeMethods.LoadError;
        var failure = SelfTest(vectors);
        return failure is null ? null : $"{AesGcmNativeMethods.FileName} ({AesGcmNativeMethods.Info}) failed its start-up self-test: {failure}";
    }

    /// <summary>Runs <paramref name="vectors"/> both ways, in place and out of place, plus a flipped tag per vector; returns the first failure or <c>null</c>.</summary>
    internal static string? SelfTest(IReadOnlyList<KnownAnswer> vectors)
    {
        foreach (var v in vectors)
        {
            var key = Convert.FromHexString(v.Key);
            try
            {
                var failure = Check(v, key);
                if (failure is not null) return $"{v.Name}: {failure}";
            }
            catch (Exception e) when (e is InvalidOperationException or ArgumentException or CryptographicException)
            {
                return $"{v.Name}: {e.GetType().Name}: {e.Message}";
            }
            finally
            {
                CryptographicOperations.ZeroMemory(key);
            }
        }
        return null;
    }

    private static string? Check(KnownAnswer v, byte[] key)
    {
        var nonce = Convert.FromHexString(v.Nonce);
        var aad = Convert.FromHexString(v.Aad);
        var plaintext = v.PatternLength > 0 ? Pattern(v.PatternLength) : Convert.FromHexString(v.Plaintext);
        var expectedTag = Convert.FromHexString(v.Tag);
        using var cipher = Create(key);
        var ciphertext = new byte[plaintext.Length];
        var tag = new byte[AeadAlgorithms.TagSize];
        cipher.Encrypt(nonce, plaintext, ciphertext, tag, aad);
        if (v.Ciphertext is not null && !ciphertext.AsSpan().SequenceEqual(Convert.FromHexString(v.Ciphertext))) return "wrong ciphertext";
        if (!tag.AsSpan().SequenceEqual(expectedTag)) return "wrong tag";

        var buffer = (byte[])plaintext.Clone();
        cipher.Encrypt(nonce, buffer, buffer, tag, aad);
        if (!buffer.AsSpan().SequenceEqual(ciphertext) || !tag.AsSpan().SequenceEqual(expectedTag)) return "in-place encryption differs";
        if (!cipher.TryDecrypt(nonce, buffer, expectedTag, buffer, aad) || !buffer.AsSpan().SequenceEqual(plaintext)) return "in-place decryption failed";
        var opened = new byte[plaintext.Length];
        if (!cipher.TryDecrypt(nonce, ciphertext, expectedTag, opened, aad) || !opened.AsSpan().SequenceEqual(plaintext)) return "decryption failed";

        expectedTag[^1] ^= 0x01;
        opened.AsSpan().Fill(0xA5);
        if (cipher.TryDecrypt(nonce, ciphertext, expectedTag, opened, aad)) return "a flipped tag bit was accepted";
        if (opened.AsSpan().ContainsAnyExcept((byte)0)) return "output not zeroed after a tag mismatch";
        return null;
    }

    private static byte[] Pattern(int length)
    {
        var p = new byte[length];
        for (var i = 0; i < p.Length; i++) p[i] = (byte)(i * 31 + 7);
        return p;
    }

    /// <summary>Seals like <see cref="AesGcm.Encrypt(ReadOnlySpan{byte}, ReadOnlySpan{byte}, Span{byte}, Span{byte}, ReadOnlySpan{byte})"/>.</summary>
    internal void Encrypt(ReadOnlySpan<byte> nonce, ReadOnlySpan<byte> plaintext, Span<byte> ciphertext, Span<byte> tag, ReadOnlySpan<byte> associatedData)
    {
        if (nonce.Length != AeadAlgorithms.NonceSize) throw new ArgumentException("The nonce must be 12 bytes.", nameof(nonce));
        if (tag.Length != AeadAlgorithms.TagSize) throw new ArgumentException("The tag must be 16 bytes.", nameof(tag));
        if (plaintext.Length != ciphertext.Length) throw new ArgumentException("Plaintext and ciphertext must have the same length.", nameof(ciphertext));
        var added = false;
        try
        {
            _key.DangerousAddRef(ref added);
            int status;
            fixed (byte* n = nonce, a = associatedData, p = plaintext, c = ciphertext, t = tag)
                status = AesGcmNativeMethods.Seal(_key.DangerousGetHandle(), n, a, (nuint)associatedData.Length, p, c, (nuint)plaintext.Length, t);
            if (status == AesGcmNativeMethods.InvalidArgument)
                throw new ArgumentException("Plaintext and ciphertext must be the same buffer or not overlap.", nameof(ciphertext));
            if (status != 0) throw new CryptographicException($"ctag_seal failed with status {status}");
        }
        finally
        {
            if (added) _key.DangerousRelease();
        }
    }

    /// <summary>Opens into <paramref name="plaintext"/> (may be the ciphertext buffer); false and zeroed output on a tag mismatch.</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    internal bool TryDecrypt(ReadOnlySpan<byte> nonce, ReadOnlySpan<byte> ciphertext, ReadOnlySpan<byte> tag, Span<byte> plaintext, ReadOnlySpan<byte> associatedData)
    {
        if (nonce.Length != AeadAlgorithms.NonceSize || tag.Length != AeadAlgorithms.TagSize)
        {
            plaintext.Clear();
            return false;
        }
        if (plaintext.Length != ciphertext.Length) throw new ArgumentException("Plaintext and ciphertext must have the same length.", nameof(plaintext));
        var added = false;
        try
        {
            _key.DangerousAddRef(ref added);
            int status;
            fixed (byte* n = nonce, a = associatedData, c = ciphertext, p = plaintext, t = tag)
                status = AesGcmNativeMethods.Open(_key.DangerousGetHandle(), n, a, (nuint)associatedData.Length, c, p, (nuint)ciphertext.Length, t);
            if (status == 0) return true;
            if (status == AesGcmNativeMethods.AuthenticationFailed) return false;
            throw status == AesGcmNativeMethods.InvalidArgument
                ? new ArgumentException("Plaintext and ciphertext must be the same buffer or not overlap.", nameof(plaintext))
                : new CryptographicException($"ctag_open failed with status {status}");
        }
        finally
        {
            if (added) _key.DangerousRelease();
        }
    }

    /// <summary>
    /// Opens <paramref name="plaintext"/>.Length bytes at <paramref name="ciphertext"/>, an address inside a file mapping, into
    /// <paramref name="plaintext"/>, under the shim's fault guard (<c>ct_mapping_call</c>). Returns 0,
    /// <see cref="AesGcmNativeMethods.AuthenticationFailed"/> (output zeroed) or <see cref="NativeMethods.MappedFileEnded"/>
    /// (the file shrank under the mapping; the output holds partial data the caller must clear).
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    internal int OpenFromMapping(ReadOnlySpan<byte> nonce, byte* ciphertext, ReadOnlySpan<byte> tag, Span<byte> plaintext)
    {
        if (nonce.Length != AeadAlgorithms.NonceSize || tag.Length != AeadAlgorithms.TagSize)
        {
            plaintext.Clear();
            return AesGcmNativeMethods.AuthenticationFailed;
        }
        var added = false;
        try
        {
            _key.DangerousAddRef(ref added);
            int status;
            fixed (byte* n = nonce, p = plaintext, t = tag)
            {
                byte none = 0;
                var args = new AesGcmNativeMethods.OpenArgs
                {
                    Key = _key.DangerousGetHandle(), Nonce = n, Aad = &none, AadLength = 0,
                    Input = ciphertext, Output = p, Length = (nuint)plaintext.Length, Tag = t,
                };
                status = NativeMethods.MappingCall(ciphertext, (nuint)plaintext.Length, AesGcmNativeMethods.OpenPacked, &args);
            }
            if (status is 0 or AesGcmNativeMethods.AuthenticationFailed or NativeMethods.MappedFileEnded) return status;
            throw new CryptographicException($"ctag_open failed with status {status}");
        }
        finally
        {
            if (added) _key.DangerousRelease();
        }
    }

    /// <summary>Replaces the key (same contract as <see cref="Create"/>) without allocating; not concurrently with other calls.</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    internal void Rekey(ReadOnlySpan<byte> key) => _key.Rekey(key);

    /// <inheritdoc />
    public void Dispose() => _key.Dispose();
}
