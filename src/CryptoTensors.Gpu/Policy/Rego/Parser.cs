using System.Globalization;
using System.Runtime.CompilerServices;

namespace CryptoTensors.Gpu.Policy.Rego;

/// <summary>
/// Recursive-descent parser for the supported Rego v1 subset. Every error is a
/// <see cref="ErrorCode.PolicyUnsupported"/> naming the construct and its <c>line:column</c>.
/// </summary>
/// <remarks>
/// Statements and body literals are separated by <c>;</c> or by starting on a new line. A binary operator
/// must stay on the line of its left operand (an operator at the start of a line begins a new statement);
/// its right operand may follow on the next line. References (<c>a.b[c]</c>) and calls (<c>f(x)</c>) must be
/// written without whitespace before <c>.</c>, <c>[</c> and <c>(</c>. Nesting (parentheses, collections,
/// bodies, operator chains, reference paths) is bounded by <see cref="PolicyLimits.MaxNestingDepth"/>.
/// </remarks>
internal sealed class Parser
{
    private static readonly HashSet<string> Keywords = new(StringComparer.Ordinal)
    {
        "as", "contains", "default", "else", "every", "false", "if", "import", "in", "not", "null", "package", "some",
        "true", "with",
    };

    private readonly List<Token> _t;
    private readonly int _maxDepth;
    private int _p;
    private int _depth;

    private Parser(List<Token> tokens, int maxDepth)
    {
        _t = tokens;
        _maxDepth = maxDepth;
    }

    public static bool IsKeyword(string s) => Keywords.Contains(s);

    public static ModuleAst Parse(string source, int maxDepth) => new Parser(Lexer.Tokenize(source), maxDepth).ParseModule();

    private Token Cur => _t[_p];

    private Token Prev => _t[_p > 0 ? _p - 1 : 0];

    private bool CurIs(string keyword) => Cur.Kind == TokenKind.Ident && Cur.Text == keyword;

    /// <summary>The current token starts on a later line than the previous token ends.</summary>
    private bool OnNewLine => _p > 0 && Cur.Line > Prev.EndLine;

    private Token Advance()
    {
        var t = _t[_p];
        if (t.Kind != TokenKind.Eof) _p++;
        return t;
    }

    private Token Expect(TokenKind kind, string context)
    {
        if (Cur.Kind != kind) throw Unexpected(Cur, $" (expected '{Lexer.Spell(kind)}' {context})");
        return Advance();
    }

    private static CryptoTensorsException Error(Token t, string message) => RegoErrors.Unsupported(t.Line, t.Col, message);

    private static CryptoTensorsException Unexpected(Token t, string context = "")
    {
        if (t.Kind == TokenKind.Ident)
        {
            switch (t.Text)
            {
                case "with": return Error(t, "'with' is not supported");
                case "else": return Error(t, "'else' is not supported");
            }
        }
        return t.Kind switch
        {
            TokenKind.Pipe => Error(t, "'|' (set union or comprehension) is not supported"),
            TokenKind.Amp => Error(t, "'&' (set intersection) is not supported"),
            _ => Error(t, $"unexpected {t.Describe()}{context}"),
        };
    }

    /// <summary>Enters one level of nesting (an expression, a unary minus, a body).</summary>
    private void Enter(Token at)
    {
        if (++_depth > _maxDepth) throw Error(at, $"policy nests deeper than {_maxDepth} levels");
        if (!RuntimeHelpers.TryEnsureSufficientExecutionStack()) throw Error(at, "policy nests too deeply for the available stack");
    }

    private void Exit() => _depth--;

    private T Check<T>(T e) where T : Expr
    {
        if (e.Height > _maxDepth) throw RegoErrors.Unsupported(e.Line, e.Col, $"expression nests deeper than {_maxDepth} levels");
        return e;
    }

    private void EndStatement()
    {
        if (Cur.Kind == TokenKind.Eof || OnNewLine) return;
        throw Unexpected(Cur, " (expected a new line)");
    }

    // ---- module level ----

    private ModuleAst ParseModule()
    {
        if (!CurIs("package")) throw Unexpected(Cur, " (a policy must start with 'package')");
        var pk = Advance();
        var path = ParseDottedName("package");
        var module = new ModuleAst(pk.Line, pk.Col, path);
        EndStatement();
        while (Cur.Kind != TokenKind.Eof)
        {
            if (CurIs("import")) module.Imports.Add(ParseImport());
            else if (CurIs("package")) throw Error(Cur, "a policy may declare only one 'package'");
            else module.Rules.Add(ParseRule());
            EndStatement();
        }
        return module;
    }

    private string[] ParseDottedName(string what)
    {
        if (Cur.Kind != TokenKind.Ident) throw Unexpected(Cur, $" (expected a name after '{what}')");
        var parts = new List<string> { Advance().Text };
        while (true)
        {
            if (Cur.Kind == TokenKind.Dot && Cur.Adjacent)
            {
                Advance();
                if (Cur.Kind != TokenKind.Ident || !Cur.Adjacent) throw Unexpected(Cur, " (expected a name after '.')");
                parts.Add(Advance().Text);
            }
            else if (Cur.Kind == TokenKind.LBrack && Cur.Adjacent)
            {
                throw Error(Cur, $"'[...]' in a {what} path is not supported");
            }
            else
            {
                return [.. parts];
            }
        }
    }

    private ImportDecl ParseImport()
    {
        var imp = Advance();
        var path = ParseDottedName("import");
        var alias = path[^1];
        if (CurIs("as"))
        {
            Advance();
            if (Cur.Kind != TokenKind.Ident || IsKeyword(Cur.Text)) throw Unexpected(Cur, " (expected an alias after 'as')");
            alias = Advance().Text;
        }
        return new ImportDecl(imp.Line, imp.Col, path, alias);
    }

    private RuleDef ParseRule()
    {
        var isDefault = false;
        if (CurIs("default"))
        {
            Advance();
            isDefault = true;
        }
        var nameTok = Cur;
        if (nameTok.Kind != TokenKind.Ident || IsKeyword(nameTok.Text)) throw Unexpected(nameTok, " (expected a rule name)");
        Advance();

        Expr[]? parameters = null;
        if (Cur.Kind == TokenKind.LParen && Cur.Adjacent)
        {
            Advance();
            if (Cur.Kind == TokenKind.RParen) throw Error(Cur, $"function '{nameTok.Text}' needs at least one parameter");
            var ps = new List<Expr>();
            while (true)
            {
                ps.Add(ParseExpr());
                if (Cur.Kind != TokenKind.Comma) break;
                Advance();
            }
            Expect(TokenKind.RParen, "after function parameters");
            parameters = [.. ps];
        }
        if ((Cur.Kind == TokenKind.Dot || Cur.Kind == TokenKind.LBrack) && Cur.Adjacent)
            throw Error(Cur, $"rule head '{nameTok.Text}{Cur.Text}...' (partial object rule or reference head) is not supported");

        var kind = parameters is null ? RuleKind.Complete : RuleKind.Function;
        Expr? value = null;
        if (CurIs("contains"))
        {
            if (parameters is not null || isDefault) throw Error(Cur, "'contains' is only allowed in a partial set rule head");
            Advance();
            value = ParseExpr();
            kind = RuleKind.PartialSet;
        }
        else if (Cur.Kind is TokenKind.Assign or TokenKind.Unify)
        {
            Advance();
            value = ParseExpr();
        }

        if (isDefault)
        {
            if (kind == RuleKind.Function) throw Error(nameTok, "default functions are not supported");
            if (value is null) throw Error(Cur.Kind == TokenKind.Eof ? nameTok : Cur, $"default rule '{nameTok.Text}' needs a value ('default {nameTok.Text} := ...')");
            if (CurIs("if")) throw Error(Cur, "a default rule cannot have a body");
        }

        Literal[]? body = null;
        if (CurIs("if"))
        {
            Advance();
            body = Cur.Kind == TokenKind.LBrace ? ParseBlock() : [ParseLiteral()];
        }
        else if (Cur.Kind == TokenKind.LBrace)
        {
            throw Error(Cur, $"rule body without 'if' (Rego v0 syntax) is not supported; write '{nameTok.Text} if {{ ... }}'");
        }
        if (body is null && value is null)
            throw Error(nameTok, $"rule '{nameTok.Text}' has neither a value nor an 'if' body");
        if (CurIs("else")) throw Error(Cur, "'else' is not supported");

        return new RuleDef
        {
            Name = nameTok.Text,
            Line = nameTok.Line,
            Col = nameTok.Col,
            IsDefault = isDefault,
            Kind = kind,
            Params = parameters ?? [],
            Value = value ?? new ConstExpr(nameTok.Line, nameTok.Col, Value.True),
            Body = body ?? [],
        };
    }

    // ---- bodies ----

    private Literal[] ParseBlock()
    {
        var lb = Expect(TokenKind.LBrace, "to open a body");
        Enter(lb);
        if (Cur.Kind == TokenKind.RBrace) throw Error(Cur, "empty rule body");
        var lits = new List<Literal>();
        while (true)
        {
            lits.Add(ParseLiteral());
            if (Cur.Kind == TokenKind.Semicolon)
            {
                while (Cur.Kind == TokenKind.Semicolon) Advance();
                if (Cur.Kind == TokenKind.RBrace) break;
                continue;
            }
            if (Cur.Kind == TokenKind.RBrace) break;
            if (Cur.Kind == TokenKind.Eof) throw Error(Cur, $"missing '}}' for the body opened at {lb.Line}:{lb.Col}");
            if (OnNewLine) continue;
            throw Unexpected(Cur, " (expected ';', a new line or '}')");
        }
        Advance();
        Exit();
        return [.. lits];
    }

    private Literal ParseLiteral()
    {
        var start = Cur;
        if (CurIs("some")) return ParseSome();
        if (CurIs("every")) return ParseEvery();
        var negated = false;
        if (CurIs("not"))
        {
            Advance();
            negated = true;
            if (CurIs("some") || CurIs("every") || CurIs("not")) throw Error(Cur, $"'not' cannot be followed by '{Cur.Text}'");
        }

        var lhs = ParseExpr();
        if (!negated && Cur.Kind == TokenKind.Comma)
        {
            // k, v in coll
            Advance();
            var v = ParseRelation();
            if (!CurIs("in")) throw Unexpected(Cur, " (expected 'in' after 'key, value')");
            Advance();
            var coll = ParseRelation();
            lhs = Check(new MemberExpr(lhs.Line, lhs.Col, lhs, v, coll));
        }

        Literal lit;
        if (Cur.Kind is TokenKind.Assign or TokenKind.Unify && !OnNewLine)
        {
            var op = Advance();
            var rhs = ParseExpr();
            if (op.Kind == TokenKind.Assign)
            {
                if (negated) throw Error(op, "'not' cannot be combined with ':='");
                if (lhs is not VarExpr target)
                    throw RegoErrors.Unsupported(lhs.Line, lhs.Col, "the left side of ':=' must be a variable (destructuring is not supported)");
                lit = new AssignLit(start.Line, start.Col, target, rhs, declare: true);
            }
            else if (negated)
            {
                lit = new ExprLit(start.Line, start.Col, Check(new BinaryExpr(op.Line, op.Col, BinOp.Eq, lhs, rhs)), negated: true);
            }
            else
            {
                lit = new UnifyLit(start.Line, start.Col, lhs, rhs);
            }
        }
        else
        {
            lit = new ExprLit(start.Line, start.Col, lhs, negated);
        }
        if (CurIs("with")) throw Error(Cur, "'with' is not supported");
        return lit;
    }

    private VarExpr ParseVarName(string context)
    {
        var t = Cur;
        if (t.Kind != TokenKind.Ident || IsKeyword(t.Text)) throw Unexpected(t, $" (expected a variable name {context})");
        Advance();
        return new VarExpr(t.Line, t.Col, t.Text);
    }

    private Literal ParseSome()
    {
        var s = Advance();
        var vars = new List<VarExpr> { ParseVarName("after 'some'") };
        while (Cur.Kind == TokenKind.Comma)
        {
            Advance();
            vars.Add(ParseVarName("after ','"));
        }
        if (CurIs("in"))
        {
            var inTok = Advance();
            if (vars.Count > 2) throw Error(inTok, "'some' takes one or two variables before 'in'");
            var coll = ParseRelation();
            return vars.Count == 1
                ? new SomeInLit(s.Line, s.Col, null, vars[0], coll)
                : new SomeInLit(s.Line, s.Col, vars[0], vars[1], coll);
        }
        if (Cur.Kind != TokenKind.Eof && !OnNewLine && Cur.Kind is not (TokenKind.Semicolon or TokenKind.RBrace))
            throw Unexpected(Cur, " (expected 'in' or the end of the 'some' declaration)");
        foreach (var v in vars)
        {
            if (v.Name == "_") throw RegoErrors.Unsupported(v.Line, v.Col, "'some _' declares nothing");
        }
        return new SomeDeclLit(s.Line, s.Col, [.. vars]);
    }

    private Literal ParseEvery()
    {
        var e = Advance();
        var first = ParseVarName("after 'every'");
        VarExpr? key = null;
        var value = first;
        if (Cur.Kind == TokenKind.Comma)
        {
            Advance();
            key = first;
            value = ParseVarName("after ','");
        }
        if (!CurIs("in")) throw Unexpected(Cur, " (expected 'in' after the 'every' variables)");
        Advance();
        var domain = ParseRelation();
        if (Cur.Kind != TokenKind.LBrace) throw Unexpected(Cur, " (expected '{' to open the 'every' body)");
        var body = ParseBlock();
        return new EveryLit(e.Line, e.Col, key, value, domain, body);
    }

    // ---- expressions (loosest to tightest: in, relations, + -, * / %, unary minus, terms) ----

    private Expr ParseExpr()
    {
        Enter(Cur);
        var lhs = ParseRelation();
        while (CurIs("in") && !OnNewLine)
        {
            Advance();
            var rhs = ParseRelation();
            lhs = Check(new MemberExpr(lhs.Line, lhs.Col, null, lhs, rhs));
        }
        Exit();
        return lhs;
    }

    private static BinOp? RelOp(TokenKind k) => k switch
    {
        TokenKind.Eq => BinOp.Eq,
        TokenKind.Neq => BinOp.Neq,
        TokenKind.Lt => BinOp.Lt,
        TokenKind.Lte => BinOp.Lte,
        TokenKind.Gt => BinOp.Gt,
        TokenKind.Gte => BinOp.Gte,
        _ => null,
    };

    private Expr ParseRelation()
    {
        var lhs = ParseArith();
        while (!OnNewLine && RelOp(Cur.Kind) is { } op)
        {
            var t = Advance();
            var rhs = ParseArith();
            lhs = Check(new BinaryExpr(t.Line, t.Col, op, lhs, rhs));
        }
        return lhs;
    }

    private Expr ParseArith()
    {
        var lhs = ParseFactor();
        while (!OnNewLine && Cur.Kind is TokenKind.Plus or TokenKind.Minus)
        {
            var t = Advance();
            var rhs = ParseFactor();
            lhs = Check(new BinaryExpr(t.Line, t.Col, t.Kind == TokenKind.Plus ? BinOp.Add : BinOp.Sub, lhs, rhs));
        }
        return lhs;
    }

    private Expr ParseFactor()
    {
        var lhs = ParseUnary();
        while (!OnNewLine && Cur.Kind is TokenKind.Star or TokenKind.Slash or TokenKind.Percent)
        {
            var t = Advance();
            var rhs = ParseUnary();
            var op = t.Kind switch
            {
                TokenKind.Star => BinOp.Mul,
                TokenKind.Slash => BinOp.Div,
                _ => BinOp.Mod,
            };
            lhs = Check(new BinaryExpr(t.Line, t.Col, op, lhs, rhs));
        }
        return lhs;
    }

    private Expr ParseUnary()
    {
        if (Cur.Kind != TokenKind.Minus) return ParseTerm();
        var m = Advance();
        Enter(m);
        Expr e;
        if (Cur.Kind == TokenKind.Number && Cur.Adjacent)
        {
            var n = Advance();
            e = new ConstExpr(m.Line, m.Col, ParseNumber(n, negative: true));
        }
        else
        {
            e = Check(new NegExpr(m.Line, m.Col, ParseUnary()));
        }
        Exit();
        return e;
    }

    private static NumberValue ParseNumber(Token t, bool negative)
    {
        var text = negative ? "-" + t.Text : t.Text;
        if (t.Text.AsSpan().IndexOfAny('.', 'e', 'E') < 0 && long.TryParse(text, NumberStyles.AllowLeadingSign, CultureInfo.InvariantCulture, out var l))
            return NumberValue.Of(l);
        var d = double.Parse(text, NumberStyles.Float, CultureInfo.InvariantCulture);
        if (!double.IsFinite(d)) throw Error(t, $"number {text} is out of range");
        return NumberValue.Of(d);
    }

    private Expr ParseTerm()
    {
        var t = Cur;
        switch (t.Kind)
        {
            case TokenKind.Number:
                Advance();
                return new ConstExpr(t.Line, t.Col, ParseNumber(t, negative: false));
            case TokenKind.String:
                Advance();
                return new ConstExpr(t.Line, t.Col, new StringValue(t.Text));
            case TokenKind.LParen:
            {
                Advance();
                var e = ParseExpr();
                Expect(TokenKind.RParen, $"to close the '(' at {t.Line}:{t.Col}");
                return e;
            }
            case TokenKind.LBrack:
                return ParseArray();
            case TokenKind.LBrace:
                return ParseObjectOrSet();
            case TokenKind.Ident:
                switch (t.Text)
                {
                    case "true":
                        Advance();
                        return new ConstExpr(t.Line, t.Col, Value.True);
                    case "false":
                        Advance();
                        return new ConstExpr(t.Line, t.Col, Value.False);
                    case "null":
                        Advance();
                        return new ConstExpr(t.Line, t.Col, Value.Null);
                }
                if (IsKeyword(t.Text) && !(t.Text == "contains" && _t[_p + 1].Kind == TokenKind.LParen && _t[_p + 1].Adjacent))
                    throw Unexpected(t, " (expected a term)");
                return ParseRefOrCall();
            default:
                throw Unexpected(t, " (expected a term)");
        }
    }

    private Expr ParseArray()
    {
        var lb = Advance();
        var items = new List<Expr>();
        while (Cur.Kind != TokenKind.RBrack)
        {
            items.Add(ParseExpr());
            if (Cur.Kind == TokenKind.Pipe) throw Error(Cur, "array comprehensions are not supported");
            if (Cur.Kind != TokenKind.Comma) break;
            Advance();
        }
        Expect(TokenKind.RBrack, $"to close the '[' at {lb.Line}:{lb.Col}");
        return Check(new ArrayExpr(lb.Line, lb.Col, [.. items]));
    }

    private Expr ParseObjectOrSet()
    {
        var lb = Advance();
        Expr result;
        if (Cur.Kind == TokenKind.RBrace)
        {
            result = new ObjectExpr(lb.Line, lb.Col, [], []);
        }
        else
        {
            var first = ParseExpr();
            if (Cur.Kind == TokenKind.Pipe) throw Error(Cur, "set and object comprehensions are not supported");
            if (Cur.Kind == TokenKind.Colon)
            {
                var keys = new List<Expr> { first };
                var values = new List<Expr>();
                Advance();
                values.Add(ParseExpr());
                if (Cur.Kind == TokenKind.Pipe) throw Error(Cur, "object comprehensions are not supported");
                while (Cur.Kind == TokenKind.Comma)
                {
                    Advance();
                    if (Cur.Kind == TokenKind.RBrace) break;
                    keys.Add(ParseExpr());
                    Expect(TokenKind.Colon, "between an object key and its value");
                    values.Add(ParseExpr());
                }
                result = new ObjectExpr(lb.Line, lb.Col, [.. keys], [.. values]);
            }
            else
            {
                var items = new List<Expr> { first };
                while (Cur.Kind == TokenKind.Comma)
                {
                    Advance();
                    if (Cur.Kind == TokenKind.RBrace) break;
                    items.Add(ParseExpr());
                }
                result = new SetExpr(lb.Line, lb.Col, [.. items]);
            }
        }
        Expect(TokenKind.RBrace, $"to close the '{{' at {lb.Line}:{lb.Col}");
        return Check(result);
    }

    private Expr ParseRefOrCall()
    {
        var headTok = Advance();
        var path = new List<Expr>();
        var dotted = new List<string> { headTok.Text };
        var onlyDots = true;
        while (true)
        {
            if (Cur.Kind == TokenKind.Dot && Cur.Adjacent)
            {
                Advance();
                var n = Cur;
                if (n.Kind != TokenKind.Ident || !n.Adjacent) throw Unexpected(n, " (expected a name after '.')");
                Advance();
                path.Add(new ConstExpr(n.Line, n.Col, new StringValue(n.Text)));
                dotted.Add(n.Text);
            }
            else if (Cur.Kind == TokenKind.LBrack && Cur.Adjacent)
            {
                var lb = Advance();
                path.Add(ParseExpr());
                Expect(TokenKind.RBrack, $"to close the '[' at {lb.Line}:{lb.Col}");
                onlyDots = false;
            }
            else
            {
                break;
            }
        }

        if (Cur.Kind == TokenKind.LParen && Cur.Adjacent)
        {
            var lp = Advance();
            if (!onlyDots) throw Error(lp, "calling a computed reference is not supported");
            var args = new List<Expr>();
            while (Cur.Kind != TokenKind.RParen)
            {
                args.Add(ParseExpr());
                if (Cur.Kind != TokenKind.Comma) break;
                Advance();
            }
            Expect(TokenKind.RParen, $"to close the '(' at {lp.Line}:{lp.Col}");
            if ((Cur.Kind == TokenKind.Dot || Cur.Kind == TokenKind.LBrack) && Cur.Adjacent)
                throw Error(Cur, "references into the result of a call are not supported");
            var name = string.Join('.', dotted);
            if (name == "set" && args.Count == 0) return new SetExpr(headTok.Line, headTok.Col, []);
            return Check(new CallExpr(headTok.Line, headTok.Col, name, [.. args]));
        }
        if (headTok.Text == "contains") throw Unexpected(headTok, " (expected a term)");

        var head = new VarExpr(headTok.Line, headTok.Col, headTok.Text);
        return path.Count == 0 ? head : Check(new RefExpr(headTok.Line, headTok.Col, head, [.. path]));
    }
}
