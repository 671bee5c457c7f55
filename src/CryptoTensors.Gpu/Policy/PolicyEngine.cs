using System.Text;
using System.Text.Json;
using CryptoTensors.Gpu.Policy.Rego;

namespace CryptoTensors.Gpu.Policy;

/// <summary>
/// A self-contained evaluator for a subset of Rego v1, used for CryptoTensors access policies. The decision is
/// the value of <c>data.model.allow</c>; the load is allowed only when it is exactly <c>true</c>.
/// </summary>
/// <remarks>
/// <para>Supported: <c>package model</c>; <c>import rego.v1</c>, <c>import future.keywords[.x]</c> (no-ops),
/// <c>import input[.path] [as alias]</c>, <c>import data.model[.rule] [as alias]</c>; complete rules
/// (<c>allow if {...}</c>, <c>allow := v if ...</c>, <c>allow = true</c>, <c>default allow := false</c>, several
/// definitions = logical OR, conflicting values are an error), partial set rules (<c>deny contains msg if {...}</c>),
/// functions (<c>f(x) := y if {...}</c>, <c>f(x) if ...</c>; parameters are variables, <c>_</c> or scalar constants);
/// <c>== != &lt; &lt;= &gt; &gt;=</c>, <c>:=</c>, <c>=</c> (binding an unbound variable, else equality),
/// <c>+ - * / %</c>, unary minus, set difference with <c>-</c>, <c>not</c>, <c>some x in</c>, <c>some k, v in</c>,
/// <c>some x</c> declarations, <c>every</c>, <c>in</c>, references with iteration (<c>input.list[_]</c>,
/// <c>obj[k]</c>), <c>data.model.rule</c>, all literals (raw strings, sets, <c>set()</c>), and the built-ins
/// <c>count startswith endswith contains lower upper trim_space concat split sprintf regex.match glob.match
/// time.now_ns time.parse_rfc3339_ns semver.compare semver.is_valid object.get type_name sum max min abs to_number</c>.</para>
/// <para>Rejected at compile time (<see cref="ErrorCode.PolicyUnsupported"/>, the message names the construct and
/// its <c>line:column</c>): anything else, including Rego v0 bodies without <c>if</c>, <c>with</c>, <c>else</c>,
/// comprehensions, <c>|</c> and <c>&amp;</c>, partial object rules and reference heads, unknown built-ins
/// (<c>http.send</c>, <c>opa.runtime</c>, ...), references into <c>data</c> other than rules of the package,
/// recursion, unsafe variables (used before bound, left to right: literals are not reordered), invalid literal
/// regular expressions or globs, and a package other than <c>model</c> or a policy without an <c>allow</c> rule
/// (the reference reports these as "not a valid rule path"; here they are <see cref="ErrorCode.PolicyUnsupported"/>).</para>
/// <para>Semantics follow OPA: undefined propagates (a missing key makes the expression undefined and the body
/// fail; <c>not</c> of undefined is true; a rule with no successful body and no default is undefined). Differences,
/// all failing closed: built-in errors (wrong operand types, invalid patterns, division by zero) are evaluation
/// errors rather than undefined; numbers are 64-bit integers or doubles; <c>every</c> over a non-collection is
/// false; <c>regex.match</c> uses .NET regular expressions (RE2 syntax differences exist, see
/// <c>Rego/RegexSupport.cs</c>); collections iterate in insertion order (OPA: sorted; results are the same).</para>
/// <para>Syntax notes: <c>if {</c> always opens a body (as in OPA); statements and body literals end at <c>;</c>
/// or a new line, and a binary operator must stay on the line of its left operand; references and calls are
/// written without whitespace before <c>.</c>, <c>[</c> and <c>(</c>.</para>
/// <para>Work is bounded by <see cref="PolicyLimits"/>: source size, nesting, evaluation steps (collection scans,
/// comparisons, built-in output and regex compilations are charged by size), dependency depth, input size and depth,
/// and a regex timeout. Deep nesting is refused cleanly rather than overflowing the stack.</para>
/// </remarks>
public static class PolicyEngine
{
    /// <summary>The reference's default policy: allows every load.</summary>
    public const string DefaultPolicy = "package model\nallow = true";

    /// <summary>Parses and checks a policy once, for any number of evaluations. Fails closed.</summary>
    /// <param name="regoSource">The Rego v1 source.</param>
    /// <param name="limits">Bounds; <see cref="PolicyLimits.Default"/> when null.</param>
    /// <exception cref="CryptoTensorsException"><see cref="ErrorCode.PolicyUnsupported"/>: the source does not parse,
    /// uses a construct outside the subset, or exceeds a compile-time bound; the message names the construct and its
    /// <c>line:column</c>.</exception>
    public static CompiledPolicy Compile(string regoSource, PolicyLimits? limits = null)
    {
        ArgumentNullException.ThrowIfNull(regoSource);
        limits ??= PolicyLimits.Default;
        limits.Validate();
        if (regoSource.Length > limits.MaxSourceBytes || Encoding.UTF8.GetByteCount(regoSource) > limits.MaxSourceBytes)
            throw RegoErrors.Unsupported($"the policy source is larger than {limits.MaxSourceBytes} bytes");
        try
        {
            var module = Parser.Parse(regoSource, limits.MaxNestingDepth);
            var program = Compiler.Compile(module, limits);
            return new CompiledPolicy(program, limits);
        }
        catch (Exception e) when (e is not (CryptoTensorsException or OutOfMemoryException))
        {
            // Fail closed and typed: whatever a hostile policy provokes in the parser or compiler (a construct a
            // .NET component refuses, a bound we did not foresee) is a policy error, never a crash of the loader.
            throw RegoErrors.Unsupported($"the policy could not be compiled: {e.GetType().Name}: {e.Message}");
        }
    }

    /// <summary>Compiles <paramref name="regoSource"/> and evaluates it; returns only when <c>data.model.allow</c> is <c>true</c>.</summary>
    /// <param name="regoSource">The Rego v1 source.</param>
    /// <param name="input">The input document (normally a JSON object); null evaluates without input, like the reference.</param>
    /// <param name="limits">Bounds; <see cref="PolicyLimits.Default"/> when null.</param>
    /// <exception cref="CryptoTensorsException">With <see cref="ErrorKind.Policy"/> and one of the codes listed at
    /// <see cref="CompiledPolicy.EnsureAllowed"/>, or <see cref="ErrorCode.PolicyUnsupported"/> from <see cref="Compile"/>.</exception>
    public static void EnsureAllowed(string regoSource, JsonElement? input, PolicyLimits? limits = null)
        => Compile(regoSource, limits).EnsureAllowed(input);
}

/// <summary>The result of evaluating <c>data.model.allow</c>.</summary>
public enum PolicyDecision
{
    /// <summary><c>allow</c> is <c>true</c>.</summary>
    Allow,
    /// <summary><c>allow</c> is <c>false</c>.</summary>
    Deny,
    /// <summary><c>allow</c> is undefined: no definition succeeded and there is no default.</summary>
    Undefined,
}

/// <summary>A parsed and checked policy. Immutable and safe to evaluate from several threads at once.</summary>
public sealed class CompiledPolicy
{
    private readonly RegoProgram _program;

    internal CompiledPolicy(RegoProgram program, PolicyLimits limits)
    {
        _program = program;
        Limits = limits;
    }

    /// <summary>The bounds this policy was compiled with and is evaluated under.</summary>
    public PolicyLimits Limits { get; }

    /// <summary>Evaluates <c>data.model.allow</c>.</summary>
    /// <param name="input">The input document; null evaluates without input (every <c>input</c> reference is undefined).</param>
    /// <param name="clock">The clock of <c>time.now_ns</c> (read once per evaluation); <see cref="TimeProvider.System"/> when null.</param>
    /// <returns><see cref="PolicyDecision.Allow"/>, <see cref="PolicyDecision.Deny"/> or <see cref="PolicyDecision.Undefined"/>.</returns>
    /// <exception cref="CryptoTensorsException"><see cref="ErrorCode.PolicyNotBoolean"/> when <c>allow</c> has a
    /// non-boolean value; <see cref="ErrorCode.PolicyEvaluationFailed"/> for conflicting rule values, a built-in
    /// error, or an exceeded bound (steps, call depth, input size or depth).</exception>
    public PolicyDecision Evaluate(JsonElement? input, TimeProvider? clock = null)
    {
        var result = EvaluateValue(input, clock);
        return result switch
        {
            null => PolicyDecision.Undefined,
            BoolValue b => b.Value ? PolicyDecision.Allow : PolicyDecision.Deny,
            _ => throw Errors.Create(ErrorCode.PolicyNotBoolean,
                $"policy result data.model.allow is not a boolean: {result.TypeName} {Shorten(result)}"),
        };
    }

    /// <summary>Returns normally only when <c>data.model.allow</c> is exactly <c>true</c>.</summary>
    /// <param name="input">The input document; null evaluates without input.</param>
    /// <param name="clock">The clock of <c>time.now_ns</c>; <see cref="TimeProvider.System"/> when null.</param>
    /// <exception cref="CryptoTensorsException"><see cref="ErrorCode.PolicyDenied"/> (false),
    /// <see cref="ErrorCode.PolicyUndefined"/> (undefined), <see cref="ErrorCode.PolicyNotBoolean"/>, or
    /// <see cref="ErrorCode.PolicyEvaluationFailed"/>; all of <see cref="ErrorKind.Policy"/>.</exception>
    public void EnsureAllowed(JsonElement? input, TimeProvider? clock = null)
    {
        switch (Evaluate(input, clock))
        {
            case PolicyDecision.Allow:
                return;
            case PolicyDecision.Deny:
                throw Errors.Create(ErrorCode.PolicyDenied, "access denied by policy: data.model.allow is false");
            default:
                throw Errors.Create(ErrorCode.PolicyUndefined, "access denied by policy: data.model.allow is undefined");
        }
    }

    internal Value? EvaluateValue(JsonElement? input, TimeProvider? clock = null)
    {
        var inputValue = InputConverter.Convert(input, Limits);
        var evaluator = new Evaluator(_program, inputValue, Limits, clock ?? TimeProvider.System);
        try
        {
            return evaluator.EvalRule(_program.Allow);
        }
        catch (CryptoTensorsException)
        {
            throw;
        }
        catch (Exception ex) when (ex is not OutOfMemoryException)
        {
            throw RegoErrors.Eval($"internal error: {ex.Message}", ex);
        }
    }

    private static string Shorten(Value v)
    {
        var s = v.ToString();
        return s.Length <= 80 ? s : string.Concat(s.AsSpan(0, 77), "...");
    }
}
