using System.Runtime.InteropServices;

namespace CryptoTensors.Gpu.Loading.Native;

/// <summary>
/// The binding of <c>libctaesgcm.so</c> (native/include/ctaesgcm.h): AES-GCM on Intel ipsec-mb's VAES/AVX-512 code.
/// Loaded once from the application directory (where native/Native.targets copies it when ipsec-mb was installed at
/// build time) or the package's <c>runtimes/linux-x64/native/</c> (see <see cref="NativeLibraryLocator"/>) and called through raw function pointers, so it needs no DllImport resolver and a missing library,
/// a missing <c>libIPSec_MB.so.1</c> or a CPU without VAES only make <see cref="Available"/> false, with the reason
/// in <see cref="LoadError"/>.
/// </summary>
internal static unsafe class AesGcmNativeMethods
{
    internal const string FileName = "libctaesgcm.so";
    private const int AbiVersion = 3;

    /// <summary>-EINVAL: a bad argument (lengths, overlapping buffers).</summary>
    internal const int InvalidArgument = -22;

    /// <summary>-EBADMSG: the tag does not authenticate (the output was zeroed).</summary>
    internal const int AuthenticationFailed = -74;

    /// <summary><c>ctag_create(key, key_len, &amp;ctx)</c>.</summary>
    internal static readonly delegate* unmanaged<byte*, nuint, nint*, int> Create;

    /// <summary><c>ctag_rekey(ctx, key, key_len)</c>: expands another key into the context (no allocation).</summary>
    internal static readonly delegate* unmanaged<nint, byte*, nuint, int> Rekey;

    /// <summary><c>ctag_destroy(ctx)</c>: zeroes and frees.</summary>
    internal static readonly delegate* unmanaged<nint, void> Destroy;

    /// <summary><c>ctag_seal(ctx, nonce, aad, aad_len, in, out, len, tag)</c>.</summary>
    internal static readonly delegate* unmanaged<nint, byte*, byte*, nuint, byte*, byte*, nuint, byte*, int> Seal;

    /// <summary><c>ctag_open(ctx, nonce, aad, aad_len, in, out, len, tag)</c>.</summary>
    internal static readonly delegate* unmanaged<nint, byte*, byte*, nuint, byte*, byte*, nuint, byte*, int> Open;

    /// <summary><c>ctag_open_packed(ctag_open_args*)</c>: <see cref="Open"/> through one pointer, for <c>ct_mapping_call</c>.</summary>
    internal static readonly nint OpenPacked;

    /// <summary><c>ctag_open_args</c>.</summary>
    [StructLayout(LayoutKind.Sequential)]
    internal struct OpenArgs
    {
        public nint Key;
        public byte* Nonce;
        public byte* Aad;
        public nuint AadLength;
        public byte* Input;
        public byte* Output;
        public nuint Length;
        public byte* Tag;
    }

    /// <summary>Why the library is unusable (not built, not loadable, wrong ABI, no VAES path), or <c>null</c>.</summary>
    internal static readonly string? LoadError;

    /// <summary>The library's own description when usable (ipsec-mb version and code path), else <c>null</c>.</summary>
    internal static readonly string? Info;

    /// <summary>Whether the library loaded, has the expected ABI and runs GCM on the VAES/AVX-512 path.</summary>
    internal static bool Available => LoadError is null;

    static AesGcmNativeMethods()
    {
        var (handle, error) = Load();
        if (handle == 0)
        {
            LoadError = error;
            return;
        }
        nint info = 0;
        var status = ((delegate* unmanaged<nint*, int>)NativeLibrary.GetExport(handle, "ctag_init"))(&info);
        var text = Marshal.PtrToStringUTF8(info) ?? "";
        if (status != 0)
        {
            LoadError = $"{FileName}: {text} (ctag_init status {status})";
            return;
        }
        Info = text;
        Create = (delegate* unmanaged<byte*, nuint, nint*, int>)NativeLibrary.GetExport(handle, "ctag_create");
        Rekey = (delegate* unmanaged<nint, byte*, nuint, int>)NativeLibrary.GetExport(handle, "ctag_rekey");
        Destroy = (delegate* unmanaged<nint, void>)NativeLibrary.GetExport(handle, "ctag_destroy");
        Seal = (delegate* unmanaged<nint, byte*, byte*, nuint, byte*, byte*, nuint, byte*, int>)NativeLibrary.GetExport(handle, "ctag_seal");
        Open = (delegate* unmanaged<nint, byte*, byte*, nuint, byte*, byte*, nuint, byte*, int>)NativeLibrary.GetExport(handle, "ctag_open");
        OpenPacked = NativeLibrary.GetExport(handle, "ctag_open_packed");
    }

    private static (nint Handle, string? Error) Load()
    {
        if (!OperatingSystem.IsLinux() || RuntimeInformation.ProcessArchitecture != Architecture.X64)
            return (0, $"{FileName} is only built on Linux x86-64");
        return NativeLibraryLocator.Load(FileName,
            "it is built only where Intel ipsec-mb is installed: apt-get install libipsec-mb-dev, then rebuild", handle =>
            {
                string[] exports = ["ctag_abi_version", "ctag_init", "ctag_create", "ctag_rekey", "ctag_destroy", "ctag_seal", "ctag_open", "ctag_open_packed"];
                var missing = exports.Where(e => !NativeLibrary.TryGetExport(handle, e, out _)).ToList();
                if (missing.Count > 0) return $"lacks {string.Join(", ", missing)}; rebuild it";
                var abi = ((delegate* unmanaged<int>)NativeLibrary.GetExport(handle, "ctag_abi_version"))();
                return abi == AbiVersion ? null : $"has ABI version {abi}, expected {AbiVersion}; rebuild it";
            });
    }
}
