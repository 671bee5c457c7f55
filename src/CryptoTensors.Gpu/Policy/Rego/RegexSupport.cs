using System.Collections.Concurrent;
using System.Text.RegularExpressions;

namespace CryptoTensors.Gpu.Policy.Rego;

/// <summary>
/// <c>regex.match</c> on .NET regular expressions, compiled with <see cref="RegexOptions.NonBacktracking"/>
/// (linear-time matching like RE2, plus a timeout) and cached.
/// </summary>
/// <remarks>
/// RE2 (OPA) and .NET syntax differ: RE2's <c>(?P&lt;name&gt;...)</c> is rewritten to <c>(?&lt;name&gt;...)</c>;
/// backreferences, lookarounds and atomic groups are rejected (RE2 has none either); <c>\d</c>, <c>\w</c> and
/// <c>\s</c> match Unicode classes in .NET but ASCII in RE2; POSIX classes (<c>[[:alpha:]]</c>) and <c>\z</c>-style
/// details follow .NET. Matching is unanchored, as in OPA.
/// </remarks>
internal static class RegexSupport
{
    private const int MaxCached = 512;
    private const int MaxCachedPatternLength = 1024;
    private const int MaxPatternLength = 64 * 1024;

    /// <summary>Steps charged for compiling a pattern that is not cached (a compilation costs far more than a match).</summary>
    internal const int CompileCharge = 256;
    private static readonly ConcurrentDictionary<(string, TimeSpan), Regex> Cache = new();

    public static Regex Get(string pattern, TimeSpan timeout, IBuiltinContext? context = null)
    {
        if (Cache.TryGetValue((pattern, timeout), out var cached)) return cached;
        context?.Charge(CompileCharge + pattern.Length);
        if (pattern.Length > MaxPatternLength) throw new BuiltinException($"regular expression longer than {MaxPatternLength} characters");
        Regex re;
        try
        {
            re = new Regex(pattern.Replace("(?P<", "(?<", StringComparison.Ordinal),
                RegexOptions.CultureInvariant | RegexOptions.NonBacktracking, timeout);
        }
        catch (ArgumentException e)
        {
            throw new BuiltinException($"invalid regular expression '{pattern}': {e.Message}");
        }
        catch (NotSupportedException e)
        {
            throw new BuiltinException($"unsupported regular expression '{pattern}': {e.Message}");
        }
        if (Cache.Count < MaxCached && pattern.Length <= MaxCachedPatternLength) Cache.TryAdd((pattern, timeout), re);
        return re;
    }

    public static bool IsMatch(string pattern, string value, IBuiltinContext context)
    {
        var timeout = context.RegexTimeout;
        try
        {
            return Get(pattern, timeout, context).IsMatch(value);
        }
        catch (RegexMatchTimeoutException)
        {
            throw new BuiltinException($"regular expression match timed out after {timeout.TotalMilliseconds} ms");
        }
    }
}
