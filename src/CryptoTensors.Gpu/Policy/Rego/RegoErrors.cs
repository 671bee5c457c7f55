namespace CryptoTensors.Gpu.Policy.Rego;

/// <summary>Creates the policy exceptions with a uniform message shape.</summary>
internal static class RegoErrors
{
    /// <summary>A parse or compile error: the load is refused. The message names the position as <c>line:column</c>.</summary>
    public static CryptoTensorsException Unsupported(int line, int col, string message)
        => Errors.Create(ErrorCode.PolicyUnsupported, $"policy rejected at {line}:{col}: {message}");

    /// <summary>A compile error without a source position.</summary>
    public static CryptoTensorsException Unsupported(string message)
        => Errors.Create(ErrorCode.PolicyUnsupported, $"policy rejected: {message}");

    /// <summary>An evaluation error (conflict, bound, built-in failure).</summary>
    public static CryptoTensorsException Eval(string message, Exception? inner = null)
        => Errors.Create(ErrorCode.PolicyEvaluationFailed, $"policy evaluation failed: {message}", inner: inner);

    /// <summary>An evaluation error at a source position.</summary>
    public static CryptoTensorsException Eval(int line, int col, string message, Exception? inner = null)
        => Errors.Create(ErrorCode.PolicyEvaluationFailed, $"policy evaluation failed at {line}:{col}: {message}", inner: inner);
}
