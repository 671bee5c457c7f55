namespace CryptoTensors.Gpu.Policy;

/// <summary>
/// Bounds on what a policy and its input may cost. Exceeding a compile-time bound refuses the policy
/// (<see cref="ErrorCode.PolicyUnsupported"/>); exceeding an evaluation bound fails the evaluation
/// (<see cref="ErrorCode.PolicyEvaluationFailed"/>). Either way the load is refused.
/// </summary>
public sealed record PolicyLimits
{
    /// <summary>The defaults: 1 MiB of source, nesting 64, 1,000,000 steps, call depth 32, input 4 MiB and depth 64, regex 100 ms.</summary>
    public static PolicyLimits Default { get; } = new();

    /// <summary>Maximum policy source size in UTF-8 bytes (compile time).</summary>
    public int MaxSourceBytes { get; init; } = 1 << 20;

    /// <summary>The largest accepted <see cref="MaxNestingDepth"/> and <see cref="MaxInputDepth"/>.</summary>
    public const int MaxDepthLimit = 1000;

    /// <summary>
    /// Maximum nesting of the policy (compile time): parentheses, collection literals, bodies, operator chains
    /// and reference paths each count one level. At most <see cref="MaxDepthLimit"/>.
    /// </summary>
    public int MaxNestingDepth { get; init; } = 64;

    /// <summary>Maximum evaluation steps (body literals, iterations, calls, produced output) for one evaluation.</summary>
    public long MaxEvalSteps { get; init; } = 1_000_000;

    /// <summary>
    /// Maximum depth of rule and function dependencies: checked at compile time over the dependency graph and
    /// again during evaluation. (Recursion itself is always rejected at compile time.)
    /// </summary>
    public int MaxCallDepth { get; init; } = 32;

    /// <summary>
    /// Maximum nesting of arrays and objects in the input document (evaluation time). At most
    /// <see cref="MaxDepthLimit"/>. Values built by the policy may nest up to this plus <see cref="MaxNestingDepth"/>.
    /// </summary>
    public int MaxInputDepth { get; init; } = 64;

    /// <summary>Maximum size of the input document as raw UTF-8 JSON (evaluation time).</summary>
    public long MaxInputBytes { get; init; } = 4L << 20;

    /// <summary>Time allowed for one <c>regex.match</c> or <c>glob.match</c>.</summary>
    public TimeSpan RegexTimeout { get; init; } = TimeSpan.FromMilliseconds(100);

    internal void Validate()
    {
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(MaxSourceBytes);
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(MaxNestingDepth);
        ArgumentOutOfRangeException.ThrowIfGreaterThan(MaxNestingDepth, MaxDepthLimit);
        ArgumentOutOfRangeException.ThrowIfGreaterThan(MaxInputDepth, MaxDepthLimit);
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(MaxEvalSteps);
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(MaxCallDepth);
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(MaxInputDepth);
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(MaxInputBytes);
        ArgumentOutOfRangeException.ThrowIfLessThanOrEqual(RegexTimeout, TimeSpan.Zero);
    }
}
