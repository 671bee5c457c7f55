namespace CryptoTensors.Gpu;

/// <summary>The file is not a valid safetensors container. Category <see cref="ErrorKind.Malformed"/>.</summary>
public sealed class MalformedFileException : CryptoTensorsException
{
    internal MalformedFileException(ErrorCode code, string message, string? tensor, long? chunk, string? field, Exception? inner)
        : base(code, message, tensor, chunk, field, inner) { }
}

/// <summary>The CryptoTensors metadata is invalid. Category <see cref="ErrorKind.CryptoHeader"/>.</summary>
public sealed class CryptoHeaderException : CryptoTensorsException
{
    internal CryptoHeaderException(ErrorCode code, string message, string? tensor, long? chunk, string? field, Exception? inner)
        : base(code, message, tensor, chunk, field, inner) { }
}

/// <summary>An encrypted file carries no signature. Category <see cref="ErrorKind.MissingSignature"/>.</summary>
public sealed class MissingSignatureException : CryptoTensorsException
{
    internal MissingSignatureException(ErrorCode code, string message, string? tensor, long? chunk, string? field, Exception? inner)
        : base(code, message, tensor, chunk, field, inner) { }
}

/// <summary>The header signature does not verify. Category <see cref="ErrorKind.Signature"/>.</summary>
public sealed class SignatureException : CryptoTensorsException
{
    internal SignatureException(ErrorCode code, string message, string? tensor, long? chunk, string? field, Exception? inner)
        : base(code, message, tensor, chunk, field, inner) { }
}

/// <summary>The access policy refused the load or could not be evaluated. Category <see cref="ErrorKind.Policy"/>.</summary>
public sealed class PolicyDeniedException : CryptoTensorsException
{
    internal PolicyDeniedException(ErrorCode code, string message, string? tensor, long? chunk, string? field, Exception? inner)
        : base(code, message, tensor, chunk, field, inner) { }

    /// <summary>
    /// The <c>input</c> document the policy was evaluated against, as compact JSON, when the refusal came from an
    /// evaluation at open (null for a policy that could not be compiled). It holds the facts of the load (time,
    /// host, user, device, key ids, file name, the caller's context) and never key material: show it to explain a
    /// denial.
    /// </summary>
    public string? InputDocument { get; internal set; }
}

/// <summary>No usable key. Category <see cref="ErrorKind.Key"/>.</summary>
public sealed class KeyException : CryptoTensorsException
{
    internal KeyException(ErrorCode code, string message, string? tensor, long? chunk, string? field, Exception? inner)
        : base(code, message, tensor, chunk, field, inner) { }

    /// <summary>For a key that no provider had: the key id that was asked for (null when none was).</summary>
    public string? Kid { get; internal set; }

    /// <summary>For a key server's refusal or failure: the host (and port) asked; never the licence token.</summary>
    public string? Host { get; internal set; }
}

/// <summary>A data key could not be unwrapped. Category <see cref="ErrorKind.KeyUnwrap"/>.</summary>
public sealed class KeyUnwrapException : CryptoTensorsException
{
    internal KeyUnwrapException(ErrorCode code, string message, string? tensor, long? chunk, string? field, Exception? inner)
        : base(code, message, tensor, chunk, field, inner) { }
}

/// <summary>Tensor data did not authenticate. Category <see cref="ErrorKind.Decrypt"/>.</summary>
public sealed class DecryptionException : CryptoTensorsException
{
    internal DecryptionException(ErrorCode code, string message, string? tensor, long? chunk, string? field, Exception? inner)
        : base(code, message, tensor, chunk, field, inner) { }
}

internal static class Errors
{
    /// <summary>Creates the exception of the right category for <paramref name="code"/>.</summary>
    public static CryptoTensorsException Create(ErrorCode code, string message, string? tensor = null, long? chunk = null, string? field = null, Exception? inner = null)
        => CryptoTensorsException.KindOf(code) switch
        {
            ErrorKind.Malformed => new MalformedFileException(code, message, tensor, chunk, field, inner),
            ErrorKind.CryptoHeader => new CryptoHeaderException(code, message, tensor, chunk, field, inner),
            ErrorKind.MissingSignature => new MissingSignatureException(code, message, tensor, chunk, field, inner),
            ErrorKind.Signature => new SignatureException(code, message, tensor, chunk, field, inner),
            ErrorKind.Policy => new PolicyDeniedException(code, message, tensor, chunk, field, inner),
            ErrorKind.Key => new KeyException(code, message, tensor, chunk, field, inner),
            ErrorKind.KeyUnwrap => new KeyUnwrapException(code, message, tensor, chunk, field, inner),
            ErrorKind.Decrypt => new DecryptionException(code, message, tensor, chunk, field, inner),
            _ => throw new ArgumentOutOfRangeException(nameof(code)),
        };
}
