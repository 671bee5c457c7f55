using CryptoTensors.Gpu.Loading.Native;

namespace CryptoTensors.Gpu.Tests.Loading;

public class PinnedMemoryPoolTests
{
    [SetUp]
    public void RequireShim() => PinnedHostBufferTests.RequireShim();

    [Test]
    public void ReacquireReturnsTheSameAddress()
    {
        using var pool = new PinnedMemoryPool(16 << 20);
        nint first;
        using (var buffer = pool.Acquire(1_000_000))
        {
            Assert.That(buffer.IsPooled, Is.True);
            first = buffer.Pointer;
            PinnedHostBufferTests.Fill(buffer.AsSpan(), 1);
        }
        using (var again = pool.Acquire(1_000_000))
        {
            Assert.That(again.Pointer, Is.EqualTo(first));
            Assert.That(again.Length, Is.EqualTo(1_000_000));
            Assert.That(PinnedHostBufferTests.Verify(again.AsSpan(), 1), Is.True, "reused pages keep their contents");
        }
        using (var smaller = pool.Acquire(700_000))
            Assert.That(smaller.Pointer, Is.EqualTo(first));

        var stats = pool.GetStatistics();
        Assert.Multiple(() =>
        {
            Assert.That(stats.Misses, Is.EqualTo(1));
            Assert.That(stats.Hits, Is.EqualTo(2));
            Assert.That(stats.BuffersInUse, Is.Zero);
            Assert.That(stats.BuffersCached, Is.EqualTo(1));
            Assert.That(stats.BytesCached, Is.EqualTo(1_003_520)); // page rounded
            Assert.That(stats.BytesHeld, Is.EqualTo(stats.BytesCached));
        });
    }

    [Test]
    public void ConcurrentAcquiresGetDistinctBuffers()
    {
        using var pool = new PinnedMemoryPool(16 << 20);
        using var a = pool.Acquire(4096);
        using var b = pool.Acquire(4096);
        Assert.That(a.Pointer, Is.Not.EqualTo(b.Pointer));
        var stats = pool.GetStatistics();
        Assert.That((stats.BuffersInUse, stats.BytesInUse, stats.Misses), Is.EqualTo((2L, 8192L, 2L)));
    }

    [Test]
    public void ReleasesBeyondTheCacheBoundAreFreed()
    {
        using var pool = new PinnedMemoryPool(1 << 20);
        pool.Acquire(2 << 20).Dispose();
        var stats = pool.GetStatistics();
        Assert.That((stats.BuffersCached, stats.Evictions), Is.EqualTo((0L, 1L)));

        pool.Acquire(4096).Dispose();
        pool.Trim();
        stats = pool.GetStatistics();
        Assert.That((stats.BuffersCached, stats.BytesCached, stats.Evictions), Is.EqualTo((0L, 0L, 2L)));
    }

    [Test]
    public void DisposeIsSafeAndDefersWhileBuffersAreOut()
    {
        var pool = new PinnedMemoryPool(1 << 20);
        var buffer = pool.Acquire(10_000);
        pool.Dispose();
        Assert.DoesNotThrow(pool.Dispose);
        Assert.Throws<ObjectDisposedException>(() => pool.Acquire(10));
        Assert.Throws<ObjectDisposedException>(() => pool.GetStatistics());

        buffer.AsSpan().Fill(7); // the pool's native state lives until the last buffer is returned
        buffer.Dispose();
        Assert.DoesNotThrow(buffer.Dispose);
    }

    [Test]
    public void ParallelUseIsConsistent()
    {
        using var pool = new PinnedMemoryPool(8 << 20, HostAllocationFlags.Touch);
        Parallel.For(0, 400, new ParallelOptions { MaxDegreeOfParallelism = 4 }, i =>
        {
            using var buffer = pool.Acquire(1 + (i * 7919 % 200_000));
            buffer.AsSpan().Fill((byte)i);
            Assert.That(buffer.AsSpan()[^1], Is.EqualTo((byte)i));
        });
        var stats = pool.GetStatistics();
        Assert.That(stats.Hits + stats.Misses, Is.EqualTo(400));
        Assert.That(stats.BuffersInUse, Is.Zero);
    }
}
