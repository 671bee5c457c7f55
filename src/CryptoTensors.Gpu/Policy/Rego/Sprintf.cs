using System.Globalization;
using System.Text;

namespace CryptoTensors.Gpu.Policy.Rego;

/// <summary>
/// <c>sprintf(format, args)</c> with Go-style verbs <c>%s %v %d %f %%</c>, flags <c>- + 0</c>, width and precision.
/// Differences from OPA (which prints Go's <c>%!verb(...)</c> markers): a missing or extra argument, an unknown verb
/// or <c>%d</c> on a non-integer is an evaluation error; <c>%f</c> accepts integers.
/// </summary>
internal static class Sprintf
{
    public static Value Invoke(IBuiltinContext c, Value[] a)
    {
        var fmt = Builtins.Str(a, 0);
        if (a[1] is not ArrayValue arr) throw new BuiltinException($"operand 2 must be array but got {a[1].TypeName}");
        var args = arr.Items;
        var sb = new StringBuilder(fmt.Length + 16);
        var next = 0;
        for (var i = 0; i < fmt.Length; i++)
        {
            var ch = fmt[i];
            if (ch != '%')
            {
                sb.Append(ch);
                continue;
            }
            if (++i >= fmt.Length) throw new BuiltinException("format ends with '%'");
            if (fmt[i] == '%')
            {
                sb.Append('%');
                continue;
            }
            bool minus = false, plus = false, zero = false;
            for (; i < fmt.Length && fmt[i] is '-' or '+' or '0'; i++)
            {
                switch (fmt[i])
                {
                    case '-': minus = true; break;
                    case '+': plus = true; break;
                    default: zero = true; break;
                }
            }
            var width = ReadInt(fmt, ref i);
            int? precision = null;
            if (i < fmt.Length && fmt[i] == '.')
            {
                i++;
                precision = ReadInt(fmt, ref i) ?? 0;
            }
            if (i >= fmt.Length) throw new BuiltinException("format ends inside a verb");
            var verb = fmt[i];
            if (next >= args.Length) throw new BuiltinException($"missing argument for %{verb}");
            var arg = args[next++];
            string text;
            var numeric = false;
            switch (verb)
            {
                case 's':
                case 'v':
                    var tmp = new StringBuilder();
                    arg.Format(tmp, quoteStrings: false);
                    text = tmp.ToString();
                    if (precision is { } p && verb == 's' && p < text.Length) text = text[..p];
                    break;
                case 'd':
                    if (arg is not NumberValue dn || !dn.TryGetInt64(out var l))
                        throw new BuiltinException($"%d needs an integer but got {arg}");
                    text = l.ToString(CultureInfo.InvariantCulture);
                    if (plus && l >= 0) text = "+" + text;
                    numeric = true;
                    break;
                case 'f':
                case 'F':
                    if (arg is not NumberValue fnum) throw new BuiltinException($"%f needs a number but got {arg.TypeName}");
                    var digits = precision ?? 6;
                    if (digits > 100) throw new BuiltinException("precision above 100");
                    text = fnum.IsInt
                        ? ((decimal)fnum.Int).ToString("F" + digits.ToString(CultureInfo.InvariantCulture), CultureInfo.InvariantCulture)
                        : fnum.Double.ToString("F" + digits.ToString(CultureInfo.InvariantCulture), CultureInfo.InvariantCulture);
                    if (plus && !text.StartsWith('-')) text = "+" + text;
                    numeric = true;
                    break;
                default:
                    throw new BuiltinException($"unsupported verb %{verb} (supported: %s %v %d %f %%)");
            }
            if (width is { } w && w > text.Length)
            {
                if (w > 4096) throw new BuiltinException("width above 4096");
                if (minus) text = text.PadRight(w);
                else if (zero && numeric)
                {
                    var sign = text.Length > 0 && text[0] is '-' or '+' ? text[..1] : "";
                    text = sign + text[sign.Length..].PadLeft(w - sign.Length, '0');
                }
                else text = text.PadLeft(w);
            }
            sb.Append(text);
            c.Charge(text.Length / 16);
        }
        if (next < args.Length) throw new BuiltinException($"{args.Length - next} extra argument(s) for the format");
        return new StringValue(sb.ToString());
    }

    private static int? ReadInt(string s, ref int i)
    {
        var start = i;
        var n = 0;
        while (i < s.Length && char.IsAsciiDigit(s[i]))
        {
            n = Math.Min(n * 10 + (s[i] - '0'), 1_000_000);
            i++;
        }
        return i > start ? n : null;
    }
}
