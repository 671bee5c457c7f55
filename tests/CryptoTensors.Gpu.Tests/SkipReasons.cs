using NUnit.Framework.Interfaces;
using NUnit.Framework.Internal;

/// <summary>
/// Prints the reason of every skipped test, one line each, where the default <c>dotnet test</c> output shows it.
/// </summary>
/// <remarks>
/// At its default (minimal) verbosity the VSTest console logger prints a skipped test as "Skipped Name [1 ms]", without
/// the reason: the NUnit adapter sends the reason as an informational message, shown only at normal verbosity, which
/// also lists every passed test. The adapter sends what a test writes to <see cref="TestContext.Error"/> as a warning,
/// and the console logger prints warnings at minimal verbosity. This fixture, outside any namespace, wraps every test
/// of the assembly: once they have all run it walks their results and writes "Skipped Name: reason" for each skipped
/// (or inconclusive) test to that stream, skips inherited from a fixture's one-time set-up included.
/// </remarks>
[SetUpFixture]
public sealed class SkipReasons
{
    /// <summary>Writes one line per skipped test of the assembly to <see cref="TestContext.Error"/>.</summary>
    [OneTimeTearDown]
    public void ReportSkippedTests()
    {
        var lines = Lines(TestExecutionContext.CurrentContext.CurrentResult).ToList();
        if (lines.Count > 0) TestContext.Error.WriteLine(string.Join(Environment.NewLine, lines));
    }

    /// <summary>"Skipped Name: reason" for every skipped or inconclusive test case below <paramref name="result"/>.</summary>
    internal static IEnumerable<string> Lines(ITestResult result)
    {
        if (result.HasChildren)
        {
            foreach (var child in result.Children)
                foreach (var line in Lines(child)) yield return line;
        }
        else if (!result.Test.IsSuite && result.ResultState.Status is TestStatus.Skipped or TestStatus.Inconclusive)
        {
            yield return $"Skipped {result.Test.Name}: {OneLine(result.Message)}";
        }
    }

    /// <summary>The reason on one line: line breaks and runs of blanks become one space; none given says so.</summary>
    internal static string OneLine(string? message)
    {
        var words = (message ?? "").Split((char[]?)null, StringSplitOptions.RemoveEmptyEntries);
        return words.Length == 0 ? "(no reason given)" : string.Join(' ', words);
    }
}
