namespace CryptoTensors.Gpu.Devices.Cuda;

/// <summary>A CUDA driver call failed: <see cref="Function"/> returned <see cref="Result"/> (<see cref="ErrorName"/>).</summary>
public class CudaException : Exception
{
    /// <summary>Creates the exception for a failed driver call.</summary>
    public CudaException(int result, string errorName, string function, string? description = null)
        : base($"{function} failed: {errorName} ({result}){(description is null ? "" : ": " + description)}")
    {
        Result = result;
        ErrorName = errorName;
        Function = function;
    }

    /// <summary>Creates an exception with a message of its own (no driver call failed).</summary>
    protected CudaException(string message) : base(message)
    {
        ErrorName = "";
        Function = "";
    }

    /// <summary>The <c>CUresult</c> code (0 when no driver call was involved).</summary>
    public int Result { get; }

    /// <summary>The code's name from <c>cuGetErrorName</c>, e.g. <c>CUDA_ERROR_OUT_OF_MEMORY</c>.</summary>
    public string ErrorName { get; }

    /// <summary>The driver function that failed, e.g. <c>cuMemAlloc_v2</c>.</summary>
    public string Function { get; }
}

/// <summary>Why CUDA cannot be used on this machine.</summary>
public enum CudaUnavailableReason
{
    /// <summary><c>libcuda.so.1</c> is not installed, or lacks an entry point this library needs.</summary>
    DriverNotFound,
    /// <summary>The driver loaded but reports no device (or not the requested ordinal).</summary>
    NoDevice,
}

/// <summary>The GPU API was used on a machine without a usable CUDA driver or device.</summary>
public sealed class CudaUnavailableException : CudaException
{
    /// <summary>Creates the exception.</summary>
    public CudaUnavailableException(CudaUnavailableReason reason, string message) : base(message) => Reason = reason;

    /// <summary>Why CUDA is unavailable.</summary>
    public CudaUnavailableReason Reason { get; }
}
