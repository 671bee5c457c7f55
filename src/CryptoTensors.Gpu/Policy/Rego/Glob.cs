using System.Collections.Concurrent;
using System.Text;
using System.Text.RegularExpressions;

namespace CryptoTensors.Gpu.Policy.Rego;

/// <summary>
/// <c>glob.match(pattern, delimiters, match)</c> with OPA's (gobwas/glob) syntax: <c>*</c> (any run without a
/// delimiter), <c>**</c> (any run), <c>?</c> (one non-delimiter character), <c>[abc]</c>, <c>[a-z]</c>, <c>[!a]</c>,
/// <c>{alt1,alt2}</c> and <c>\</c> escapes. Delimiters: an array of strings (every character is a delimiter);
/// an empty array means <c>["."]</c>; <c>null</c> means none. The whole string must match.
/// </summary>
internal static class Glob
{
    private const int MaxCached = 512;
    private const int MaxBraceDepth = 32;
    private static readonly ConcurrentDictionary<string, Regex> Cache = new();

    public static Value Invoke(IBuiltinContext c, Value[] a)
    {
        var pattern = Builtins.Str(a, 0);
        var delims = Delimiters(a[1]);
        var s = Builtins.Str(a, 2);
        try
        {
            return Value.Bool(Compile(pattern, delims, c.RegexTimeout, c).IsMatch(s));
        }
        catch (RegexMatchTimeoutException)
        {
            throw new BuiltinException("glob match timed out");
        }
    }

    public static string Delimiters(Value v)
    {
        switch (v)
        {
            case NullValue:
                return "";
            case ArrayValue arr:
                if (arr.Items.Length == 0) return ".";
                var sb = new StringBuilder();
                foreach (var e in arr.Items)
                {
                    if (e is not StringValue s) throw new BuiltinException($"operand 2 must contain only strings but got {e.TypeName}");
                    sb.Append(s.Value);
                }
                return sb.ToString();
            default:
                throw new BuiltinException($"operand 2 must be array of strings or null but got {v.TypeName}");
        }
    }

    public static Regex Compile(string pattern, string delims, TimeSpan timeout, IBuiltinContext? context = null)
    {
        var key = delims + "\0" + pattern + "\0" + timeout.Ticks;
        if (Cache.TryGetValue(key, out var cached)) return cached;
        context?.Charge(RegexSupport.CompileCharge + pattern.Length);
        if (pattern.Length > 64 * 1024) throw new BuiltinException("glob pattern longer than 65536 characters");
        var sb = new StringBuilder("^");
        var i = 0;
        Translate(pattern, ref i, delims, sb, 0);
        if (i < pattern.Length) throw new BuiltinException($"invalid glob '{Shorten(pattern)}': unexpected '{pattern[i]}'");
        sb.Append('$');
        Regex re;
        try
        {
            re = new Regex(sb.ToString(), RegexOptions.CultureInvariant | RegexOptions.Singleline | RegexOptions.NonBacktracking, timeout);
        }
        catch (ArgumentException e)
        {
            throw new BuiltinException($"invalid glob '{Shorten(pattern)}': {e.Message}");
        }
        catch (NotSupportedException e)
        {
            // NonBacktracking refuses patterns whose automaton would be too large (e.g. 2,000 '?' or a 10,000-character
            // literal): a policy error, like any other invalid pattern, never an unhandled exception.
            throw new BuiltinException($"glob '{Shorten(pattern)}' ({pattern.Length} characters) is too complex to match in bounded time: {e.Message}");
        }
        if (Cache.Count < MaxCached && key.Length <= 1024) Cache.TryAdd(key, re);
        return re;
    }

    /// <summary>A pattern as quoted in a message: at most 80 characters.</summary>
    private static string Shorten(string pattern) => pattern.Length <= 80 ? pattern : string.Concat(pattern.AsSpan(0, 77), "...");

    private static void Translate(string p, ref int i, string delims, StringBuilder sb, int depth)
    {
        var notDelim = delims.Length == 0 ? "." : "[^" + EscapeClass(delims) + "]";
        while (i < p.Length)
        {
            var c = p[i];
            if (depth > 0 && c is ',' or '}') return;
            switch (c)
            {
                case '*':
                    if (i + 1 < p.Length && p[i + 1] == '*')
                    {
                        sb.Append(".*");
                        i += 2;
                    }
                    else
                    {
                        sb.Append(notDelim).Append('*');
                        i++;
                    }
                    break;
                case '?':
                    sb.Append(notDelim);
                    i++;
                    break;
                case '[':
                    i = TranslateClass(p, i, sb);
                    break;
                case '{':
                    if (depth >= MaxBraceDepth) throw new BuiltinException($"invalid glob '{p}': '{{' nested too deeply");
                    i++;
                    sb.Append("(?:");
                    while (true)
                    {
                        Translate(p, ref i, delims, sb, depth + 1);
                        if (i >= p.Length) throw new BuiltinException($"invalid glob '{p}': unclosed '{{'");
                        if (p[i] == '}')
                        {
                            i++;
                            break;
                        }
                        sb.Append('|');
                        i++;
                    }
                    sb.Append(')');
                    break;
                case '\\':
                    if (i + 1 >= p.Length) throw new BuiltinException($"invalid glob '{p}': trailing '\\'");
                    sb.Append(Regex.Escape(p[i + 1].ToString()));
                    i += 2;
                    break;
                default:
                    sb.Append(Regex.Escape(c.ToString()));
                    i++;
                    break;
            }
        }
    }

    private static int TranslateClass(string p, int i, StringBuilder sb)
    {
        var start = i;
        i++;
        var negate = i < p.Length && p[i] is '!' or '^';
        if (negate) i++;
        var cls = new StringBuilder(negate ? "[^" : "[");
        var any = false;
        while (i < p.Length && p[i] != ']')
        {
            var ch = p[i];
            if (ch == '\\')
            {
                if (i + 1 >= p.Length) break;
                ch = p[++i];
            }
            if (i + 2 < p.Length && p[i + 1] == '-' && p[i + 2] != ']')
            {
                var hi = p[i + 2];
                if (hi < ch) throw new BuiltinException($"invalid glob '{p}': bad range '{ch}-{hi}'");
                cls.Append(EscapeClass(ch.ToString())).Append('-').Append(EscapeClass(hi.ToString()));
                i += 3;
            }
            else
            {
                cls.Append(EscapeClass(ch.ToString()));
                i++;
            }
            any = true;
        }
        if (i >= p.Length || !any) throw new BuiltinException($"invalid glob '{p}': unclosed or empty '[' at {start}");
        sb.Append(cls).Append(']');
        return i + 1;
    }

    private static string EscapeClass(string s)
    {
        var sb = new StringBuilder();
        foreach (var ch in s)
        {
            if (ch is '\\' or ']' or '[' or '^' or '-') sb.Append('\\');
            sb.Append(ch);
        }
        return sb.ToString();
    }
}
