namespace CryptoTensors.Gpu.Interop.DLPack;

/// <summary><c>DLDeviceType</c> of <c>dlpack.h</c> (a 32-bit C enum): where a tensor's memory lives.</summary>
public enum DLDeviceType
{
    /// <summary><c>kDLCPU</c>: ordinary host memory.</summary>
    Cpu = 1,
    /// <summary><c>kDLCUDA</c>: CUDA device memory.</summary>
    Cuda = 2,
    /// <summary><c>kDLCUDAHost</c>: page-locked host memory known to CUDA (<c>cudaMallocHost</c>, <c>cuMemHostRegister</c>).</summary>
    CudaHost = 3,
    /// <summary><c>kDLOpenCL</c>.</summary>
    OpenCL = 4,
    /// <summary><c>kDLVulkan</c>.</summary>
    Vulkan = 7,
    /// <summary><c>kDLMetal</c>.</summary>
    Metal = 8,
    /// <summary><c>kDLVPI</c>: Verilog simulator buffer.</summary>
    Vpi = 9,
    /// <summary><c>kDLROCM</c>.</summary>
    Rocm = 10,
    /// <summary><c>kDLROCMHost</c>: pinned host memory from <c>hipMallocHost</c>.</summary>
    RocmHost = 11,
    /// <summary><c>kDLExtDev</c>: reserved extension device.</summary>
    ExtDev = 12,
    /// <summary><c>kDLCUDAManaged</c>: CUDA managed (unified) memory.</summary>
    CudaManaged = 13,
    /// <summary><c>kDLOneAPI</c>.</summary>
    OneApi = 14,
    /// <summary><c>kDLWebGPU</c>.</summary>
    WebGpu = 15,
    /// <summary><c>kDLHexagon</c>.</summary>
    Hexagon = 16,
    /// <summary><c>kDLMAIA</c>.</summary>
    Maia = 17,
    /// <summary><c>kDLTrn</c>: AWS Trainium.</summary>
    Trn = 18,
}
