using CryptoTensors.Gpu.TorchSharp;
using static TorchSharp.torch;

namespace CryptoTensors.Gpu.Interop.Tests;

/// <summary>The device a TorchSharp test runs on, or the reason it is skipped, for every TorchSharp test of this project.</summary>
internal static class TorchTestDevice
{
    /// <summary>
    /// The TorchSharp device for <paramref name="kind"/> (<c>cuda</c>, or anything else for the CPU); skips the calling test
    /// with TorchRuntime's one-line reason where TorchSharp cannot run, or when a CUDA test finds no CUDA device.
    /// </summary>
    public static Device Require(string kind)
    {
        if (!TorchRuntime.Initialize(out var error))
            Assert.Ignore("TorchSharp cannot run on this machine: " + error + " (scripts/torch-run tests/CryptoTensors.Gpu.Interop.Tests runs these tests where only the libstdc++ is too old)");
        if (kind == "cuda" && !cuda.is_available()) Assert.Ignore("needs a CUDA GPU: TorchSharp reports no CUDA device");
        return kind == "cuda" ? CUDA : CPU;
    }
}
