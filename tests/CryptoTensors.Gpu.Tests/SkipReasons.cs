using NUnit.Framework.Interfaces;
using NUnit.Framework.Internal;

[assembly: CryptoTensors.Gpu.Tests.SkipReasons]

namespace CryptoTensors.Gpu.Tests;

/// <summary>
/// Prints the reason of every skipped test, one line each, where the default <c>dotnet test</c> output shows it.
/// </summary>
/// <remarks>
/// At its default (minimal) verbosity the VSTest console logger prints a skipped test as "Skipped Name [1 ms]", without
/// the reason: the NUnit adapter sends the reason as an informational message, shown only at normal verbosity, which
/// also lists every passed test. The adapter sends what a test writes to <see cref="TestContext.Error"/> as a warning,
/// and the console logger prints warnings at minimal verbosity. This action, on the assembly, runs once after all of
/// its tests: it walks their results and writes "Skipped Name: reason" for each skipped (or inconclusive) test to that
/// stream, skips inherited from a fixture's one-time set-up included. (An assembly action adds no suite of its own, so
/// a <c>--filter</c> cannot select every test by matching its name, as it could a root set-up fixture's.)
/// </remarks>
[AttributeUsage(AttributeTargets.Assembly)]
internal sealed class SkipReasonsAttribute : Attribute, ITestAction
{
    /// <summary>Once, around the whole assembly.</summary>
    public ActionTargets Targets => ActionTargets.Suite;

    /// <summary>Nothing before the tests.</summary>
    public void BeforeTest(ITest test)
    {
    }

    /// <summary>Writes one line per skipped test of the assembly to <see cref="TestContext.Error"/>.</summary>
    public void AfterTest(ITest test)
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
