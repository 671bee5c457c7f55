using System.Runtime.CompilerServices;

namespace CryptoTensors.Gpu.Policy.Rego;

/// <summary>
/// Evaluates a compiled program for one input. Not thread-safe; create one per evaluation.
/// </summary>
/// <remarks>
/// Undefined is a null <see cref="Value"/>. Expressions that cannot iterate are evaluated directly
/// (<see cref="Eval"/>); expressions and literals that can produce several solutions are evaluated with a
/// continuation that returns true to stop the enumeration. Complete rules are memoised; every definition is
/// evaluated so that conflicting values are detected, except when all definitions yield the same constant.
/// Bounds: evaluation steps, rule/function call depth, and the native stack.
/// </remarks>
internal sealed class Evaluator : IBuiltinContext
{
    private static readonly Func<bool> Stop = () => true;

    private readonly Value? _input;
    private readonly PolicyLimits _limits;
    private readonly TimeProvider _clock;
    private readonly int _maxValueDepth;
    private readonly Value?[] _ruleValues;
    private readonly byte[] _ruleState; // 0 = not evaluated, 1 = in progress, 2 = done
    private Value?[] _frame = [];
    private long _steps;
    private int _callDepth;
    private long? _nowNs;

    public Evaluator(RegoProgram program, Value? input, PolicyLimits limits, TimeProvider clock)
    {
        _input = input;
        _limits = limits;
        _clock = clock;
        _maxValueDepth = (int)Math.Min(int.MaxValue, (long)limits.MaxInputDepth + limits.MaxNestingDepth);
        _ruleValues = new Value?[program.Groups.Length];
        _ruleState = new byte[program.Groups.Length];
    }

    public long Steps => _steps;

    public TimeSpan RegexTimeout => _limits.RegexTimeout;

    public long NowNs()
    {
        _nowNs ??= (_clock.GetUtcNow().UtcTicks - DateTime.UnixEpoch.Ticks) * 100;
        return _nowNs.Value;
    }

    public void Charge(long units)
    {
        _steps += units;
        if (_steps > _limits.MaxEvalSteps) throw StepLimit();
    }

    private void Step()
    {
        if (++_steps > _limits.MaxEvalSteps) throw StepLimit();
    }

    /// <summary>Charges for building or comparing values of this size (1 step per 16 units).</summary>
    private void ChargeSize(long size)
    {
        if (size >= 16) Charge(size >> 4);
    }

    /// <summary>Accounts for a collection value built by the policy and bounds its nesting.</summary>
    private T Built<T>(Expr at, T v) where T : Value => Built(at.Line, at.Col, v);

    private T Built<T>(int line, int col, T v) where T : Value
    {
        if (v.Depth > _maxValueDepth)
            throw RegoErrors.Eval(line, col, $"a value nests deeper than {_maxValueDepth} levels");
        ChargeSize(v.Size);
        return v;
    }

    private CryptoTensorsException StepLimit() => RegoErrors.Eval($"more than {_limits.MaxEvalSteps} evaluation steps");

    private static void EnsureStack()
    {
        if (!RuntimeHelpers.TryEnsureSufficientExecutionStack())
            throw RegoErrors.Eval("the policy nests too deeply to evaluate");
    }

    // ---- rules and functions ----

    public Value? EvalRule(RuleGroup g)
    {
        switch (_ruleState[g.Index])
        {
            case 2:
                return _ruleValues[g.Index];
            case 1:
                throw RegoErrors.Eval($"rule '{g.Name}' depends on itself");
        }
        _ruleState[g.Index] = 1;
        EnterCall(g);
        var saved = _frame;
        try
        {
            var v = g.Kind == RuleKind.PartialSet ? EvalPartialSet(g) : EvalComplete(g);
            _ruleValues[g.Index] = v;
            _ruleState[g.Index] = 2;
            return v;
        }
        finally
        {
            _frame = saved;
            _callDepth--;
        }
    }

    private void EnterCall(RuleGroup g)
    {
        if (++_callDepth > _limits.MaxCallDepth)
            throw RegoErrors.Eval($"rule and function calls nest deeper than {_limits.MaxCallDepth} (at '{g.Name}')");
        EnsureStack();
    }

    private static Value?[] NewFrame(RuleDef def) => def.SlotCount == 0 ? [] : new Value?[def.SlotCount];

    private Value? EvalComplete(RuleGroup g)
    {
        if (g.UniformConstant is { } constant)
        {
            foreach (var def in g.Defs)
            {
                _frame = NewFrame(def);
                Step();
                if (EvalBody(def.Body, 0, Stop)) return constant;
            }
            return g.DefaultValue;
        }

        var single = new SingleValue();
        foreach (var def in g.Defs)
        {
            _frame = NewFrame(def);
            Step();
            CollectSingleValue(def, single, (d, previous, first, v) => RegoErrors.Eval(d.Line, d.Col,
                $"complete rule '{g.Name}' produced conflicting values {previous} (at {first.Line}:{first.Col}) and {v}"));
        }
        return single.Result ?? g.DefaultValue;
    }

    private SetValue EvalPartialSet(RuleGroup g)
    {
        var set = new HashSet<Value>();
        foreach (var def in g.Defs)
        {
            _frame = NewFrame(def);
            Step();
            var d = def;
            EvalBody(d.Body, 0, () =>
            {
                Each(d.Value, v =>
                {
                    Step();
                    ChargeSize(v.Size);
                    set.Add(v);
                    return false;
                });
                return false;
            });
        }
        return Built(g.Defs[0].Line, g.Defs[0].Col, new SetValue(set));
    }

    /// <summary>Charges a comparison of two values; always true.</summary>
    /// <summary>The one value of a complete rule or function call; a second, different value is a conflict.</summary>
    private sealed class SingleValue
    {
        public Value? Result;
        public RuleDef? First;
    }

    /// <summary>Evaluates one definition's body and value into <paramref name="single"/>, raising <paramref name="conflict"/> on disagreement.</summary>
    private void CollectSingleValue(RuleDef d, SingleValue single, Func<RuleDef, Value, RuleDef, Value, Exception> conflict)
    {
        var constValue = d.Value is ConstExpr;
        EvalBody(d.Body, 0, () =>
        {
            Each(d.Value, v =>
            {
                if (single.Result is null)
                {
                    single.Result = v;
                    single.First = d;
                }
                else if (Charged(single.Result, v) && !single.Result.Equals(v))
                {
                    throw conflict(d, single.Result, single.First!, v);
                }
                return false;
            });
            return constValue;
        });
    }

    private bool Charged(Value a, Value b)
    {
        ChargeSize(Math.Min(a.Size, b.Size));
        return true;
    }

    private Value? CallFunction(CallExpr call, RuleGroup g, Value[] args)
    {
        EnterCall(g);
        var saved = _frame;
        try
        {
            var single = new SingleValue();
            foreach (var def in g.Defs)
            {
                var frame = NewFrame(def);
                var matches = true;
                for (var i = 0; i < def.Params.Length && matches; i++)
                {
                    switch (def.Params[i])
                    {
                        case VarExpr { Kind: VarKind.Local } p:
                            frame[p.Slot] = args[i];
                            break;
                        case ConstExpr c:
                            matches = Charged(c.Value, args[i]) && c.Value.Equals(args[i]);
                            break;
                    }
                }
                if (!matches) continue;
                _frame = frame;
                Step();
                CollectSingleValue(def, single, (_, previous, first, v) => RegoErrors.Eval(call.Line, call.Col,
                    $"function '{g.Name}' produced conflicting outputs {previous} (at {first.Line}:{first.Col}) and {v} for the same inputs"));
            }
            return single.Result;
        }
        finally
        {
            _frame = saved;
            _callDepth--;
        }
    }

    // ---- bodies ----

    /// <summary>Evaluates <paramref name="lits"/> from <paramref name="i"/>; calls <paramref name="k"/> per solution. Returns true when stopped.</summary>
    private bool EvalBody(Literal[] lits, int i, Func<bool> k)
    {
        EnsureStack();
        for (; i < lits.Length; i++)
        {
            var lit = lits[i];
            Step();
            if (lit.Iterates) return EvalIteratingLiteral(lits, i, k);
            if (!EvalLiteral(lit)) return false;
        }
        return k();
    }

    private bool EvalLiteral(Literal lit)
    {
        switch (lit)
        {
            case ExprLit { Negated: true } e:
                return !Exists(e.Expr);
            case ExprLit e:
                return Eval(e.Expr) is { IsTruthy: true };
            case AssignLit a:
            {
                var v = Eval(a.Value);
                if (v is null) return false;
                _frame[a.Target.Slot] = v;
                return true;
            }
            case UnifyLit u:
            {
                var l = Eval(u.Left);
                if (l is null) return false;
                var r = Eval(u.Right);
                return r is not null && Charged(l, r) && l.Equals(r);
            }
            case EveryLit ev:
            {
                var d = Eval(ev.Domain);
                return d is not null && CheckEvery(ev, d);
            }
            default:
                throw RegoErrors.Eval(lit.Line, lit.Col, "unsupported statement");
        }
    }

    private bool EvalIteratingLiteral(Literal[] lits, int i, Func<bool> k)
    {
        var lit = lits[i];
        bool Next() => EvalBody(lits, i + 1, k);
        switch (lit)
        {
            case ExprLit e:
                return EvalIter(e.Expr, v => v.IsTruthy && Next());
            case AssignLit a:
            {
                var slot = a.Target.Slot;
                return EvalIter(a.Value, v =>
                {
                    _frame[slot] = v;
                    return Next();
                });
            }
            case UnifyLit u:
                return EvalAll([u.Left, u.Right], vs => Charged(vs[0], vs[1]) && vs[0].Equals(vs[1]) && Next());
            case SomeInLit s:
            {
                var keySlot = s.Key?.Slot ?? -1;
                var valueSlot = s.Value.Slot;
                return Each(s.Collection, coll => Iterate(coll, keySlot, valueSlot, Next));
            }
            case EveryLit ev:
                return EvalIter(ev.Domain, d => CheckEvery(ev, d) && Next());
            default:
                throw RegoErrors.Eval(lit.Line, lit.Col, "unsupported statement");
        }
    }

    /// <summary>Binds key and value of each element of a collection (none for a scalar) and calls <paramref name="k"/>.</summary>
    private bool Iterate(Value coll, int keySlot, int valueSlot, Func<bool> k)
    {
        switch (coll)
        {
            case ArrayValue a:
                for (var i = 0; i < a.Items.Length; i++)
                {
                    Step();
                    if (keySlot >= 0) _frame[keySlot] = NumberValue.Of(i);
                    _frame[valueSlot] = a.Items[i];
                    if (k()) return true;
                }
                return false;
            case ObjectValue o:
                foreach (var (key, value) in o.Map)
                {
                    Step();
                    if (keySlot >= 0) _frame[keySlot] = key;
                    _frame[valueSlot] = value;
                    if (k()) return true;
                }
                return false;
            case SetValue s:
                foreach (var e in s.Items)
                {
                    Step();
                    if (keySlot >= 0) _frame[keySlot] = e;
                    _frame[valueSlot] = e;
                    if (k()) return true;
                }
                return false;
            default:
                return false;
        }
    }

    /// <summary><c>every</c>: true when the body has a solution for every element; false for a non-collection.</summary>
    private bool CheckEvery(EveryLit ev, Value domain)
    {
        if (domain is not (ArrayValue or ObjectValue or SetValue)) return false;
        var keySlot = ev.Key?.Slot ?? -1;
        var valueSlot = ev.Value.Slot;
        var body = ev.Body;
        var failed = false;
        Iterate(domain, keySlot, valueSlot, () =>
        {
            if (EvalBody(body, 0, Stop)) return false;
            failed = true;
            return true;
        });
        return !failed;
    }

    /// <summary>True when the expression has a defined, non-false value.</summary>
    private bool Exists(Expr e) => e.Iterates ? EvalIter(e, v => v.IsTruthy) : Eval(e) is { IsTruthy: true };

    // ---- expressions ----

    /// <summary>Calls <paramref name="k"/> for each value of <paramref name="e"/>.</summary>
    private bool Each(Expr e, Func<Value, bool> k)
    {
        if (e.Iterates) return EvalIter(e, k);
        var v = Eval(e);
        return v is not null && k(v);
    }

    /// <summary>The single value of a non-iterating expression, or null when undefined.</summary>
    private Value? Eval(Expr e)
    {
        switch (e)
        {
            case ConstExpr c:
                return c.Value;
            case not VarExpr:
                EnsureStack();
                break;
        }
        switch (e)
        {
            case VarExpr v:
                return v.Kind switch
                {
                    VarKind.Local => _frame[v.Slot],
                    VarKind.Input => _input,
                    VarKind.Rule => EvalRule(v.Rule!),
                    _ => throw RegoErrors.Eval(v.Line, v.Col, "'_' has no value here"),
                };
            case RefExpr r:
            {
                var cur = Eval(r.Head);
                foreach (var p in r.Path)
                {
                    if (cur is null) return null;
                    var key = Eval(p);
                    if (key is null) return null;
                    cur = Lookup(cur, key);
                }
                return cur;
            }
            case CallExpr c:
            {
                var args = c.Args.Length == 0 ? [] : new Value[c.Args.Length];
                for (var i = 0; i < args.Length; i++)
                {
                    var a = Eval(c.Args[i]);
                    if (a is null) return null;
                    args[i] = a;
                }
                return Call(c, args);
            }
            case BinaryExpr b:
            {
                var l = Eval(b.Left);
                if (l is null) return null;
                var r = Eval(b.Right);
                return r is null ? null : Binary(b, l, r);
            }
            case NegExpr n:
            {
                var v = Eval(n.Operand);
                return v is null ? null : Negate(n, v);
            }
            case MemberExpr m:
            {
                Value? key = null;
                if (m.Key is not null && (key = Eval(m.Key)) is null) return null;
                var value = Eval(m.Value);
                if (value is null) return null;
                var coll = Eval(m.Collection);
                return coll is null ? null : Member(key, value, coll);
            }
            case ArrayExpr a:
            {
                var items = new Value[a.Items.Length];
                for (var i = 0; i < items.Length; i++)
                {
                    var v = Eval(a.Items[i]);
                    if (v is null) return null;
                    items[i] = v;
                }
                return Built(a, new ArrayValue(items));
            }
            case SetExpr s:
            {
                var set = new HashSet<Value>();
                foreach (var item in s.Items)
                {
                    var v = Eval(item);
                    if (v is null) return null;
                    set.Add(v);
                }
                return Built(s, new SetValue(set));
            }
            case ObjectExpr o:
            {
                var map = new Dictionary<Value, Value>(o.Keys.Length);
                for (var i = 0; i < o.Keys.Length; i++)
                {
                    var k = Eval(o.Keys[i]);
                    if (k is null) return null;
                    var v = Eval(o.Values[i]);
                    if (v is null) return null;
                    AddKey(o, map, k, v);
                }
                return Built(o, new ObjectValue(map));
            }
            default:
                throw RegoErrors.Eval(e.Line, e.Col, "unsupported expression");
        }
    }

    private static void AddKey(ObjectExpr at, Dictionary<Value, Value> map, Value k, Value v)
    {
        if (map.TryGetValue(k, out var old) && !old.Equals(v))
            throw RegoErrors.Eval(at.Line, at.Col, $"object literal has conflicting values for key {k}");
        map[k] = v;
    }

    /// <summary>Calls <paramref name="k"/> for each value of an expression that may iterate.</summary>
    private bool EvalIter(Expr e, Func<Value, bool> k)
    {
        if (!e.Iterates)
        {
            var v = Eval(e);
            return v is not null && k(v);
        }
        EnsureStack();
        switch (e)
        {
            case RefExpr r:
                return Each(r.Head, h => Walk(r, 0, h, k));
            case CallExpr c:
                return EvalAll(c.Args, args =>
                {
                    var v = Call(c, args);
                    return v is not null && k(v);
                });
            case BinaryExpr b:
                return EvalAll([b.Left, b.Right], vs => k(Binary(b, vs[0], vs[1])));
            case NegExpr n:
                return EvalIter(n.Operand, v => k(Negate(n, v)));
            case MemberExpr m:
                return m.Key is null
                    ? EvalAll([m.Value, m.Collection], vs => k(Member(null, vs[0], vs[1])))
                    : EvalAll([m.Key, m.Value, m.Collection], vs => k(Member(vs[0], vs[1], vs[2])));
            case ArrayExpr a:
                return EvalAll(a.Items, vs => k(Built(a, new ArrayValue((Value[])vs.Clone()))));
            case SetExpr s:
                return EvalAll(s.Items, vs => k(Built(s, new SetValue([.. vs]))));
            case ObjectExpr o:
            {
                var items = new Expr[o.Keys.Length * 2];
                for (var i = 0; i < o.Keys.Length; i++)
                {
                    items[2 * i] = o.Keys[i];
                    items[2 * i + 1] = o.Values[i];
                }
                return EvalAll(items, vs =>
                {
                    var map = new Dictionary<Value, Value>(o.Keys.Length);
                    for (var i = 0; i < o.Keys.Length; i++) AddKey(o, map, vs[2 * i], vs[2 * i + 1]);
                    return k(Built(o, new ObjectValue(map)));
                });
            }
            default:
                throw RegoErrors.Eval(e.Line, e.Col, "unsupported iterating expression");
        }
    }

    /// <summary>Evaluates <paramref name="exprs"/> left to right (each may iterate) and calls <paramref name="k"/> per combination.</summary>
    private bool EvalAll(Expr[] exprs, Func<Value[], bool> k)
    {
        var buf = new Value[exprs.Length];
        return EvalAllFrom(exprs, 0, buf, k);
    }

    private bool EvalAllFrom(Expr[] exprs, int i, Value[] buf, Func<Value[], bool> k)
    {
        for (; i < exprs.Length && !exprs[i].Iterates; i++)
        {
            var v = Eval(exprs[i]);
            if (v is null) return false;
            buf[i] = v;
        }
        if (i == exprs.Length) return k(buf);
        EnsureStack();
        var at = i;
        return EvalIter(exprs[at], v =>
        {
            buf[at] = v;
            return EvalAllFrom(exprs, at + 1, buf, k);
        });
    }

    /// <summary>Walks the path of a reference from step <paramref name="i"/>, iterating at index variables.</summary>
    private bool Walk(RefExpr r, int i, Value cur, Func<Value, bool> k)
    {
        var path = r.Path;
        for (; i < path.Length && !path[i].Iterates; i++)
        {
            var key = Eval(path[i]);
            if (key is null) return false;
            var next = Lookup(cur, key);
            if (next is null) return false;
            cur = next;
        }
        if (i == path.Length) return k(cur);
        var at = i;
        if (path[at] is VarExpr v)
        {
            var slot = v.Binds ? v.Slot : -1;
            switch (cur)
            {
                case ArrayValue a:
                    for (var j = 0; j < a.Items.Length; j++)
                    {
                        Step();
                        if (slot >= 0) _frame[slot] = NumberValue.Of(j);
                        if (Walk(r, at + 1, a.Items[j], k)) return true;
                    }
                    return false;
                case ObjectValue o:
                    foreach (var (key, value) in o.Map)
                    {
                        Step();
                        if (slot >= 0) _frame[slot] = key;
                        if (Walk(r, at + 1, value, k)) return true;
                    }
                    return false;
                case SetValue s:
                    foreach (var e in s.Items)
                    {
                        Step();
                        if (slot >= 0) _frame[slot] = e;
                        if (Walk(r, at + 1, e, k)) return true;
                    }
                    return false;
                default:
                    return false;
            }
        }
        return EvalIter(path[at], key =>
        {
            var next = Lookup(cur, key);
            return next is not null && Walk(r, at + 1, next, k);
        });
    }

    private static Value? Lookup(Value cur, Value key)
    {
        switch (cur)
        {
            case ObjectValue o:
                return o.Map.TryGetValue(key, out var v) ? v : null;
            case ArrayValue a:
                return key is NumberValue n && n.TryGetInt64(out var i) && i >= 0 && i < a.Items.Length ? a.Items[i] : null;
            case SetValue s:
                return s.Items.Contains(key) ? key : null;
            default:
                return null;
        }
    }

    private Value Member(Value? key, Value value, Value coll)
    {
        if (key is null && coll is ArrayValue or ObjectValue) ChargeSize(coll.Size);
        if (key is null)
        {
            switch (coll)
            {
                case ArrayValue a:
                    foreach (var item in a.Items)
                    {
                        if (item.Equals(value)) return Value.True;
                    }
                    return Value.False;
                case ObjectValue o:
                    foreach (var item in o.Map.Values)
                    {
                        if (item.Equals(value)) return Value.True;
                    }
                    return Value.False;
                case SetValue s:
                    return Value.Bool(s.Items.Contains(value));
                default:
                    return Value.False;
            }
        }
        if (coll is SetValue set) return Value.Bool(set.Items.Contains(key) && key.Equals(value));
        var found = Lookup(coll, key);
        return Value.Bool(found is not null && found.Equals(value));
    }

    private Value? Call(CallExpr c, Value[] args)
    {
        Step();
        if (c.Function is { } f) return CallFunction(c, f, args);
        long size = 0;
        foreach (var a in args) size += a.Size;
        ChargeSize(size);
        try
        {
            return c.Builtin!.Invoke(this, args);
        }
        catch (BuiltinException ex)
        {
            throw RegoErrors.Eval(c.Line, c.Col, $"{c.Name}: {ex.Message}", ex);
        }
    }

    private Value Binary(BinaryExpr b, Value l, Value r)
    {
        ChargeSize(Math.Min(l.Size, r.Size));
        try
        {
            return Builtins.Compare(b.Op, l, r);
        }
        catch (BuiltinException ex)
        {
            throw RegoErrors.Eval(b.Line, b.Col, ex.Message, ex);
        }
    }

    private static Value Negate(NegExpr n, Value v)
    {
        try
        {
            return Builtins.Negate(v);
        }
        catch (BuiltinException ex)
        {
            throw RegoErrors.Eval(n.Line, n.Col, ex.Message, ex);
        }
    }
}
