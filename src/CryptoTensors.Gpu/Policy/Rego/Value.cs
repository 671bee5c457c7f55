using System.Globalization;
using System.Text;

namespace CryptoTensors.Gpu.Policy.Rego;

/// <summary>The Rego value kinds, in Rego's sort order (null &lt; boolean &lt; number &lt; string &lt; array &lt; object &lt; set).</summary>
internal enum ValueKind
{
    Null = 0,
    Boolean = 1,
    Number = 2,
    String = 3,
    Array = 4,
    Object = 5,
    Set = 6,
}

/// <summary>
/// An immutable Rego value. Equality is structural (1 == 1.0), ordering is Rego's total order.
/// "Undefined" is not a value: evaluator APIs use a null <see cref="Value"/> reference for it.
/// </summary>
internal abstract class Value : IEquatable<Value>, IComparable<Value>
{
    /// <summary>The values of <paramref name="values"/> in Rego order, in a new array (the cached orders of sets and objects).</summary>
    protected static Value[] SortedCopy(IEnumerable<Value> values)
    {
        var a = values.ToArray();
        Array.Sort(a);
        return a;
    }

    /// <summary>Lexicographic order of two sequences of values (arrays, and sets in sorted order).</summary>
    protected static int CompareSequences(Value[] a, Value[] b)
    {
        var n = Math.Min(a.Length, b.Length);
        for (var i = 0; i < n; i++)
        {
            var c = a[i].CompareTo(b[i]);
            if (c != 0) return c;
        }
        return a.Length.CompareTo(b.Length);
    }

    public abstract ValueKind Kind { get; }

    /// <summary>Cost units of the value: 1 per node plus 1 per 16 string characters. Work on values is charged by it.</summary>
    public virtual long Size => 1;

    /// <summary>Nesting depth: 0 for scalars, 1 + the deepest element for collections.</summary>
    public virtual int Depth => 0;

    public static readonly NullValue Null = new();
    public static readonly BoolValue True = new(true);
    public static readonly BoolValue False = new(false);

    public static BoolValue Bool(bool b) => b ? True : False;

    /// <summary>True for every defined value except <c>false</c> (how an expression statement succeeds).</summary>
    public bool IsTruthy => !ReferenceEquals(this, False) && !(this is BoolValue { Value: false });

    public abstract bool Equals(Value? other);

    public sealed override bool Equals(object? obj) => obj is Value v && Equals(v);

    public abstract override int GetHashCode();

    public int CompareTo(Value? other)
    {
        if (other is null) return 1;
        if (Kind != other.Kind) return ((int)Kind).CompareTo((int)other.Kind);
        return CompareSameKind(other);
    }

    protected abstract int CompareSameKind(Value other);

    /// <summary>The Rego name of the type, as <c>type_name</c> returns it.</summary>
    public string TypeName => Kind switch
    {
        ValueKind.Null => "null",
        ValueKind.Boolean => "boolean",
        ValueKind.Number => "number",
        ValueKind.String => "string",
        ValueKind.Array => "array",
        ValueKind.Object => "object",
        _ => "set",
    };

    /// <summary>Rego's textual form: strings quoted, sets as <c>{1, 2}</c> or <c>set()</c>.</summary>
    public override string ToString()
    {
        var sb = new StringBuilder();
        Format(sb, quoteStrings: true);
        return sb.ToString();
    }

    /// <summary>Appends the textual form; top-level strings unquoted when <paramref name="quoteStrings"/> is false.</summary>
    public abstract void Format(StringBuilder sb, bool quoteStrings);

    /// <summary>Compares strings by Unicode code point (the order of their UTF-8 bytes), as Rego does.</summary>
    public static int CompareCodePoints(string a, string b)
    {
        var n = Math.Min(a.Length, b.Length);
        for (var i = 0; i < n; i++)
        {
            var ca = a[i];
            var cb = b[i];
            if (ca == cb) continue;
            // Surrogates (U+D800..U+DFFF) encode code points above U+FFFF: they sort after U+E000..U+FFFF.
            var sa = char.IsSurrogate(ca);
            var sb = char.IsSurrogate(cb);
            if (sa != sb) return sa ? 1 : -1;
            return ca.CompareTo(cb);
        }
        return a.Length.CompareTo(b.Length);
    }

    internal static void AppendQuoted(StringBuilder sb, string s)
    {
        sb.Append('"');
        foreach (var c in s)
        {
            switch (c)
            {
                case '"': sb.Append("\\\""); break;
                case '\\': sb.Append("\\\\"); break;
                case '\n': sb.Append("\\n"); break;
                case '\r': sb.Append("\\r"); break;
                case '\t': sb.Append("\\t"); break;
                case '\b': sb.Append("\\b"); break;
                case '\f': sb.Append("\\f"); break;
                default:
                    if (c < 0x20) sb.Append("\\u").Append(((int)c).ToString("x4", CultureInfo.InvariantCulture));
                    else sb.Append(c);
                    break;
            }
        }
        sb.Append('"');
    }
}

internal sealed class NullValue : Value
{
    internal NullValue() { }
    public override ValueKind Kind => ValueKind.Null;
    public override bool Equals(Value? other) => other is NullValue;
    public override int GetHashCode() => 0x6e756c6c;
    protected override int CompareSameKind(Value other) => 0;
    public override void Format(StringBuilder sb, bool quoteStrings) => sb.Append("null");
}

internal sealed class BoolValue : Value
{
    internal BoolValue(bool value) => Value = value;
    public bool Value { get; }
    public override ValueKind Kind => ValueKind.Boolean;
    public override bool Equals(Value? other) => other is BoolValue b && b.Value == Value;
    public override int GetHashCode() => Value ? 1 : 2;
    protected override int CompareSameKind(Value other) => Value.CompareTo(((BoolValue)other).Value);
    public override void Format(StringBuilder sb, bool quoteStrings) => sb.Append(Value ? "true" : "false");
}

/// <summary>A number: a 64-bit integer when exact, otherwise a double.</summary>
internal sealed class NumberValue : Value
{
    private static readonly NumberValue[] Small = CreateSmall();

    private NumberValue(long i)
    {
        IsInt = true;
        Int = i;
        Double = i;
    }

    private NumberValue(double d)
    {
        IsInt = false;
        Double = d;
    }

    public bool IsInt { get; }
    public long Int { get; }
    public double Double { get; }

    public override ValueKind Kind => ValueKind.Number;

    public static NumberValue Of(long i) => i is >= -1 and < 255 ? Small[i + 1] : new NumberValue(i);

    public static NumberValue Of(double d) => new(d);

    private static NumberValue[] CreateSmall()
    {
        var a = new NumberValue[256];
        for (var i = 0; i < a.Length; i++) a[i] = new NumberValue(i - 1);
        return a;
    }

    /// <summary>The integer value when this number is integral and fits in 64 bits.</summary>
    public bool TryGetInt64(out long value)
    {
        if (IsInt)
        {
            value = Int;
            return true;
        }
        return DoubleToInt64(Double, out value);
    }

    /// <summary>Converts an integral double within the 64-bit range.</summary>
    public static bool DoubleToInt64(double d, out long value)
    {
        if (Math.Floor(d) == d && d >= -9.2233720368547758e18 && d < 9.2233720368547758e18)
        {
            value = (long)d;
            return true;
        }
        value = 0;
        return false;
    }

    public override bool Equals(Value? other)
    {
        if (other is not NumberValue n) return false;
        if (IsInt && n.IsInt) return Int == n.Int;
        if (!IsInt && !n.IsInt) return Double == n.Double;
        var (i, d) = IsInt ? (Int, n.Double) : (n.Int, Double);
        return DoubleToInt64(d, out var di) && di == i;
    }

    public override int GetHashCode() => TryGetInt64(out var i) ? i.GetHashCode() : Double.GetHashCode();

    protected override int CompareSameKind(Value other)
    {
        var n = (NumberValue)other;
        if (IsInt && n.IsInt) return Int.CompareTo(n.Int);
        if (!IsInt && !n.IsInt) return Double.CompareTo(n.Double);
        return IsInt ? CompareExact(Int, n.Double) : -CompareExact(n.Int, Double);
    }

    /// <summary>Compares a 64-bit integer with a double without rounding the integer.</summary>
    private static int CompareExact(long i, double d)
    {
        if (d >= 9.2233720368547758e18) return -1; // d >= 2^63 > any long
        if (d < -9.2233720368547758e18) return 1;
        var floor = Math.Floor(d);
        var t = (long)floor;
        if (i != t) return i.CompareTo(t);
        return d > floor ? -1 : 0;
    }

    public override void Format(StringBuilder sb, bool quoteStrings)
    {
        if (IsInt)
        {
            sb.Append(Int.ToString(CultureInfo.InvariantCulture));
            return;
        }
        if (Math.Floor(Double) == Double && Math.Abs(Double) < 1e21)
        {
            sb.Append(Double.ToString("F0", CultureInfo.InvariantCulture));
            return;
        }
        sb.Append(Double.ToString("R", CultureInfo.InvariantCulture).Replace('E', 'e'));
    }
}

internal sealed class StringValue : Value
{
    public static readonly StringValue Empty = new("");

    public StringValue(string value) => Value = value;

    public string Value { get; }
    public override ValueKind Kind => ValueKind.String;
    public override long Size => 1 + Value.Length / 16;
    public override bool Equals(Value? other) => other is StringValue s && string.Equals(s.Value, Value, StringComparison.Ordinal);
    public override int GetHashCode() => StringComparer.Ordinal.GetHashCode(Value);
    protected override int CompareSameKind(Value other) => CompareCodePoints(Value, ((StringValue)other).Value);

    public override void Format(StringBuilder sb, bool quoteStrings)
    {
        if (quoteStrings) AppendQuoted(sb, Value);
        else sb.Append(Value);
    }
}

internal sealed class ArrayValue : Value
{
    public static readonly ArrayValue Empty = new([]);

    private readonly long _size;
    private readonly int _depth;

    public ArrayValue(Value[] items)
    {
        Items = items;
        _size = 1;
        foreach (var v in items)
        {
            _size += v.Size;
            _depth = Math.Max(_depth, v.Depth);
        }
        _depth++;
    }

    public Value[] Items { get; }
    public override ValueKind Kind => ValueKind.Array;
    public override long Size => _size;
    public override int Depth => _depth;

    public override bool Equals(Value? other)
    {
        if (other is not ArrayValue a || a.Items.Length != Items.Length) return false;
        for (var i = 0; i < Items.Length; i++)
        {
            if (!Items[i].Equals(a.Items[i])) return false;
        }
        return true;
    }

    public override int GetHashCode()
    {
        var h = new HashCode();
        foreach (var v in Items) h.Add(v.GetHashCode());
        return h.ToHashCode();
    }

    protected override int CompareSameKind(Value other)
    {
        return CompareSequences(Items, ((ArrayValue)other).Items);
    }

    public override void Format(StringBuilder sb, bool quoteStrings)
    {
        sb.Append('[');
        for (var i = 0; i < Items.Length; i++)
        {
            if (i > 0) sb.Append(", ");
            Items[i].Format(sb, true);
        }
        sb.Append(']');
    }
}

internal sealed class ObjectValue : Value
{
    public static readonly ObjectValue Empty = new(new Dictionary<Value, Value>());

    private readonly long _size;
    private readonly int _depth;
    private Value[]? _sortedKeys;

    /// <summary>Wraps <paramref name="map"/>, which must not be changed afterwards.</summary>
    public ObjectValue(Dictionary<Value, Value> map)
    {
        Map = map;
        _size = 1;
        foreach (var (k, v) in map)
        {
            _size += k.Size + v.Size;
            _depth = Math.Max(_depth, Math.Max(k.Depth, v.Depth));
        }
        _depth++;
    }

    /// <summary>The members; enumeration (insertion order) is the iteration order of <c>some k, v in obj</c>.</summary>
    public Dictionary<Value, Value> Map { get; }
    public override ValueKind Kind => ValueKind.Object;
    public override long Size => _size;
    public override int Depth => _depth;

    /// <summary>The keys in Rego order (for comparison and formatting).</summary>
    public Value[] SortedKeys => _sortedKeys ??= SortedCopy(Map.Keys);

    public override bool Equals(Value? other)
    {
        if (other is not ObjectValue o || o.Map.Count != Map.Count) return false;
        foreach (var (k, v) in Map)
        {
            if (!o.Map.TryGetValue(k, out var ov) || !v.Equals(ov)) return false;
        }
        return true;
    }

    public override int GetHashCode()
    {
        var h = 0x6f626a;
        foreach (var (k, v) in Map) h += HashCode.Combine(k.GetHashCode(), v.GetHashCode());
        return h;
    }

    protected override int CompareSameKind(Value other)
    {
        var o = (ObjectValue)other;
        var ka = SortedKeys;
        var kb = o.SortedKeys;
        var n = Math.Min(ka.Length, kb.Length);
        for (var i = 0; i < n; i++)
        {
            var c = ka[i].CompareTo(kb[i]);
            if (c != 0) return c;
            c = Map[ka[i]].CompareTo(o.Map[kb[i]]);
            if (c != 0) return c;
        }
        return ka.Length.CompareTo(kb.Length);
    }

    public override void Format(StringBuilder sb, bool quoteStrings)
    {
        sb.Append('{');
        var first = true;
        foreach (var k in SortedKeys)
        {
            if (!first) sb.Append(", ");
            first = false;
            k.Format(sb, true);
            sb.Append(": ");
            Map[k].Format(sb, true);
        }
        sb.Append('}');
    }
}

internal sealed class SetValue : Value
{
    public static readonly SetValue Empty = new(new HashSet<Value>());

    private readonly long _size;
    private readonly int _depth;
    private Value[]? _sorted;

    /// <summary>Wraps <paramref name="items"/>, which must not be changed afterwards.</summary>
    public SetValue(HashSet<Value> items)
    {
        Items = items;
        _size = 1;
        foreach (var v in items)
        {
            _size += v.Size;
            _depth = Math.Max(_depth, v.Depth);
        }
        _depth++;
    }

    /// <summary>The elements; enumeration (insertion order) is the iteration order of <c>some x in set</c>.</summary>
    public HashSet<Value> Items { get; }
    public override ValueKind Kind => ValueKind.Set;
    public override long Size => _size;
    public override int Depth => _depth;

    /// <summary>The elements in Rego order (for comparison and formatting).</summary>
    public Value[] Sorted => _sorted ??= SortedCopy(Items);

    public override bool Equals(Value? other) => other is SetValue s && s.Items.Count == Items.Count && Items.SetEquals(s.Items);

    public override int GetHashCode()
    {
        var h = 0x736574;
        foreach (var v in Items) h += v.GetHashCode();
        return h;
    }

    protected override int CompareSameKind(Value other)
    {
        return CompareSequences(Sorted, ((SetValue)other).Sorted);
    }

    public override void Format(StringBuilder sb, bool quoteStrings)
    {
        if (Items.Count == 0)
        {
            sb.Append("set()");
            return;
        }
        sb.Append('{');
        var first = true;
        foreach (var v in Sorted)
        {
            if (!first) sb.Append(", ");
            first = false;
            v.Format(sb, true);
        }
        sb.Append('}');
    }
}
