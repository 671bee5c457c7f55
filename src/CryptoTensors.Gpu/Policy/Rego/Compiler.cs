namespace CryptoTensors.Gpu.Policy.Rego;

/// <summary>The checked, resolved program: every rule group, and the entry point <c>data.model.allow</c>.</summary>
internal sealed class RegoProgram(RuleGroup[] groups, RuleGroup allow)
{
    public RuleGroup[] Groups { get; } = groups;
    public RuleGroup Allow { get; } = allow;
}

/// <summary>
/// Checks a parsed module and resolves it for evaluation: package and imports, rule kinds and conflicts, names
/// (locals to frame slots, rules, <c>input</c>, <c>data.model.*</c>), built-ins and their arities, variable safety
/// (a variable must be bound, left to right, before it is read), and the absence of recursion.
/// Every failure is <see cref="ErrorCode.PolicyUnsupported"/>.
/// </summary>
/// <remarks>
/// Unlike OPA, body literals are never reordered for safety: a variable used before the literal that binds it is
/// an error. Variables are bound by <c>:=</c>, by <c>=</c> with an unbound variable on one side, by
/// <c>some ... in</c>, by <c>every</c>, and by an unbound variable used as a reference index (<c>input.list[i]</c>).
/// </remarks>
internal sealed class Compiler
{
    private const string Package = "model";

    private readonly ModuleAst _module;
    private readonly PolicyLimits _limits;
    private readonly Dictionary<string, RuleGroup> _groups = new(StringComparer.Ordinal);
    private readonly Dictionary<string, string[]> _aliases = new(StringComparer.Ordinal);

    private RuleGroup _current = null!;
    private Scope _scope = null!;
    private List<bool> _bound = null!;

    private sealed class Scope(Scope? parent)
    {
        public Scope? Parent { get; } = parent;
        public Dictionary<string, int> Vars { get; } = new(StringComparer.Ordinal);
    }

    private Compiler(ModuleAst module, PolicyLimits limits)
    {
        _module = module;
        _limits = limits;
    }

    public static RegoProgram Compile(ModuleAst module, PolicyLimits limits) => new Compiler(module, limits).Run();

    private static CryptoTensorsException Error(int line, int col, string message) => RegoErrors.Unsupported(line, col, message);

    private static CryptoTensorsException Error(Expr at, string message) => RegoErrors.Unsupported(at.Line, at.Col, message);

    private RegoProgram Run()
    {
        var pkg = string.Join('.', _module.Package);
        if (pkg != Package)
            throw Error(_module.Line, _module.Col, $"package '{pkg}': the policy is evaluated as data.{Package}.allow, which is not a valid rule path for this package (use 'package {Package}')");

        foreach (var imp in _module.Imports) AddImport(imp);
        foreach (var def in _module.Rules) AddRule(def);

        if (!_groups.TryGetValue("allow", out var allow) || allow.Kind == RuleKind.Function)
            throw RegoErrors.Unsupported($"no rule 'allow' in package {Package}: data.{Package}.allow is not a valid rule path");

        foreach (var g in _groups.Values)
        {
            _current = g;
            foreach (var def in g.Defs) CompileDef(def);
            if (g.Default is { } d)
            {
                g.DefaultValue = ConstantOf(d.Value)
                    ?? throw Error(d.Value, $"the value of 'default {g.Name}' must be a constant");
            }
            if (g.Kind == RuleKind.Complete && g.Defs.Count > 0)
            {
                Value? uniform = null;
                foreach (var def in g.Defs)
                {
                    var c = (def.Value as ConstExpr)?.Value;
                    if (c is null || (uniform is not null && !uniform.Equals(c)))
                    {
                        uniform = null;
                        break;
                    }
                    uniform = c;
                }
                g.UniformConstant = uniform;
            }
        }

        var groups = _groups.Values.OrderBy(g => g.Index).ToArray();
        CheckDependencies(groups);
        return new RegoProgram(groups, allow);
    }

    // ---- declarations ----

    private void AddImport(ImportDecl imp)
    {
        var p = imp.Path;
        var name = string.Join('.', p);
        if (name == "rego.v1" || name == "future.keywords") return;
        if (p.Length == 3 && p[0] == "future" && p[1] == "keywords" && p[2] is "in" or "if" or "contains" or "every") return;
        if (p[0] is not ("input" or "data")) throw Error(imp.Line, imp.Col, $"import '{name}' is not supported (only input, data, rego.v1 and future.keywords)");
        if (p.Length == 1 && imp.Alias == p[0]) return;
        if (imp.Alias is "input" or "data" or "_")
            throw Error(imp.Line, imp.Col, $"import alias '{imp.Alias}' is reserved");
        if (!_aliases.TryAdd(imp.Alias, p))
            throw Error(imp.Line, imp.Col, $"import alias '{imp.Alias}' is declared twice");
    }

    private void AddRule(RuleDef def)
    {
        if (def.Name is "input" or "data") throw Error(def.Line, def.Col, $"'{def.Name}' cannot be used as a rule name");
        if (def.Name == "_") throw Error(def.Line, def.Col, "'_' cannot be used as a rule name");
        if (Builtins.TryGet(def.Name, out _)) throw Error(def.Line, def.Col, $"rule '{def.Name}' would shadow the built-in function of that name");
        if (_aliases.ContainsKey(def.Name)) throw Error(def.Line, def.Col, $"rule '{def.Name}' conflicts with an import alias");
        if (!_groups.TryGetValue(def.Name, out var g))
        {
            g = new RuleGroup(def.Name, _groups.Count, def.Kind) { Arity = def.Params.Length };
            _groups.Add(def.Name, g);
        }
        else if (g.Kind != def.Kind)
        {
            throw Error(def.Line, def.Col, $"rule '{def.Name}' is defined as both {Describe(g.Kind)} and {Describe(def.Kind)}");
        }
        else if (g.Kind == RuleKind.Function && g.Arity != def.Params.Length)
        {
            throw Error(def.Line, def.Col, $"function '{def.Name}' is defined with {g.Arity} and with {def.Params.Length} parameters");
        }
        if (def.IsDefault)
        {
            if (g.Default is not null) throw Error(def.Line, def.Col, $"multiple default rules for '{def.Name}'");
            g.Default = def;
        }
        else
        {
            g.Defs.Add(def);
        }
    }

    private static string Describe(RuleKind k) => k switch
    {
        RuleKind.Complete => "a complete rule",
        RuleKind.PartialSet => "a partial set rule ('contains')",
        _ => "a function",
    };

    // ---- rule bodies ----

    private void CompileDef(RuleDef def)
    {
        _scope = new Scope(null);
        _bound = [];
        var ps = new Expr[def.Params.Length];
        for (var i = 0; i < ps.Length; i++)
        {
            var p = def.Params[i];
            switch (p)
            {
                case VarExpr { Name: "_" } w:
                    ps[i] = VarExpr.Wildcard(w);
                    break;
                case VarExpr v:
                    CheckDeclarable(v, "parameter");
                    ps[i] = VarExpr.Local(v, Declare(v.Name, bound: true), binds: false);
                    break;
                case ConstExpr { Value: not (ArrayValue or ObjectValue or SetValue) } c:
                    ps[i] = c;
                    break;
                default:
                    throw Error(p, "function parameters must be variables, '_' or scalar constants");
            }
        }
        def.Params = ps;
        def.Body = ResolveBody(def.Body);
        def.Value = ResolveInput(def.Value);
        def.SlotCount = _bound.Count;
    }

    private Literal[] ResolveBody(Literal[] body)
    {
        var result = new List<Literal>(body.Length);
        foreach (var lit in body)
        {
            var r = ResolveLiteral(lit);
            if (r is not null) result.Add(r);
        }
        return [.. result];
    }

    private Literal? ResolveLiteral(Literal lit)
    {
        switch (lit)
        {
            case ExprLit { Negated: false } e:
                return new ExprLit(e.Line, e.Col, ResolveInput(e.Expr), false);
            case ExprLit e:
            {
                var snapshot = _bound.ToArray();
                _scope = new Scope(_scope);
                var r = ResolveInput(e.Expr);
                _scope = _scope.Parent!;
                Restore(snapshot);
                return new ExprLit(e.Line, e.Col, r, true);
            }
            case AssignLit a:
            {
                var value = ResolveInput(a.Value);
                var target = DeclareFresh(a.Target, "assigned");
                return new AssignLit(a.Line, a.Col, target, value, true);
            }
            case UnifyLit u:
                if (IsFreeVar(u.Left))
                {
                    var value = ResolveInput(u.Right);
                    return new AssignLit(u.Line, u.Col, BindFree((VarExpr)u.Left), value, false);
                }
                if (IsFreeVar(u.Right))
                {
                    var value = ResolveInput(u.Left);
                    return new AssignLit(u.Line, u.Col, BindFree((VarExpr)u.Right), value, false);
                }
                return new UnifyLit(u.Line, u.Col, ResolveInput(u.Left), ResolveInput(u.Right));
            case SomeInLit s:
            {
                var coll = ResolveInput(s.Collection);
                var key = s.Key is null ? null : DeclareFresh(s.Key, "declared");
                var value = DeclareFresh(s.Value, "declared");
                return new SomeInLit(s.Line, s.Col, key, value, coll);
            }
            case SomeDeclLit d:
                foreach (var v in d.Vars)
                {
                    CheckDeclarable(v, "variable");
                    Declare(v.Name, bound: false);
                }
                return null;
            case EveryLit ev:
            {
                var domain = ResolveInput(ev.Domain);
                var snapshot = _bound.ToArray();
                _scope = new Scope(_scope);
                var key = ev.Key is null ? null : DeclareFresh(ev.Key, "declared");
                var value = DeclareFresh(ev.Value, "declared");
                var body = ResolveBody(ev.Body);
                _scope = _scope.Parent!;
                Restore(snapshot);
                return new EveryLit(ev.Line, ev.Col, key, value, domain, body);
            }
            default:
                throw Error(lit.Line, lit.Col, "unsupported statement");
        }
    }

    private void Restore(bool[] snapshot)
    {
        for (var i = 0; i < snapshot.Length; i++) _bound[i] = snapshot[i];
    }

    private int Declare(string name, bool bound)
    {
        var slot = _bound.Count;
        _bound.Add(bound);
        _scope.Vars[name] = slot;
        return slot;
    }

    private int AnonymousSlot()
    {
        _bound.Add(true);
        return _bound.Count - 1;
    }

    private bool TryLookup(string name, out int slot)
    {
        for (var s = _scope; s is not null; s = s.Parent)
        {
            if (s.Vars.TryGetValue(name, out slot)) return true;
        }
        slot = -1;
        return false;
    }

    private bool IsGlobalName(string name) => name is "input" or "data" || _aliases.ContainsKey(name) || _groups.ContainsKey(name);

    private void CheckDeclarable(VarExpr v, string what)
    {
        if (TryLookup(v.Name, out _)) throw Error(v, $"var {v.Name} declared above (the {what} would shadow it)");
        if (IsGlobalName(v.Name)) throw Error(v, $"{what} '{v.Name}' would shadow the rule, import or document of that name");
    }

    /// <summary>A variable introduced by <c>:=</c>, <c>some</c> or <c>every</c>: bound, and new in this scope.</summary>
    private VarExpr DeclareFresh(VarExpr v, string how)
    {
        if (v.Name == "_") return VarExpr.Local(v, AnonymousSlot(), binds: true);
        if (TryLookup(v.Name, out _)) throw Error(v, $"var {v.Name} {how} above");
        if (IsGlobalName(v.Name)) throw Error(v, $"var '{v.Name}' would shadow the rule, import or document of that name");
        return VarExpr.Local(v, Declare(v.Name, bound: true), binds: true);
    }

    /// <summary>A plain variable that is not bound yet (so <c>=</c> binds it).</summary>
    private bool IsFreeVar(Expr e)
    {
        if (e is not VarExpr v) return false;
        if (v.Name == "_") return true;
        if (TryLookup(v.Name, out var slot)) return !_bound[slot];
        return !IsGlobalName(v.Name);
    }

    private VarExpr BindFree(VarExpr v)
    {
        if (v.Name == "_") return VarExpr.Local(v, AnonymousSlot(), binds: true);
        if (TryLookup(v.Name, out var slot))
        {
            _bound[slot] = true;
            return VarExpr.Local(v, slot, binds: true);
        }
        return VarExpr.Local(v, Declare(v.Name, bound: true), binds: true);
    }

    // ---- expressions ----

    /// <summary>Resolves an expression whose variables must already be bound, except index variables inside references.</summary>
    private Expr ResolveInput(Expr e)
    {
        if (!System.Runtime.CompilerServices.RuntimeHelpers.TryEnsureSufficientExecutionStack())
            throw Error(e, "the policy nests too deeply");
        switch (e)
        {
            case ConstExpr:
                return e;
            case VarExpr v:
                return ResolveVar(v);
            case RefExpr r:
                return ResolveRef(r);
            case CallExpr c:
                return ResolveCall(c);
            case ArrayExpr a:
            {
                var items = ResolveAll(a.Items);
                return Fold(new ArrayExpr(a.Line, a.Col, items));
            }
            case SetExpr s:
            {
                var items = ResolveAll(s.Items);
                return Fold(new SetExpr(s.Line, s.Col, items));
            }
            case ObjectExpr o:
            {
                var keys = new Expr[o.Keys.Length];
                var values = new Expr[o.Values.Length];
                for (var i = 0; i < keys.Length; i++)
                {
                    keys[i] = ResolveInput(o.Keys[i]);
                    values[i] = ResolveInput(o.Values[i]);
                }
                return Fold(new ObjectExpr(o.Line, o.Col, keys, values));
            }
            case BinaryExpr b:
            {
                var l = ResolveInput(b.Left);
                var r = ResolveInput(b.Right);
                return new BinaryExpr(b.Line, b.Col, b.Op, l, r);
            }
            case NegExpr n:
            {
                var operand = ResolveInput(n.Operand);
                if (operand is ConstExpr { Value: var cv })
                {
                    if (cv is not NumberValue) throw Error(n, $"unary minus needs a number, not {cv.TypeName}");
                    return new ConstExpr(n.Line, n.Col, Builtins.Negate(cv));
                }
                return new NegExpr(n.Line, n.Col, operand);
            }
            case MemberExpr m:
            {
                var key = m.Key is null ? null : ResolveInput(m.Key);
                var value = ResolveInput(m.Value);
                var coll = ResolveInput(m.Collection);
                return new MemberExpr(m.Line, m.Col, key, value, coll);
            }
            default:
                throw Error(e, "unsupported expression");
        }
    }

    private Expr[] ResolveAll(Expr[] items)
    {
        var r = new Expr[items.Length];
        for (var i = 0; i < r.Length; i++) r[i] = ResolveInput(items[i]);
        return r;
    }

    private Expr ResolveVar(VarExpr v)
    {
        if (v.Name == "_") throw Error(v, "var _ is unsafe: '_' can only be used as a reference index, a parameter or an iteration variable");
        if (TryLookup(v.Name, out var slot))
        {
            if (!_bound[slot]) throw Error(v, $"var {v.Name} is unsafe: it is declared but not bound before this use");
            return VarExpr.Local(v, slot, binds: false);
        }
        if (_aliases.ContainsKey(v.Name)) return ResolveRef(new RefExpr(v.Line, v.Col, v, []));
        if (v.Name == "input") return VarExpr.Input(v.Line, v.Col);
        if (v.Name == "data") throw Error(v, $"'data' must be followed by a rule name (data.{Package}.<rule>)");
        if (_groups.TryGetValue(v.Name, out var g))
        {
            if (g.Kind == RuleKind.Function) throw Error(v, $"function '{v.Name}' must be called with arguments");
            _current.Dependencies.Add(g);
            return VarExpr.RuleRef(v.Line, v.Col, g);
        }
        throw Error(v, $"var {v.Name} is unsafe: it is not bound before this use (and no rule has that name)");
    }

    private Expr ResolveIndexVar(VarExpr v)
    {
        if (v.Name == "_") return VarExpr.Wildcard(v);
        if (TryLookup(v.Name, out var slot))
        {
            if (_bound[slot]) return VarExpr.Local(v, slot, binds: false);
            _bound[slot] = true;
            return VarExpr.Local(v, slot, binds: true);
        }
        if (IsGlobalName(v.Name)) return ResolveVar(v);
        return VarExpr.Local(v, Declare(v.Name, bound: true), binds: true);
    }

    private Expr ResolveRef(RefExpr r)
    {
        var head = r.Head;
        var path = new List<Expr>(r.Path);
        if (head is VarExpr hv && !TryLookup(hv.Name, out _) && _aliases.TryGetValue(hv.Name, out var aliasPath))
        {
            head = new VarExpr(hv.Line, hv.Col, aliasPath[0]);
            path.InsertRange(0, aliasPath.Skip(1).Select(s => (Expr)new ConstExpr(hv.Line, hv.Col, new StringValue(s))));
        }

        Expr resolvedHead;
        if (head is VarExpr { Name: "data" } dv && !TryLookup("data", out _))
        {
            if (path.Count < 2 || path[0] is not ConstExpr { Value: StringValue { Value: Package } } || path[1] is not ConstExpr { Value: StringValue rule })
                throw Error(dv, $"references into data must name a rule of package {Package} (data.{Package}.<rule>)");
            if (!_groups.TryGetValue(rule.Value, out var g))
                throw Error(path[1], $"data.{Package}.{rule.Value} is not defined: no rule '{rule.Value}'");
            if (g.Kind == RuleKind.Function) throw Error(path[1], $"function '{g.Name}' must be called with arguments");
            _current.Dependencies.Add(g);
            resolvedHead = VarExpr.RuleRef(dv.Line, dv.Col, g);
            path.RemoveRange(0, 2);
        }
        else
        {
            resolvedHead = head is VarExpr hv2 ? ResolveVar(hv2) : ResolveInput(head);
        }

        var resolved = new Expr[path.Count];
        for (var i = 0; i < resolved.Length; i++)
        {
            resolved[i] = path[i] is VarExpr iv ? ResolveIndexVar(iv) : ResolveInput(path[i]);
        }
        if (resolved.Length == 0) return resolvedHead;
        var result = new RefExpr(r.Line, r.Col, resolvedHead, resolved);
        if (result.Height > _limits.MaxNestingDepth) throw Error(r, $"reference nests deeper than {_limits.MaxNestingDepth} levels");
        return result;
    }

    private Expr ResolveCall(CallExpr c)
    {
        var name = c.Name;
        var segments = name.Split('.');
        if (segments.Length > 1 && !TryLookup(segments[0], out _) && _aliases.TryGetValue(segments[0], out var aliasPath))
        {
            segments = [.. aliasPath, .. segments.Skip(1)];
            name = string.Join('.', segments);
        }

        RuleGroup? function = null;
        if (segments[0] == "data")
        {
            if (segments.Length != 3 || segments[1] != Package || !_groups.TryGetValue(segments[2], out function))
                throw Error(c, $"unknown function '{name}'");
        }
        else if (segments.Length == 1 && _groups.TryGetValue(name, out var g))
        {
            function = g;
        }

        if (function is not null)
        {
            if (function.Kind != RuleKind.Function) throw Error(c, $"'{function.Name}' is a rule, not a function");
            if (function.Arity != c.Args.Length)
                throw Error(c, $"function '{function.Name}' takes {function.Arity} argument(s) but is called with {c.Args.Length}");
            _current.Dependencies.Add(function);
            return new CallExpr(c.Line, c.Col, name, ResolveAll(c.Args), function: function);
        }

        if (!Builtins.TryGet(name, out var builtin))
            throw Error(c, $"unknown built-in function '{name}' (not in the supported subset)");
        if (builtin.Arity != c.Args.Length)
            throw Error(c, $"built-in '{name}' takes {builtin.Arity} argument(s) but is called with {c.Args.Length}");
        var args = ResolveAll(c.Args);
        ValidateConstantPatterns(builtin, args);
        return new CallExpr(c.Line, c.Col, name, args, builtin: builtin);
    }

    /// <summary>Rejects invalid literal regular expressions and globs at load time.</summary>
    private void ValidateConstantPatterns(Builtin b, Expr[] args)
    {
        try
        {
            if (b.Name == "regex.match" && args[0] is ConstExpr { Value: StringValue re })
                RegexSupport.Get(re.Value, _limits.RegexTimeout);
            if (b.Name == "glob.match" && args[0] is ConstExpr { Value: StringValue glob } && args[1] is ConstExpr { Value: var delims })
                Glob.Compile(glob.Value, Glob.Delimiters(delims), _limits.RegexTimeout);
        }
        catch (BuiltinException e)
        {
            throw Error(args[0], $"{b.Name}: {e.Message}");
        }
    }

    /// <summary>Folds a collection literal whose elements are all constants into one constant.</summary>
    private static Expr Fold(Expr e)
    {
        var v = ConstantOf(e);
        return v is null ? e : new ConstExpr(e.Line, e.Col, v);
    }

    private static Value? ConstantOf(Expr e)
    {
        switch (e)
        {
            case ConstExpr c:
                return c.Value;
            case NegExpr { Operand: ConstExpr { Value: NumberValue n } }:
                return Builtins.Negate(n);
            case ArrayExpr a:
            {
                var items = new Value[a.Items.Length];
                for (var i = 0; i < items.Length; i++)
                {
                    if (ConstantOf(a.Items[i]) is not { } v) return null;
                    items[i] = v;
                }
                return new ArrayValue(items);
            }
            case SetExpr s:
            {
                var set = new HashSet<Value>();
                foreach (var item in s.Items)
                {
                    if (ConstantOf(item) is not { } v) return null;
                    set.Add(v);
                }
                return new SetValue(set);
            }
            case ObjectExpr o:
            {
                var map = new Dictionary<Value, Value>();
                for (var i = 0; i < o.Keys.Length; i++)
                {
                    if (ConstantOf(o.Keys[i]) is not { } k || ConstantOf(o.Values[i]) is not { } v) return null;
                    if (map.TryGetValue(k, out var old) && !old.Equals(v)) throw Error(o.Keys[i], $"duplicate object key {k}");
                    map[k] = v;
                }
                return new ObjectValue(map);
            }
            default:
                return null;
        }
    }

    // ---- recursion and depth ----

    /// <summary>Rejects recursion (a rule or function that depends on itself) and dependency chains deeper than the call-depth limit.</summary>
    private void CheckDependencies(RuleGroup[] groups)
    {
        var state = new int[groups.Length]; // 0 = new, 1 = on the stack, 2 = done
        var depth = new int[groups.Length];
        var stack = new List<(RuleGroup Group, IEnumerator<RuleGroup> Deps)>();
        foreach (var root in groups)
        {
            if (state[root.Index] != 0) continue;
            state[root.Index] = 1;
            stack.Add((root, root.Dependencies.GetEnumerator()));
            while (stack.Count > 0)
            {
                var (g, deps) = stack[^1];
                if (deps.MoveNext())
                {
                    var d = deps.Current;
                    if (state[d.Index] == 1)
                    {
                        var start = stack.FindIndex(f => f.Group == d);
                        var cycle = string.Join(" -> ", stack.Skip(start).Select(f => f.Group.Name).Append(d.Name));
                        var at = g.Defs.Count > 0 ? g.Defs[0] : g.Default!;
                        throw Error(at.Line, at.Col, $"recursion is not allowed: {cycle}");
                    }
                    if (state[d.Index] == 0)
                    {
                        state[d.Index] = 1;
                        stack.Add((d, d.Dependencies.GetEnumerator()));
                    }
                    continue;
                }
                var max = 0;
                foreach (var d in g.Dependencies) max = Math.Max(max, depth[d.Index]);
                depth[g.Index] = max + 1;
                if (depth[g.Index] > _limits.MaxCallDepth)
                {
                    var at = g.Defs.Count > 0 ? g.Defs[0] : g.Default!;
                    throw Error(at.Line, at.Col, $"rule '{g.Name}' depends on a chain of more than {_limits.MaxCallDepth} rules and functions");
                }
                state[g.Index] = 2;
                stack.RemoveAt(stack.Count - 1);
            }
        }
    }
}
