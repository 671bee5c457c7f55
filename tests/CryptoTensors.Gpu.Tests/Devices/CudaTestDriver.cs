using System.Diagnostics.CodeAnalysis;
using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;
using CryptoTensors.Gpu.Devices.Cuda;

namespace CryptoTensors.Gpu.Tests.Devices;

/// <summary>
/// Chooses the CUDA driver of this test process before any test runs: the real <c>libcuda.so.1</c> where it loads
/// and reports a device, else the test-only fake driver <c>libfakecuda.so</c> (native/fakecuda, built with the shim), through
/// <c>CRYPTOTENSORS_CUDA_DRIVER</c>; a value already set by the user is kept. The CUDA tests name the driver that ran
/// (<see cref="Label"/> in their fixture name) and use <see cref="FakeCuda"/> for the fake's counters and failure
/// injection.
/// </summary>
internal static class CudaTestDriver
{
    /// <summary>Runs when the test assembly loads, before anything reads <c>CRYPTOTENSORS_CUDA_DRIVER</c>.</summary>
    [ModuleInitializer]
    [SuppressMessage("Usage", "CA2255", Justification = "the driver must be chosen before any test touches CUDA or the native shim")]
    internal static void Select()
    {
        var set = Environment.GetEnvironmentVariable(CudaNativeMethods.DriverVariable);
        if (!string.IsNullOrEmpty(set))
        {
            Kind = set.Contains("fakecuda", StringComparison.Ordinal) ? "fake" : "custom";
            Path = set;
            return;
        }
        if (NativeLibrary.TryLoad(CudaNativeMethods.LibraryName, out var real))
        {
            if (HasDevice(real))
            {
                Kind = "real";
                Path = CudaNativeMethods.LibraryName;
                return;
            }
            // A driver without a usable device (a container without the GPU passed in): the fake runs the tests.
        }
        // Outside a checkout (scripts/gpu-kit's payload on a GPU machine) there is no build/native: no fake stands in.
        var fake = new[]
        {
            System.IO.Path.Combine(AppContext.BaseDirectory, "libfakecuda.so"),
            TestPaths.RepoRootOrNull is { } root ? System.IO.Path.Combine(root, "build", "native", "libfakecuda.so") : "",
        }.FirstOrDefault(f => f.Length > 0 && File.Exists(f));
        if (fake is null)
        {
            Kind = "none";
            return;
        }
        Environment.SetEnvironmentVariable(CudaNativeMethods.DriverVariable, fake);
        Kind = "fake";
        Path = fake;
    }

    private static unsafe bool HasDevice(nint driver)
    {
        if (!NativeLibrary.TryGetExport(driver, "cuInit", out var init) || !NativeLibrary.TryGetExport(driver, "cuDeviceGetCount", out var getCount))
            return false;
        int count;
        return ((delegate* unmanaged<uint, int>)init)(0) == 0 && ((delegate* unmanaged<int*, int>)getCount)(&count) == 0 && count > 0;
    }

    /// <summary>"real" (libcuda.so.1), "fake" (libfakecuda.so), "custom" (another CRYPTOTENSORS_CUDA_DRIVER) or "none".</summary>
    public static string Kind { get; private set; } = "none";

    /// <summary>The driver library's path or name (null when none).</summary>
    public static string? Path { get; private set; }

    public static bool IsFake => Kind == "fake";

    /// <summary>For fixture names: <c>fake-driver</c>, <c>real-driver</c>, ...</summary>
    public static string Label => Kind + "-driver";

    /// <summary>One fixture instance named after the driver, e.g. <c>CudaTests(fake-driver)</c>.</summary>
    public static IEnumerable<TestFixtureData> Fixtures()
    {
        yield return new TestFixtureData().SetArgDisplayNames(Label);
    }

    /// <summary>Skips (with the reason) unless a CUDA device is usable; says which driver runs the test.</summary>
    public static void RequireDevice()
    {
        if (!CudaDevice.IsAvailable(out var reason)) Assert.Ignore($"needs a CUDA GPU or the fake driver (build/native/libfakecuda.so): {reason}");
        TestContext.Out.WriteLine($"CUDA driver: {Kind} ({Path})");
    }

    /// <summary>Skips (with the reason) unless the fake driver runs this process.</summary>
    public static FakeCuda RequireFake()
    {
        RequireDevice();
        if (!IsFake) Assert.Ignore($"checks the fake driver's counters; this process runs the {Kind} driver ({Path})");
        return FakeCuda.Instance;
    }
}

/// <summary>The fake driver's test controls (native/fakecuda/fakecuda.h), bound from the loaded library.</summary>
internal sealed unsafe class FakeCuda
{
    private static readonly Lazy<FakeCuda> Lazy = new(() => new FakeCuda(NativeLibrary.Load(CudaTestDriver.Path!)));
    private readonly delegate* unmanaged<Stats*, nuint, int> _stats;
    private readonly delegate* unmanaged<byte*, int, int, int, int> _inject;
    private readonly delegate* unmanaged<void> _resetSticky;
    private readonly delegate* unmanaged<int, int> _setDelay;
    private readonly delegate* unmanaged<ulong, void*, nuint, int> _peek;
    private readonly delegate* unmanaged<byte*, nuint, nuint> _complaint;

    private FakeCuda(nint lib)
    {
        _stats = (delegate* unmanaged<Stats*, nuint, int>)NativeLibrary.GetExport(lib, "fakecuda_get_stats");
        _inject = (delegate* unmanaged<byte*, int, int, int, int>)NativeLibrary.GetExport(lib, "fakecuda_inject");
        _resetSticky = (delegate* unmanaged<void>)NativeLibrary.GetExport(lib, "fakecuda_reset_sticky");
        _setDelay = (delegate* unmanaged<int, int>)NativeLibrary.GetExport(lib, "fakecuda_set_delay_us");
        _peek = (delegate* unmanaged<ulong, void*, nuint, int>)NativeLibrary.GetExport(lib, "fakecuda_peek");
        _complaint = (delegate* unmanaged<byte*, nuint, nuint>)NativeLibrary.GetExport(lib, "fakecuda_last_complaint");
    }

    public static FakeCuda Instance => Lazy.Value;

    /// <summary>struct fakecuda_stats, field for field.</summary>
    [StructLayout(LayoutKind.Sequential)]
    public struct Stats
    {
        public ulong Calls, InitCalls, PrimaryRetains, PrimaryReleases, PrimaryRefcount, SetCurrentCalls;
        public ulong AllocationsLive, AllocatedBytesLive, AllocationsTotal, StreamsLive, EventsLive;
        public ulong RegistrationsLive, RegisteredBytesLive, RegisterCalls, AsyncCopies, PageableAsyncCopies;
        public ulong SyncCopies, Memsets, Hazards, ContextErrors, HandleErrors, ValueErrors, InjectedFailures;
        public ulong StickyError, PendingOperations;
    }

    public Stats Read()
    {
        Stats s;
        _stats(&s, (nuint)sizeof(Stats));
        return s;
    }

    /// <summary>The n-th call of <paramref name="function"/> from now returns <paramref name="result"/> (sticky: and every call after it).</summary>
    public void Inject(string function, int n, int result, bool sticky = false)
    {
        var name = System.Text.Encoding.UTF8.GetBytes(function + "\0");
        fixed (byte* p = name)
            Assert.That(_inject(p, n, result, sticky ? 1 : 0), Is.Zero, "fakecuda_inject");
    }

    /// <summary>Disarms injections and clears the sticky error.</summary>
    public void ResetSticky() => _resetSticky();

    public int SetDelayMicroseconds(int us) => _setDelay(us);

    /// <summary>Device memory as it is now, unordered with every stream.</summary>
    public byte[] Peek(ulong address, int length)
    {
        var b = new byte[length];
        fixed (byte* p = b)
            Assert.That(_peek(address, p, (nuint)length), Is.Zero, "fakecuda_peek");
        return b;
    }

    public string LastComplaint()
    {
        var b = new byte[512];
        fixed (byte* p = b)
            _complaint(p, (nuint)b.Length);
        return System.Text.Encoding.UTF8.GetString(b).TrimEnd('\0');
    }
}
