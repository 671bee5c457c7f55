using System.Globalization;
using System.Text;

namespace CryptoTensors.Gpu.Policy.Rego;

/// <summary>A built-in failed (wrong operand type, invalid pattern, ...): an evaluation error, never "undefined".</summary>
internal sealed class BuiltinException(string message) : Exception(message);

/// <summary>What a built-in may ask of the running evaluation.</summary>
internal interface IBuiltinContext
{
    /// <summary>Nanoseconds since the Unix epoch, fixed for one evaluation.</summary>
    long NowNs();

    /// <summary>Counts work against the evaluation step limit (e.g. one unit per 16 characters produced).</summary>
    void Charge(long units);

    /// <summary>Timeout of one regular-expression or glob match.</summary>
    TimeSpan RegexTimeout { get; }
}

/// <summary>A built-in function: fixed arity; returns null for "undefined"; throws <see cref="BuiltinException"/> on error.</summary>
internal sealed class Builtin(string name, int arity, Func<IBuiltinContext, Value[], Value?> invoke)
{
    public string Name { get; } = name;
    public int Arity { get; } = arity;
    public Func<IBuiltinContext, Value[], Value?> Invoke { get; } = invoke;
}

/// <summary>
/// The supported built-ins. Unknown names are rejected at compile time. Built-in errors are strict
/// (an evaluation error), unlike OPA's default of treating them as undefined: a policy cannot be
/// satisfied through a failing built-in.
/// </summary>
internal static class Builtins
{
    private static readonly Dictionary<string, Builtin> Table = Create();

    public static bool TryGet(string name, out Builtin builtin) => Table.TryGetValue(name, out builtin!);

    public static IEnumerable<string> Names => Table.Keys;

    private static Dictionary<string, Builtin> Create()
    {
        var list = new Builtin[]
        {
            new("count", 1, (_, a) => Count(a[0])),
            new("startswith", 2, (_, a) => Value.Bool(Str(a, 0).StartsWith(Str(a, 1), StringComparison.Ordinal))),
            new("endswith", 2, (_, a) => Value.Bool(Str(a, 0).EndsWith(Str(a, 1), StringComparison.Ordinal))),
            new("contains", 2, (_, a) => Value.Bool(Str(a, 0).Contains(Str(a, 1), StringComparison.Ordinal))),
            new("lower", 1, (_, a) => new StringValue(Str(a, 0).ToLowerInvariant())),
            new("upper", 1, (_, a) => new StringValue(Str(a, 0).ToUpperInvariant())),
            new("trim_space", 1, (_, a) => new StringValue(Str(a, 0).Trim())),
            new("concat", 2, Concat),
            new("split", 2, Split),
            new("sprintf", 2, Sprintf.Invoke),
            new("regex.match", 2, (c, a) => Value.Bool(RegexSupport.IsMatch(Str(a, 0), Str(a, 1), c))),
            new("glob.match", 3, Glob.Invoke),
            new("time.now_ns", 0, (c, _) => NumberValue.Of(c.NowNs())),
            new("time.parse_rfc3339_ns", 1, (_, a) => NumberValue.Of(Rfc3339.ParseNs(Str(a, 0)))),
            new("semver.compare", 2, (_, a) => NumberValue.Of(Semver.Compare(Str(a, 0), Str(a, 1)))),
            new("semver.is_valid", 1, (_, a) => Value.Bool(a[0] is StringValue s && Semver.IsValid(s.Value))),
            new("object.get", 3, ObjectGet),
            new("type_name", 1, (_, a) => new StringValue(a[0].TypeName)),
            new("sum", 1, Sum),
            new("max", 1, (_, a) => Extreme(a[0], +1)),
            new("min", 1, (_, a) => Extreme(a[0], -1)),
            new("abs", 1, (_, a) => Abs(a[0])),
            new("to_number", 1, (_, a) => ToNumber(a[0])),
        };
        return list.ToDictionary(b => b.Name, StringComparer.Ordinal);
    }

    internal static string Str(Value[] a, int i) => a[i] is StringValue s
        ? s.Value
        : throw new BuiltinException($"operand {i + 1} must be string but got {a[i].TypeName}");

    private static Value Count(Value v) => v switch
    {
        StringValue s => NumberValue.Of(RuneCount(s.Value)),
        ArrayValue a => NumberValue.Of(a.Items.Length),
        ObjectValue o => NumberValue.Of(o.Map.Count),
        SetValue s => NumberValue.Of(s.Items.Count),
        _ => throw new BuiltinException($"operand 1 must be one of {{string, array, object, set}} but got {v.TypeName}"),
    };

    internal static int RuneCount(string s)
    {
        var n = 0;
        for (var i = 0; i < s.Length; i++)
        {
            if (char.IsHighSurrogate(s[i]) && i + 1 < s.Length && char.IsLowSurrogate(s[i + 1])) i++;
            n++;
        }
        return n;
    }

    private static IEnumerable<Value> Elements(Value v, int operand) => v switch
    {
        ArrayValue a => a.Items,
        SetValue s => s.Sorted,
        _ => throw new BuiltinException($"operand {operand} must be one of {{array, set}} but got {v.TypeName}"),
    };

    private static Value Concat(IBuiltinContext c, Value[] a)
    {
        var delim = Str(a, 0);
        // The output's length is known before it is built: charged first, so that a join whose result would be
        // gigabytes (a long delimiter between many parts) fails at the step limit instead of building it.
        long length = 0;
        var count = 0L;
        foreach (var e in Elements(a[1], 2))
        {
            if (e is not StringValue s) throw new BuiltinException($"operand 2 must contain only strings but got {e.TypeName}");
            length += s.Value.Length;
            count++;
        }
        if (count > 1) length += (count - 1) * (long)delim.Length;
        c.Charge(length / 16);
        var sb = new StringBuilder((int)Math.Min(length, int.MaxValue));
        var first = true;
        foreach (var e in Elements(a[1], 2))
        {
            if (!first) sb.Append(delim);
            first = false;
            sb.Append(((StringValue)e).Value);
        }
        return new StringValue(sb.ToString());
    }

    private static Value Split(IBuiltinContext c, Value[] a)
    {
        var s = Str(a, 0);
        var d = Str(a, 1);
        // Each part is a value of its own: one step per part, charged before any is built (a 4 MB input string split
        // by "" would otherwise build millions of values past the step limit).
        long count = 1;
        if (d.Length == 0)
        {
            count = 0;
            foreach (var _ in s.EnumerateRunes()) count++;
        }
        else
        {
            for (var at = s.IndexOf(d, StringComparison.Ordinal); at >= 0; at = s.IndexOf(d, at + d.Length, StringComparison.Ordinal)) count++;
        }
        c.Charge(count);
        string[] parts;
        if (d.Length == 0)
        {
            var runes = new List<string>((int)count);
            foreach (var r in s.EnumerateRunes()) runes.Add(r.ToString());
            parts = [.. runes];
        }
        else
        {
            parts = s.Split(d);
        }
        return new ArrayValue(Array.ConvertAll(parts, p => (Value)new StringValue(p)));
    }

    private static Value? ObjectGet(IBuiltinContext c, Value[] a)
    {
        if (a[0] is not ObjectValue obj) throw new BuiltinException($"operand 1 must be object but got {a[0].TypeName}");
        if (a[1] is ArrayValue path)
        {
            Value cur = obj;
            foreach (var step in path.Items)
            {
                if (cur is ObjectValue o && o.Map.TryGetValue(step, out var next)) cur = next;
                else return a[2];
            }
            return cur;
        }
        return obj.Map.TryGetValue(a[1], out var v) ? v : a[2];
    }

    private static Value Sum(IBuiltinContext c, Value[] a)
    {
        Value acc = NumberValue.Of(0);
        foreach (var e in Elements(a[0], 1))
        {
            if (e is not NumberValue) throw new BuiltinException($"operand 1 must contain only numbers but got {e.TypeName}");
            acc = Arithmetic(BinOp.Add, acc, e);
        }
        return acc;
    }

    private static Value? Extreme(Value coll, int sign)
    {
        Value? best = null;
        foreach (var e in Elements(coll, 1))
        {
            if (best is null || e.CompareTo(best) * sign > 0) best = e;
        }
        return best;
    }

    private static Value Abs(Value v)
    {
        if (v is not NumberValue n) throw new BuiltinException($"operand 1 must be number but got {v.TypeName}");
        if (n.IsInt) return n.Int == long.MinValue ? NumberValue.Of(-(double)n.Int) : NumberValue.Of(Math.Abs(n.Int));
        return NumberValue.Of(Math.Abs(n.Double));
    }

    private static Value ToNumber(Value v)
    {
        switch (v)
        {
            case NumberValue:
                return v;
            case NullValue:
                return NumberValue.Of(0);
            case BoolValue b:
                return NumberValue.Of(b.Value ? 1 : 0);
            case StringValue s:
                var t = s.Value;
                if (long.TryParse(t, NumberStyles.AllowLeadingSign, CultureInfo.InvariantCulture, out var l)) return NumberValue.Of(l);
                if (t.Length > 0 && !char.IsWhiteSpace(t[0]) && !char.IsWhiteSpace(t[^1])
                    && double.TryParse(t, NumberStyles.Float, CultureInfo.InvariantCulture, out var d) && double.IsFinite(d))
                    return NumberValue.Of(d);
                throw new BuiltinException($"invalid syntax: \"{t}\" is not a number");
            default:
                throw new BuiltinException($"operand 1 must be one of {{null, boolean, number, string}} but got {v.TypeName}");
        }
    }

    // ---- operators ----

    public static Value Compare(BinOp op, Value l, Value r) => op switch
    {
        BinOp.Eq => Value.Bool(l.Equals(r)),
        BinOp.Neq => Value.Bool(!l.Equals(r)),
        BinOp.Lt => Value.Bool(l.CompareTo(r) < 0),
        BinOp.Lte => Value.Bool(l.CompareTo(r) <= 0),
        BinOp.Gt => Value.Bool(l.CompareTo(r) > 0),
        BinOp.Gte => Value.Bool(l.CompareTo(r) >= 0),
        _ => Arithmetic(op, l, r),
    };

    /// <summary><c>+ - * / %</c> on numbers (exact 64-bit integers, else doubles); <c>-</c> on two sets is the difference.</summary>
    public static Value Arithmetic(BinOp op, Value l, Value r)
    {
        if (op == BinOp.Sub && l is SetValue ls && r is SetValue rs)
        {
            var diff = new HashSet<Value>(ls.Items);
            diff.ExceptWith(rs.Items);
            return new SetValue(diff);
        }
        if (l is not NumberValue a || r is not NumberValue b)
        {
            var bad = l is NumberValue ? r : l;
            throw new BuiltinException($"operator {BinaryExpr.Spell(op)}: operands must be numbers but got {bad.TypeName}");
        }
        if (a.IsInt && b.IsInt)
        {
            long x = a.Int, y = b.Int;
            switch (op)
            {
                case BinOp.Add:
                    var s = unchecked(x + y);
                    if (((x ^ s) & (y ^ s)) >= 0) return NumberValue.Of(s);
                    break;
                case BinOp.Sub:
                    var d = unchecked(x - y);
                    if (((x ^ y) & (x ^ d)) >= 0) return NumberValue.Of(d);
                    break;
                case BinOp.Mul:
                    var p = Math.BigMul(x, y, out var lo);
                    if ((p == 0 && lo >= 0) || (p == -1 && lo < 0)) return NumberValue.Of(lo);
                    break;
                case BinOp.Div:
                    if (y == 0) throw new BuiltinException("divide by zero");
                    if (y != -1 && x % y == 0) return NumberValue.Of(x / y);
                    if (y == -1 && x != long.MinValue) return NumberValue.Of(-x);
                    break;
                case BinOp.Mod:
                    if (y == 0) throw new BuiltinException("modulo by zero");
                    return NumberValue.Of(y == -1 ? 0 : x % y);
            }
        }
        else if (op == BinOp.Mod)
        {
            if (a.TryGetInt64(out var xi) && b.TryGetInt64(out var yi)) return Arithmetic(op, NumberValue.Of(xi), NumberValue.Of(yi));
            throw new BuiltinException("modulo on floating-point number");
        }
        var da = a.Double;
        var db = b.Double;
        var result = op switch
        {
            BinOp.Add => da + db,
            BinOp.Sub => da - db,
            BinOp.Mul => da * db,
            BinOp.Div => db == 0 ? throw new BuiltinException("divide by zero") : da / db,
            _ => throw new BuiltinException("unsupported operator"),
        };
        if (!double.IsFinite(result)) throw new BuiltinException($"operator {BinaryExpr.Spell(op)}: result out of range");
        return NumberValue.DoubleToInt64(result, out var ri) && Math.Abs(result) < 9.007199254740992e15 ? NumberValue.Of(ri) : NumberValue.Of(result);
    }

    public static Value Negate(Value v)
    {
        if (v is not NumberValue n) throw new BuiltinException($"unary minus: operand must be number but got {v.TypeName}");
        if (n.IsInt && n.Int != long.MinValue) return NumberValue.Of(-n.Int);
        return NumberValue.Of(-n.Double);
    }
}
