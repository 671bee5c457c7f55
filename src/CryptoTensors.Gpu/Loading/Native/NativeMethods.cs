using System.Reflection;
using System.Runtime.InteropServices;

namespace CryptoTensors.Gpu.Loading.Native;

/// <summary>
/// The P/Invoke surface of <c>libctshim.so</c> (native/include/ctshim.h). The library is resolved from the
/// application directory (where native/Native.targets copies it) or the package's <c>runtimes/linux-x64/native/</c>
/// (see <see cref="NativeLibraryLocator"/>); <see cref="Available"/> says whether it loaded.
/// </summary>
internal static unsafe partial class NativeMethods
{
    internal const string LibraryName = "ctshim";
    internal const string FileName = "libctshim.so";
    private const int AbiVersion = 3;

    /// <summary>-EFAULT from the mapping functions: the mapped file ended early (it shrank while mapped).</summary>
    internal const int MappedFileEnded = -14;

    [StructLayout(LayoutKind.Sequential)]
    internal struct HostBuffer
    {
        public nint Ptr;
        public nuint Size;
        public nuint MappedSize;
        public uint Flags;
        public int Locked;
        public int LockErrno;
        public int CudaRegistered;
        public int CudaResult;
        public int HugePageAdvised;
    }

    [StructLayout(LayoutKind.Sequential)]
    internal struct PoolStatistics
    {
        public ulong BytesCached;
        public ulong BytesInUse;
        public ulong BuffersCached;
        public ulong BuffersInUse;
        public ulong Hits;
        public ulong Misses;
        public ulong Evictions;
    }

    private static readonly Lazy<(nint Handle, string? Error)> Library = new(Load);

    static NativeMethods()
        => NativeLibrary.SetDllImportResolver(typeof(NativeMethods).Assembly, Resolve);

    /// <summary>Whether <c>libctshim.so</c> loaded and has the expected ABI.</summary>
    internal static bool Available => Library.Value.Handle != 0;

    /// <summary>Why the library is unavailable, or <c>null</c>.</summary>
    internal static string? LoadError => Library.Value.Error;

    internal static void EnsureAvailable()
    {
        if (!Available)
        {
            throw new DllNotFoundException(
                $"The native shim '{FileName}' could not be loaded: {LoadError}. It is built by native/Native.targets " +
                "during the .NET build (needs cmake and a C compiler). Check PinnedHostBuffer.NativeShimAvailable and " +
                "use PinnedHostBuffer.AllocateManaged when it is false.");
        }
    }

    private static IntPtr Resolve(string libraryName, Assembly assembly, DllImportSearchPath? searchPath)
        => libraryName == LibraryName ? Library.Value.Handle : IntPtr.Zero;

    private static (nint, string?) Load()
    {
        if (!OperatingSystem.IsLinux())
            return (0, $"{FileName} is only built on Linux");
        // Checked through raw exports: the LibraryImport stubs would re-enter this Lazy through the resolver.
        return NativeLibraryLocator.Load(FileName, null, handle =>
        {
            if (!NativeLibrary.TryGetExport(handle, "ct_abi_version", out var abiExport)
                || !NativeLibrary.TryGetExport(handle, "ct_host_buffer_size", out var sizeExport))
                return "lacks ct_abi_version/ct_host_buffer_size; rebuild it";
            var abi = ((delegate* unmanaged<int>)abiExport)();
            var size = ((delegate* unmanaged<nuint>)sizeExport)();
            if (abi != AbiVersion || size != (nuint)sizeof(HostBuffer))
                return $"has ABI version {abi} (struct size {size}), expected {AbiVersion} ({sizeof(HostBuffer)}); rebuild it";
            if (!NativeLibrary.TryGetExport(handle, "ct_cuda_set_driver", out var setDriver))
                return "lacks ct_cuda_set_driver; rebuild it";
            // The shim loads the same CUDA driver as Devices.Cuda (CRYPTOTENSORS_CUDA_DRIVER as this process sees it,
            // which Environment.SetEnvironmentVariable does not pass to native getenv). Nothing is loaded here: the
            // shim loads the driver only when a caller asks for CUDA registration.
            var driver = Devices.Cuda.CudaNativeMethods.DriverPath;
            var bytes = System.Text.Encoding.UTF8.GetBytes(driver + "\0");
            fixed (byte* p = bytes)
                ((delegate* unmanaged<byte*, int>)setDriver)(p);
            return null;
        });
    }

    /// <summary>The exception for a failed ct_ call, with the calling thread's native error detail.</summary>
    internal static Exception Failure(int status, string operation)
    {
        var name = Marshal.PtrToStringUTF8(StrError(status));
        var detail = Marshal.PtrToStringUTF8(LastErrorMessage());
        var message = $"{operation} failed: {name} ({status}){(string.IsNullOrEmpty(detail) ? "" : ": " + detail)}";
        return -status switch
        {
            12 => new InsufficientMemoryException(message), // ENOMEM
            22 or 75 => new ArgumentException(message),     // EINVAL, EOVERFLOW
            _ => new InvalidOperationException(message),
        };
    }

    [LibraryImport(LibraryName, EntryPoint = "ct_strerror")]
    internal static partial nint StrError(int code);

    [LibraryImport(LibraryName, EntryPoint = "ct_last_error_message")]
    internal static partial nint LastErrorMessage();

    [LibraryImport(LibraryName, EntryPoint = "ct_cuda_available")]
    internal static partial int CudaAvailable();

    [LibraryImport(LibraryName, EntryPoint = "ct_host_alloc")]
    internal static partial int HostAlloc(nuint size, uint flags, HostBuffer* result);

    [LibraryImport(LibraryName, EntryPoint = "ct_host_free")]
    internal static partial int HostFree(HostBuffer* buffer);

    [LibraryImport(LibraryName, EntryPoint = "ct_pool_create")]
    internal static partial int PoolCreate(nuint maxCachedBytes, uint flags, nint* pool);

    [LibraryImport(LibraryName, EntryPoint = "ct_pool_acquire")]
    internal static partial int PoolAcquire(nint pool, nuint size, HostBuffer* result);

    [LibraryImport(LibraryName, EntryPoint = "ct_pool_release")]
    internal static partial int PoolRelease(nint pool, HostBuffer* buffer);

    [LibraryImport(LibraryName, EntryPoint = "ct_pool_trim")]
    internal static partial int PoolTrim(nint pool);

    [LibraryImport(LibraryName, EntryPoint = "ct_pool_stats")]
    internal static partial int PoolStats(nint pool, PoolStatistics* result);

    [LibraryImport(LibraryName, EntryPoint = "ct_pool_destroy")]
    internal static partial int PoolDestroy(nint pool);

    [LibraryImport(LibraryName, EntryPoint = "ct_mapping_open")]
    internal static partial int MappingOpen(int fd, ulong length, nint* address);

    [LibraryImport(LibraryName, EntryPoint = "ct_mapping_close")]
    internal static partial int MappingClose(nint address, ulong length);

    [LibraryImport(LibraryName, EntryPoint = "ct_mapping_call")]
    internal static partial int MappingCall(void* lo, nuint length, nint function, void* argument);

    [LibraryImport(LibraryName, EntryPoint = "ct_mapping_copy")]
    internal static partial int MappingCopy(void* destination, void* source, nuint length);

    [LibraryImport(LibraryName, EntryPoint = "ct_mapping_release")]
    internal static partial int MappingRelease(void* address, nuint length);
}
