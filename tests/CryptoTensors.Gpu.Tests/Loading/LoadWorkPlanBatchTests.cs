using CryptoTensors.Gpu.Loading;

namespace CryptoTensors.Gpu.Tests.Loading;

/// <summary>How work items are grouped into scheduler iterations: runs of small items, large items alone, every item once and in order.</summary>
public class LoadWorkPlanBatchTests
{
    private static List<LoadWorkItem> Items(params int[] lengths) => lengths.Select((l, i) => new LoadWorkItem(i, 0, l, -1)).ToList();

    [Test]
    public void SmallItemsShareARunAndLargeOnesStandAlone()
    {
        var batches = LoadWorkPlan.Batches(Items(4096, 4096, 4096, 100_000, 4096, 0, 0), 10_000);
        Assert.That(batches, Is.EqualTo(new[] { (0, 3), (3, 4), (4, 7) }));
    }

    [Test]
    public void EveryItemIsCoveredOnceInOrder()
    {
        var rng = new Random(7);
        for (var n = 0; n < 200; n++)
        {
            var items = Items(Enumerable.Range(0, n).Select(_ => rng.Next(0, 3) == 0 ? rng.Next(0, 200_000) : rng.Next(0, 5000)).ToArray());
            var batches = LoadWorkPlan.Batches(items, ModelLoader.BatchBytes);
            var next = 0;
            foreach (var (first, end) in batches)
            {
                Assert.That(first, Is.EqualTo(next));
                Assert.That(end, Is.GreaterThan(first));
                next = end;
            }
            Assert.That(next, Is.EqualTo(items.Count));
        }
    }

    [Test]
    public void ManyEmptyItemsDoNotMakeOneUnboundedRun()
    {
        var batches = LoadWorkPlan.Batches(Items(new int[200_000]), 64 << 10);
        Assert.That(batches, Has.Count.GreaterThan(1));
    }
}
