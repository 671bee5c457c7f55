using CryptoTensors.Gpu.Loading.Native;

namespace CryptoTensors.Gpu.Tests.Loading;

public class PinnedHostBufferTests
{
    internal static void RequireShim()
    {
        if (!OperatingSystem.IsLinux())
            Assert.Ignore("libctshim.so is only built on Linux");
        Assert.That(PinnedHostBuffer.NativeShimAvailable, Is.True, () => PinnedHostBuffer.NativeShimLoadError ?? "");
    }

    [TestCase(1L)]
    [TestCase(4095L)]
    [TestCase(4096L)]
    [TestCase(100_001L)]
    [TestCase(3L << 20)]
    public void NativeAllocationWritesAndReadsBack(long length)
    {
        RequireShim();
        using var buffer = PinnedHostBuffer.Allocate(length);
        Assert.Multiple(() =>
        {
            Assert.That(buffer.Length, Is.EqualTo(length));
            Assert.That((long)buffer.Pointer % 4096, Is.Zero);
            Assert.That(buffer.IsNative, Is.True);
            Assert.That(buffer.IsPooled, Is.False);
        });
        Fill(buffer.AsSpan(), 3);
        Assert.That(Verify(buffer.AsSpan(), 3), Is.True);
    }

    [Test]
    public void ManagedFallbackWritesAndReadsBack()
    {
        using var buffer = PinnedHostBuffer.AllocateManaged(10_000);
        Assert.Multiple(() =>
        {
            Assert.That(buffer.Length, Is.EqualTo(10_000));
            Assert.That((long)buffer.Pointer % 4096, Is.Zero);
            Assert.That(buffer.IsNative, Is.False);
            Assert.That(buffer.IsLocked, Is.False);
            Assert.That(buffer.IsCudaRegistered, Is.False);
        });
        Fill(buffer.AsSpan(), 5);
        Assert.That(Verify(buffer.AsSpan(), 5), Is.True);
    }

    [Test]
    public void LockStatusIsReported()
    {
        RequireShim();
        using (var locked = PinnedHostBuffer.Allocate(1 << 20, HostAllocationFlags.Lock | HostAllocationFlags.Touch))
        {
            // Either locked, or the refusal's errno is recorded (RLIMIT_MEMLOCK: ENOMEM / EPERM / EAGAIN).
            Assert.That(locked.IsLocked ? locked.LockError == 0 : locked.LockError != 0, Is.True,
                $"locked={locked.IsLocked} errno={locked.LockError}");
            TestContext.Out.WriteLine($"1 MiB: locked={locked.IsLocked} errno={locked.LockError} cuda={locked.IsCudaRegistered}");
        }
        using var unlocked = PinnedHostBuffer.Allocate(1 << 20, HostAllocationFlags.Touch);
        Assert.Multiple(() =>
        {
            Assert.That(unlocked.IsLocked, Is.False);
            Assert.That(unlocked.LockError, Is.Zero);
            Assert.That(unlocked.IsCudaRegistered, Is.False);
        });
    }

    [Test]
    public void CudaRegistrationOnlyWhenAskedAndMatchesDriverAvailability()
    {
        RequireShim();
        using (var plain = PinnedHostBuffer.Allocate(1 << 16))
            Assert.That(plain.IsCudaRegistered, Is.False, "the default flags never register with CUDA");
        using var buffer = PinnedHostBuffer.Allocate(1 << 16, HostAllocationFlags.Default | HostAllocationFlags.CudaRegister);
        Assert.That(buffer.IsCudaRegistered, Is.EqualTo(PinnedHostBuffer.CudaDriverAvailable));
    }

    [Test]
    public void RangesAndMemoryCoverTheBuffer()
    {
        RequireShim();
        using var buffer = PinnedHostBuffer.Allocate(3 * 4096 + 10);
        buffer.AsSpan(4096, 10).Fill(0x5A);
        var memory = buffer.AsMemory(4096, 10);
        Assert.That(memory.Span.ToArray(), Is.All.EqualTo(0x5A));
        using (var pin = memory.Pin())
        {
            unsafe
            {
                Assert.That((nint)pin.Pointer, Is.EqualTo(buffer.Pointer + 4096));
            }
        }
        Assert.That(buffer.AsMemory().Length, Is.EqualTo(buffer.Length));
        Assert.Throws<ArgumentOutOfRangeException>(() => buffer.AsSpan(buffer.Length - 5, 10));
        Assert.Throws<ArgumentOutOfRangeException>(() => buffer.AsSpan(-1, 1));
    }

    [Test]
    public void PinKeepsTheBufferAliveUntilReleased()
    {
        RequireShim();
        var buffer = PinnedHostBuffer.Allocate(4096);
        var pin = buffer.AsMemory().Pin();
        buffer.Dispose();
        Assert.Throws<ObjectDisposedException>(() => _ = buffer.Pointer);
        unsafe
        {
            ((byte*)pin.Pointer)[0] = 1; // still mapped: the pin holds a reference
        }
        pin.Dispose();
        Assert.That(buffer.IsClosed, Is.True);
    }

    [Test]
    public void DisposeReleasesAndDoubleDisposeIsSafe()
    {
        RequireShim();
        var buffer = PinnedHostBuffer.Allocate(8192);
        buffer.Dispose();
        Assert.That(buffer.IsClosed, Is.True);
        Assert.DoesNotThrow(buffer.Dispose);
        Assert.Throws<ObjectDisposedException>(() => _ = buffer.Pointer);
        Assert.Throws<ObjectDisposedException>(() => buffer.AsSpan());
        Assert.Throws<ObjectDisposedException>(() => buffer.AsMemory());

        var managed = PinnedHostBuffer.AllocateManaged(10);
        managed.Dispose();
        Assert.DoesNotThrow(managed.Dispose);
    }

    [Test]
    public void InvalidLengthsAreRejected()
    {
        Assert.Throws<ArgumentOutOfRangeException>(() => PinnedHostBuffer.AllocateManaged(0));
        Assert.Throws<ArgumentOutOfRangeException>(() => PinnedHostBuffer.Allocate(0));
        Assert.Throws<ArgumentOutOfRangeException>(() => PinnedHostBuffer.Allocate(-1));
    }

    [Test]
    public void ImpossibleAllocationThrowsWithTheNativeDetail()
    {
        RequireShim();
        var ex = Assert.Throws<InsufficientMemoryException>(() => PinnedHostBuffer.Allocate(long.MaxValue / 2, HostAllocationFlags.None));
        Assert.That(ex!.Message, Does.Contain("mmap"));
    }

    [Test]
    public void ShimAvailabilityIsConsistent()
    {
        Assert.That(PinnedHostBuffer.NativeShimLoadError, PinnedHostBuffer.NativeShimAvailable ? Is.Null : Is.Not.Null);
    }

    internal static void Fill(Span<byte> span, byte seed)
    {
        for (var i = 0; i < span.Length; i++)
            span[i] = (byte)(seed + i * 31);
    }

    internal static bool Verify(ReadOnlySpan<byte> span, byte seed)
    {
        for (var i = 0; i < span.Length; i++)
        {
            if (span[i] != (byte)(seed + i * 31))
                return false;
        }
        return true;
    }
}
