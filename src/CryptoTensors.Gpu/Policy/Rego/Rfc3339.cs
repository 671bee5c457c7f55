namespace CryptoTensors.Gpu.Policy.Rego;

/// <summary>RFC 3339 timestamps (<c>2006-01-02T15:04:05.999999999Z07:00</c>) to nanoseconds since the Unix epoch.</summary>
internal static class Rfc3339
{
    public static long ParseNs(string s)
    {
        // YYYY-MM-DDTHH:MM:SS[.frac](Z|+HH:MM|-HH:MM)
        if (s.Length < 20 || s[4] != '-' || s[7] != '-' || s[10] != 'T' || s[13] != ':' || s[16] != ':') throw Invalid(s);
        var year = Digits(s, 0, 4);
        var month = Digits(s, 5, 2);
        var day = Digits(s, 8, 2);
        var hour = Digits(s, 11, 2);
        var minute = Digits(s, 14, 2);
        var second = Digits(s, 17, 2);
        var i = 19;
        long frac = 0;
        if (s[i] == '.')
        {
            i++;
            var start = i;
            var scale = 100_000_000L;
            while (i < s.Length && char.IsAsciiDigit(s[i]))
            {
                frac += (s[i] - '0') * scale;
                scale /= 10;
                i++;
            }
            if (i == start) throw Invalid(s);
        }
        if (i >= s.Length) throw Invalid(s);
        long offsetSeconds = 0;
        if (s[i] == 'Z')
        {
            i++;
        }
        else if (s[i] is '+' or '-')
        {
            if (i + 6 != s.Length || s[i + 3] != ':') throw Invalid(s);
            var oh = Digits(s, i + 1, 2);
            var om = Digits(s, i + 4, 2);
            if (oh > 23 || om > 59) throw Invalid(s);
            offsetSeconds = (oh * 3600L + om * 60L) * (s[i] == '-' ? -1 : 1);
            i += 6;
        }
        else
        {
            throw Invalid(s);
        }
        if (i != s.Length) throw Invalid(s);
        if (year < 1 || month is < 1 or > 12 || day < 1 || day > DateTime.DaysInMonth(year, month) || hour > 23 || minute > 59 || second > 59)
            throw new BuiltinException($"parsing time \"{s}\": value out of range");
        var utc = new DateTime(year, month, day, hour, minute, second, DateTimeKind.Utc);
        var seconds = (utc.Ticks - DateTime.UnixEpoch.Ticks) / TimeSpan.TicksPerSecond - offsetSeconds;
        try
        {
            return checked(seconds * 1_000_000_000L + frac);
        }
        catch (OverflowException)
        {
            throw new BuiltinException($"time \"{s}\" is outside the range of nanosecond timestamps");
        }
    }

    private static int Digits(string s, int at, int n)
    {
        var v = 0;
        for (var i = at; i < at + n; i++)
        {
            if (i >= s.Length || !char.IsAsciiDigit(s[i])) throw Invalid(s);
            v = v * 10 + (s[i] - '0');
        }
        return v;
    }

    private static BuiltinException Invalid(string s) => new($"parsing time \"{s}\" as RFC 3339 failed");
}
