namespace CryptoTensors.Gpu.Policy.Rego;

/// <summary>Semantic Versioning 2.0.0 parsing and precedence (no leading <c>v</c>; build metadata ignored).</summary>
internal static class Semver
{
    private readonly record struct Version(string Major, string Minor, string Patch, string[] Pre);

    public static bool IsValid(string s) => TryParse(s, out _);

    public static int Compare(string a, string b)
    {
        if (!TryParse(a, out var x)) throw new BuiltinException($"operand 1: string \"{a}\" is not a valid SemVer");
        if (!TryParse(b, out var y)) throw new BuiltinException($"operand 2: string \"{b}\" is not a valid SemVer");
        var c = CompareNumeric(x.Major, y.Major);
        if (c == 0) c = CompareNumeric(x.Minor, y.Minor);
        if (c == 0) c = CompareNumeric(x.Patch, y.Patch);
        if (c == 0) c = ComparePre(x.Pre, y.Pre);
        return Math.Sign(c);
    }

    private static int CompareNumeric(string a, string b)
        => a.Length != b.Length ? a.Length.CompareTo(b.Length) : string.CompareOrdinal(a, b);

    private static int ComparePre(string[] a, string[] b)
    {
        if (a.Length == 0 || b.Length == 0) return b.Length.CompareTo(a.Length); // a release is above its pre-releases
        for (var i = 0; i < Math.Min(a.Length, b.Length); i++)
        {
            var an = IsNumeric(a[i]);
            var bn = IsNumeric(b[i]);
            var c = an && bn ? CompareNumeric(a[i], b[i]) : an ? -1 : bn ? 1 : string.CompareOrdinal(a[i], b[i]);
            if (c != 0) return c;
        }
        return a.Length.CompareTo(b.Length);
    }

    private static bool IsNumeric(string s)
    {
        foreach (var c in s)
        {
            if (!char.IsAsciiDigit(c)) return false;
        }
        return true;
    }

    private static bool TryParse(string s, out Version v)
    {
        v = default;
        var plus = s.IndexOf('+', StringComparison.Ordinal);
        if (plus >= 0)
        {
            foreach (var id in s[(plus + 1)..].Split('.'))
            {
                if (!IsIdentifier(id)) return false;
            }
            s = s[..plus];
        }
        var dash = s.IndexOf('-', StringComparison.Ordinal);
        string[] pre = [];
        if (dash >= 0)
        {
            pre = s[(dash + 1)..].Split('.');
            foreach (var id in pre)
            {
                if (!IsIdentifier(id) || (IsNumeric(id) && id.Length > 1 && id[0] == '0')) return false;
            }
            s = s[..dash];
        }
        var core = s.Split('.');
        if (core.Length != 3) return false;
        foreach (var n in core)
        {
            if (n.Length == 0 || !IsNumeric(n) || (n.Length > 1 && n[0] == '0')) return false;
        }
        v = new Version(core[0], core[1], core[2], pre);
        return true;
    }

    private static bool IsIdentifier(string id)
    {
        if (id.Length == 0) return false;
        foreach (var c in id)
        {
            if (!char.IsAsciiLetterOrDigit(c) && c != '-') return false;
        }
        return true;
    }
}
