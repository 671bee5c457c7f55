namespace CryptoTensors.Gpu.Policy.Rego;

// The syntax tree. The parser builds it with names unresolved; the compiler rebuilds expressions with names
// resolved (locals to frame slots, rules to groups, built-ins bound) and with Iterates computed.

/// <summary>An expression (a Rego term or an operator application).</summary>
internal abstract class Expr
{
    protected Expr(int line, int col, int height, bool iterates)
    {
        Line = line;
        Col = col;
        Height = height;
        Iterates = iterates;
    }

    public int Line { get; }
    public int Col { get; }

    /// <summary>Height of the tree below this node (1 for a leaf); bounded by the nesting limit.</summary>
    public int Height { get; }

    /// <summary>True when the expression can have more than one value (it contains an unbound index variable or <c>_</c>).</summary>
    public bool Iterates { get; }

    protected static int MaxHeight(Expr[] items)
    {
        var h = 0;
        foreach (var e in items) h = Math.Max(h, e.Height);
        return h;
    }

    protected static bool AnyIterates(Expr[] items)
    {
        foreach (var e in items)
        {
            if (e.Iterates) return true;
        }
        return false;
    }
}

internal sealed class ConstExpr(int line, int col, Value value) : Expr(line, col, 1, false)
{
    public Value Value { get; } = value;
}

internal enum VarKind
{
    /// <summary>As parsed: not yet resolved.</summary>
    Unresolved,
    /// <summary>A local variable in a frame slot.</summary>
    Local,
    /// <summary><c>_</c>: iterate without binding.</summary>
    Wildcard,
    /// <summary>The <c>input</c> document.</summary>
    Input,
    /// <summary>The value of a (non-function) rule of the package.</summary>
    Rule,
}

internal sealed class VarExpr : Expr
{
    public VarExpr(int line, int col, string name)
        : base(line, col, 1, false) => Name = name;

    private VarExpr(int line, int col, string name, VarKind kind, int slot, bool binds, RuleGroup? rule)
        : base(line, col, 1, binds || kind == VarKind.Wildcard)
    {
        Name = name;
        Kind = kind;
        Slot = slot;
        Binds = binds;
        Rule = rule;
    }

    public string Name { get; }
    public VarKind Kind { get; }
    public int Slot { get; }

    /// <summary>True at the occurrence that binds the variable (an index position while it is unbound).</summary>
    public bool Binds { get; }

    public RuleGroup? Rule { get; }

    public static VarExpr Local(VarExpr at, int slot, bool binds) => new(at.Line, at.Col, at.Name, VarKind.Local, slot, binds, null);
    public static VarExpr Wildcard(VarExpr at) => new(at.Line, at.Col, "_", VarKind.Wildcard, -1, false, null);
    public static VarExpr Input(int line, int col) => new(line, col, "input", VarKind.Input, -1, false, null);
    public static VarExpr RuleRef(int line, int col, RuleGroup rule) => new(line, col, rule.Name, VarKind.Rule, -1, false, rule);
}

/// <summary>
/// <c>head.a[b]...</c>: <see cref="Path"/> holds one expression per step (a string constant for <c>.name</c>).
/// Each step counts as one level of height, so evaluation recursion stays bounded by the nesting limit.
/// </summary>
internal sealed class RefExpr(int line, int col, Expr head, Expr[] path)
    : Expr(line, col, path.Length + Math.Max(head.Height, MaxHeight(path)), head.Iterates || AnyIterates(path))
{
    public Expr Head { get; } = head;
    public Expr[] Path { get; } = path;
}

internal sealed class CallExpr(int line, int col, string name, Expr[] args, Builtin? builtin = null, RuleGroup? function = null)
    : Expr(line, col, 1 + MaxHeight(args), AnyIterates(args))
{
    public string Name { get; } = name;
    public Expr[] Args { get; } = args;
    public Builtin? Builtin { get; } = builtin;
    public RuleGroup? Function { get; } = function;
}

internal sealed class ArrayExpr(int line, int col, Expr[] items)
    : Expr(line, col, 1 + MaxHeight(items), AnyIterates(items))
{
    public Expr[] Items { get; } = items;
}

internal sealed class SetExpr(int line, int col, Expr[] items)
    : Expr(line, col, 1 + MaxHeight(items), AnyIterates(items))
{
    public Expr[] Items { get; } = items;
}

internal sealed class ObjectExpr(int line, int col, Expr[] keys, Expr[] values)
    : Expr(line, col, 1 + Math.Max(MaxHeight(keys), MaxHeight(values)), AnyIterates(keys) || AnyIterates(values))
{
    public Expr[] Keys { get; } = keys;
    public Expr[] Values { get; } = values;
}

internal enum BinOp
{
    Eq,
    Neq,
    Lt,
    Lte,
    Gt,
    Gte,
    Add,
    Sub,
    Mul,
    Div,
    Mod,
}

internal sealed class BinaryExpr(int line, int col, BinOp op, Expr left, Expr right)
    : Expr(line, col, 1 + Math.Max(left.Height, right.Height), left.Iterates || right.Iterates)
{
    public BinOp Op { get; } = op;
    public Expr Left { get; } = left;
    public Expr Right { get; } = right;

    public static string Spell(BinOp op) => op switch
    {
        BinOp.Eq => "==",
        BinOp.Neq => "!=",
        BinOp.Lt => "<",
        BinOp.Lte => "<=",
        BinOp.Gt => ">",
        BinOp.Gte => ">=",
        BinOp.Add => "+",
        BinOp.Sub => "-",
        BinOp.Mul => "*",
        BinOp.Div => "/",
        _ => "%",
    };
}

internal sealed class NegExpr(int line, int col, Expr operand)
    : Expr(line, col, 1 + operand.Height, operand.Iterates)
{
    public Expr Operand { get; } = operand;
}

/// <summary><c>value in coll</c> or <c>key, value in coll</c> as a boolean expression.</summary>
internal sealed class MemberExpr(int line, int col, Expr? key, Expr value, Expr collection)
    : Expr(line, col, 1 + Math.Max(key?.Height ?? 0, Math.Max(value.Height, collection.Height)),
        (key?.Iterates ?? false) || value.Iterates || collection.Iterates)
{
    public Expr? Key { get; } = key;
    public Expr Value { get; } = value;
    public Expr Collection { get; } = collection;
}

/// <summary>One statement of a rule body.</summary>
internal abstract class Literal(int line, int col)
{
    public int Line { get; } = line;
    public int Col { get; } = col;

    /// <summary>True when the literal can succeed more than once (it must then be evaluated with a continuation).</summary>
    public abstract bool Iterates { get; }
}

/// <summary>An expression statement (succeeds when defined and not false), optionally negated with <c>not</c>.</summary>
internal sealed class ExprLit(int line, int col, Expr expr, bool negated) : Literal(line, col)
{
    public Expr Expr { get; } = expr;
    public bool Negated { get; } = negated;
    public override bool Iterates => !Negated && Expr.Iterates;
}

/// <summary><c>x := e</c>, or (after compilation) <c>x = e</c> with an unbound <c>x</c>.</summary>
internal sealed class AssignLit(int line, int col, VarExpr target, Expr value, bool declare) : Literal(line, col)
{
    public VarExpr Target { get; } = target;
    public Expr Value { get; } = value;
    public bool Declare { get; } = declare;
    public override bool Iterates => Value.Iterates;
}

/// <summary><c>a = b</c>; after compilation both sides are inputs and it is an equality test.</summary>
internal sealed class UnifyLit(int line, int col, Expr left, Expr right) : Literal(line, col)
{
    public Expr Left { get; } = left;
    public Expr Right { get; } = right;
    public override bool Iterates => Left.Iterates || Right.Iterates;
}

/// <summary><c>some v in coll</c> / <c>some k, v in coll</c>.</summary>
internal sealed class SomeInLit(int line, int col, VarExpr? key, VarExpr value, Expr collection) : Literal(line, col)
{
    public VarExpr? Key { get; } = key;
    public VarExpr Value { get; } = value;
    public Expr Collection { get; } = collection;
    public override bool Iterates => true;
}

/// <summary><c>some x, y</c>: declares variables (no-op at evaluation).</summary>
internal sealed class SomeDeclLit(int line, int col, VarExpr[] vars) : Literal(line, col)
{
    public VarExpr[] Vars { get; } = vars;
    public override bool Iterates => false;
}

/// <summary><c>every v in coll { body }</c> / <c>every k, v in coll { body }</c>.</summary>
internal sealed class EveryLit(int line, int col, VarExpr? key, VarExpr value, Expr domain, Literal[] body) : Literal(line, col)
{
    public VarExpr? Key { get; } = key;
    public VarExpr Value { get; } = value;
    public Expr Domain { get; } = domain;
    public Literal[] Body { get; } = body;
    public override bool Iterates => Domain.Iterates;
}

internal enum RuleKind
{
    Complete,
    PartialSet,
    Function,
}

/// <summary>One rule definition (head plus optional body).</summary>
internal sealed class RuleDef
{
    public required string Name { get; init; }
    public required int Line { get; init; }
    public required int Col { get; init; }
    public bool IsDefault { get; init; }
    public RuleKind Kind { get; init; }

    /// <summary>Function parameters (variables, <c>_</c> or scalar constants).</summary>
    public Expr[] Params { get; set; } = [];

    /// <summary>The head value (<c>true</c> when the head has none); for partial sets the element.</summary>
    public required Expr Value { get; set; }

    /// <summary>The body; empty when the rule has none (always true).</summary>
    public Literal[] Body { get; set; } = [];

    /// <summary>Number of local variable slots (set by the compiler).</summary>
    public int SlotCount { get; set; }
}

/// <summary>All definitions of one rule name.</summary>
internal sealed class RuleGroup(string name, int index, RuleKind kind)
{
    public string Name { get; } = name;
    public int Index { get; } = index;
    public RuleKind Kind { get; } = kind;
    public int Arity { get; set; }
    public List<RuleDef> Defs { get; } = [];
    public RuleDef? Default { get; set; }
    public Value? DefaultValue { get; set; }

    /// <summary>Every definition yields the same constant: stop at the first body that succeeds.</summary>
    public Value? UniformConstant { get; set; }

    public HashSet<RuleGroup> Dependencies { get; } = [];
}

internal sealed class ImportDecl(int line, int col, string[] path, string alias)
{
    public int Line { get; } = line;
    public int Col { get; } = col;
    public string[] Path { get; } = path;
    public string Alias { get; } = alias;
}

internal sealed class ModuleAst(int line, int col, string[] package)
{
    public int Line { get; } = line;
    public int Col { get; } = col;
    public string[] Package { get; } = package;
    public List<ImportDecl> Imports { get; } = [];
    public List<RuleDef> Rules { get; } = [];
}
