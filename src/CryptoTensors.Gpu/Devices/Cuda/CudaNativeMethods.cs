using System.Runtime.InteropServices;

namespace CryptoTensors.Gpu.Devices.Cuda;

/// <summary>
/// The CUDA driver API entry points this library uses, resolved at run time from <c>libcuda.so.1</c> (or the library
/// <c>CRYPTOTENSORS_CUDA_DRIVER</c> names) with
/// <see cref="NativeLibrary.TryLoad(string, out IntPtr)"/>: nothing CUDA is needed to build or to run the CPU paths.
/// Every call returns a <c>CUresult</c>; <see cref="Check"/> turns a failure into a <see cref="CudaException"/>
/// carrying <c>cuGetErrorName</c>.
/// </summary>
internal static unsafe class CudaNativeMethods
{
    internal const string LibraryName = "libcuda.so.1";

    /// <summary>The environment variable that names another driver library (a path), e.g. the tests' fake driver.</summary>
    internal const string DriverVariable = "CRYPTOTENSORS_CUDA_DRIVER";

    /// <summary>
    /// The driver library this process uses: <c>CRYPTOTENSORS_CUDA_DRIVER</c> when set (a path to a driver library,
    /// such as the test-only libfakecuda.so), else <c>libcuda.so.1</c>. The native shim is given the same path, so both
    /// use one driver. Read when the driver or the shim is first loaded.
    /// </summary>
    internal static string DriverPath => Environment.GetEnvironmentVariable(DriverVariable) is { Length: > 0 } p ? p : LibraryName;

    internal const uint StreamNonBlocking = 0x1;
    internal const uint EventDisableTiming = 0x2;
    internal const uint MemHostRegisterPortable = 0x1;
    internal const int ErrorNotReady = 600;
    internal const int ErrorNoDevice = 100;
    internal const int ErrorHostMemoryAlreadyRegistered = 712;

    /// <summary>The resolved entry points (all non-null once <see cref="Load"/> succeeded).</summary>
    internal sealed class Api
    {
        public delegate* unmanaged<uint, int> cuInit;
        public delegate* unmanaged<int*, int> cuDriverGetVersion;
        public delegate* unmanaged<int*, int> cuDeviceGetCount;
        public delegate* unmanaged<int*, int, int> cuDeviceGet;
        public delegate* unmanaged<byte*, int, int, int> cuDeviceGetName;
        public delegate* unmanaged<nuint*, int, int> cuDeviceTotalMem;
        public delegate* unmanaged<nint*, int, int> cuDevicePrimaryCtxRetain;
        public delegate* unmanaged<int, int> cuDevicePrimaryCtxRelease;
        public delegate* unmanaged<nint, int> cuCtxSetCurrent;
        public delegate* unmanaged<nint*, int> cuCtxGetCurrent;
        public delegate* unmanaged<int> cuCtxSynchronize;
        public delegate* unmanaged<nint*, uint, int> cuStreamCreate;
        public delegate* unmanaged<nint, int> cuStreamDestroy;
        public delegate* unmanaged<nint, int> cuStreamSynchronize;
        public delegate* unmanaged<nint*, uint, int> cuEventCreate;
        public delegate* unmanaged<nint, int> cuEventDestroy;
        public delegate* unmanaged<nint, nint, int> cuEventRecord;
        public delegate* unmanaged<nint, int> cuEventSynchronize;
        public delegate* unmanaged<nint, int> cuEventQuery;
        /// <summary><c>cuEventElapsedTime(float* pMilliseconds, CUevent hStart, CUevent hEnd)</c>: the result comes first.</summary>
        public delegate* unmanaged<float*, nint, nint, int> cuEventElapsedTime;
        public delegate* unmanaged<ulong*, nuint, int> cuMemAlloc;
        public delegate* unmanaged<ulong, int> cuMemFree;
        public delegate* unmanaged<ulong, void*, nuint, nint, int> cuMemcpyHtoDAsync;
        public delegate* unmanaged<ulong, void*, nuint, int> cuMemcpyHtoD;
        public delegate* unmanaged<void*, ulong, nuint, int> cuMemcpyDtoH;
        public delegate* unmanaged<ulong, byte, nuint, int> cuMemsetD8;
        public delegate* unmanaged<void*, nuint, uint, int> cuMemHostRegister;
        public delegate* unmanaged<void*, int> cuMemHostUnregister;
        public delegate* unmanaged<int, byte**, int> cuGetErrorName;
        public delegate* unmanaged<int, byte**, int> cuGetErrorString;
    }

    private static readonly Lazy<(Api? Api, string? Error)> Library = new(Load);

    /// <summary>The driver entry points, or throws <see cref="CudaUnavailableException"/> ("CUDA driver not found").</summary>
    internal static Api Driver => Library.Value.Api
        ?? throw new CudaUnavailableException(CudaUnavailableReason.DriverNotFound, $"CUDA driver not found: {Library.Value.Error}");

    /// <summary>Whether <c>libcuda.so.1</c> loaded with every entry point, and why not.</summary>
    internal static bool TryGetDriver(out Api? api, out string? error)
    {
        (api, error) = Library.Value;
        return api is not null;
    }

    private static (Api?, string?) Load()
    {
        var path = DriverPath;
        if (!NativeLibrary.TryLoad(path, out var lib))
            return (null, $"{path} could not be loaded (no NVIDIA driver on this machine?)");
        // Never freed: the driver stays loaded for the life of the process, as with the CUDA runtime.
        var missing = new List<string>();
        nint Get(string name, string? fallback = null)
        {
            if (NativeLibrary.TryGetExport(lib, name, out var f)) return f;
            if (fallback is not null && NativeLibrary.TryGetExport(lib, fallback, out f)) return f;
            missing.Add(name);
            return 0;
        }
        var api = new Api
        {
            cuInit = (delegate* unmanaged<uint, int>)Get("cuInit"),
            cuDriverGetVersion = (delegate* unmanaged<int*, int>)Get("cuDriverGetVersion"),
            cuDeviceGetCount = (delegate* unmanaged<int*, int>)Get("cuDeviceGetCount"),
            cuDeviceGet = (delegate* unmanaged<int*, int, int>)Get("cuDeviceGet"),
            cuDeviceGetName = (delegate* unmanaged<byte*, int, int, int>)Get("cuDeviceGetName"),
            cuDeviceTotalMem = (delegate* unmanaged<nuint*, int, int>)Get("cuDeviceTotalMem_v2", "cuDeviceTotalMem"),
            cuDevicePrimaryCtxRetain = (delegate* unmanaged<nint*, int, int>)Get("cuDevicePrimaryCtxRetain"),
            cuDevicePrimaryCtxRelease = (delegate* unmanaged<int, int>)Get("cuDevicePrimaryCtxRelease_v2", "cuDevicePrimaryCtxRelease"),
            cuCtxSetCurrent = (delegate* unmanaged<nint, int>)Get("cuCtxSetCurrent"),
            cuCtxGetCurrent = (delegate* unmanaged<nint*, int>)Get("cuCtxGetCurrent"),
            cuCtxSynchronize = (delegate* unmanaged<int>)Get("cuCtxSynchronize"),
            cuStreamCreate = (delegate* unmanaged<nint*, uint, int>)Get("cuStreamCreate"),
            cuStreamDestroy = (delegate* unmanaged<nint, int>)Get("cuStreamDestroy_v2", "cuStreamDestroy"),
            cuStreamSynchronize = (delegate* unmanaged<nint, int>)Get("cuStreamSynchronize"),
            cuEventCreate = (delegate* unmanaged<nint*, uint, int>)Get("cuEventCreate"),
            cuEventDestroy = (delegate* unmanaged<nint, int>)Get("cuEventDestroy_v2", "cuEventDestroy"),
            cuEventRecord = (delegate* unmanaged<nint, nint, int>)Get("cuEventRecord"),
            cuEventSynchronize = (delegate* unmanaged<nint, int>)Get("cuEventSynchronize"),
            cuEventQuery = (delegate* unmanaged<nint, int>)Get("cuEventQuery"),
            cuEventElapsedTime = (delegate* unmanaged<float*, nint, nint, int>)Get("cuEventElapsedTime"),
            cuMemAlloc = (delegate* unmanaged<ulong*, nuint, int>)Get("cuMemAlloc_v2"),
            cuMemFree = (delegate* unmanaged<ulong, int>)Get("cuMemFree_v2"),
            cuMemcpyHtoDAsync = (delegate* unmanaged<ulong, void*, nuint, nint, int>)Get("cuMemcpyHtoDAsync_v2"),
            cuMemcpyHtoD = (delegate* unmanaged<ulong, void*, nuint, int>)Get("cuMemcpyHtoD_v2"),
            cuMemcpyDtoH = (delegate* unmanaged<void*, ulong, nuint, int>)Get("cuMemcpyDtoH_v2"),
            cuMemsetD8 = (delegate* unmanaged<ulong, byte, nuint, int>)Get("cuMemsetD8_v2"),
            cuMemHostRegister = (delegate* unmanaged<void*, nuint, uint, int>)Get("cuMemHostRegister_v2", "cuMemHostRegister"),
            cuMemHostUnregister = (delegate* unmanaged<void*, int>)Get("cuMemHostUnregister"),
            cuGetErrorName = (delegate* unmanaged<int, byte**, int>)Get("cuGetErrorName"),
            cuGetErrorString = (delegate* unmanaged<int, byte**, int>)Get("cuGetErrorString"),
        };
        if (missing.Count > 0)
            return (null, $"{path} lacks {string.Join(", ", missing)} (driver too old?)");
        return (api, null);
    }

    /// <summary>Throws <see cref="CudaException"/> for a non-zero <paramref name="result"/> of <paramref name="function"/>.</summary>
    internal static void Check(int result, string function)
    {
        if (result != 0) throw new CudaException(result, ErrorName(result), function, ErrorString(result));
    }

    internal static string ErrorName(int result)
    {
        if (!TryGetDriver(out var api, out _)) return $"CUresult {result}";
        byte* s = null;
        return api!.cuGetErrorName(result, &s) == 0 && s is not null ? Marshal.PtrToStringUTF8((nint)s) ?? $"CUresult {result}" : $"CUresult {result}";
    }

    private static string? ErrorString(int result)
    {
        if (!TryGetDriver(out var api, out _)) return null;
        byte* s = null;
        return api!.cuGetErrorString(result, &s) == 0 && s is not null ? Marshal.PtrToStringUTF8((nint)s) : null;
    }
}
