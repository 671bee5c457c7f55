namespace CryptoTensors.Gpu.Tests;

/// <summary>The one-line form <see cref="SkipReasonsAttribute"/> prints a skip reason in.</summary>
public class SkipReasonsTests
{
    [Test]
    public void AReasonOverSeveralLinesIsPrintedOnOne()
        => Assert.That(SkipReasonsAttribute.OneLine("needs a GPU:\n  trace line 1\r\n\ttrace line 2  "), Is.EqualTo("needs a GPU: trace line 1 trace line 2"));

    [TestCase(null)]
    [TestCase("")]
    [TestCase(" \n ")]
    public void AMissingReasonIsSaidToBeMissing(string? reason)
        => Assert.That(SkipReasonsAttribute.OneLine(reason), Is.EqualTo("(no reason given)"));
}
