namespace CryptoTensors.Gpu;

/// <summary>
/// The category of a refusal. The numeric values are the CLI exit codes and map one to one onto the
/// <c>error_kind</c>s of the shared test vectors.
/// </summary>
public enum ErrorKind
{
    /// <summary>safetensors framing or header invalid (length, JSON, dtype, offsets, coverage).</summary>
    Malformed = 2,
    /// <summary>CryptoTensors metadata invalid (version, chunk size, a missing or extra reserved field).</summary>
    CryptoHeader = 3,
    /// <summary>An encrypted file without <c>__signature__</c>.</summary>
    MissingSignature = 4,
    /// <summary>Ed25519 verification failed, or the signature could not be decoded.</summary>
    Signature = 5,
    /// <summary>The access policy denied the load, was undefined, or could not be evaluated.</summary>
    Policy = 6,
    /// <summary>No usable key: missing, wrong type, wrong length, or undecodable.</summary>
    Key = 7,
    /// <summary>A wrapped data key does not authenticate under the master key.</summary>
    KeyUnwrap = 8,
    /// <summary>Tensor ciphertext, tag or nonce does not authenticate, or tags are missing.</summary>
    Decrypt = 9,
}

/// <summary>Helpers for <see cref="ErrorKind"/>.</summary>
public static class ErrorKinds
{
    /// <summary>The snake_case name used by the test vectors and by <c>--json</c> output.</summary>
    public static string ToVectorName(this ErrorKind kind) => kind switch
    {
        ErrorKind.Malformed => "malformed",
        ErrorKind.CryptoHeader => "crypto_header",
        ErrorKind.MissingSignature => "missing_signature",
        ErrorKind.Signature => "signature",
        ErrorKind.Policy => "policy",
        ErrorKind.Key => "key",
        ErrorKind.KeyUnwrap => "key_unwrap",
        ErrorKind.Decrypt => "decrypt",
        _ => throw new ArgumentOutOfRangeException(nameof(kind)),
    };

    /// <summary>Parses a vector <c>error_kind</c> name.</summary>
    public static ErrorKind FromVectorName(string name) => name switch
    {
        "malformed" => ErrorKind.Malformed,
        "crypto_header" => ErrorKind.CryptoHeader,
        "missing_signature" => ErrorKind.MissingSignature,
        "signature" => ErrorKind.Signature,
        "policy" => ErrorKind.Policy,
        "key" => ErrorKind.Key,
        "key_unwrap" => ErrorKind.KeyUnwrap,
        "decrypt" => ErrorKind.Decrypt,
        _ => throw new ArgumentException($"unknown error kind '{name}'", nameof(name)),
    };
}

/// <summary>
/// Every way a file, key or policy can be refused. Each code belongs to exactly one <see cref="ErrorKind"/>
/// (see <see cref="CryptoTensorsException.KindOf"/>).
/// </summary>
public enum ErrorCode
{
    /// <summary>Fewer than 8 bytes: no header length.</summary>
    HeaderTooSmall,
    /// <summary>Header length above 100,000,000 bytes.</summary>
    HeaderTooLarge,
    /// <summary>Header extends beyond the end of the file.</summary>
    InvalidHeaderLength,
    /// <summary>Header bytes are not UTF-8.</summary>
    InvalidUtf8,
    /// <summary>Header is not valid JSON of the expected shape.</summary>
    InvalidJson,
    /// <summary>A key appears twice in one JSON object.</summary>
    DuplicateKey,
    /// <summary>A dtype name that is not one of the 20 known ones.</summary>
    UnknownDtype,
    /// <summary>A tensor's offsets leave a gap, overlap, or run backwards.</summary>
    InvalidOffset,
    /// <summary>Element count or byte size overflows 64 bits.</summary>
    ValidationOverflow,
    /// <summary>A sub-byte dtype whose element count does not fill whole bytes.</summary>
    MisalignedSlice,
    /// <summary>Offsets span a byte count other than shape × dtype size.</summary>
    TensorInvalidInfo,
    /// <summary>The data section is shorter or longer than the tensors it holds.</summary>
    IncompleteBuffer,
    /// <summary>The header nests deeper than allowed.</summary>
    NestingTooDeep,
    /// <summary>A reserved CryptoTensors field is missing or malformed.</summary>
    InvalidCryptoField,
    /// <summary>The <c>version</c> of <c>__crypto_keys__</c> is missing or not a string.</summary>
    MissingVersion,
    /// <summary>The <c>version</c> of <c>__crypto_keys__</c> is not "1" or "2".</summary>
    UnsupportedVersion,
    /// <summary><c>chunk_size</c> is zero or not an unsigned integer.</summary>
    InvalidChunkSize,
    /// <summary>An algorithm name that is not supported.</summary>
    UnsupportedAlgorithm,
    /// <summary>Crypto fields present without <c>__encryption__</c> (a downgrade).</summary>
    StrippedEncryption,
    /// <summary>The file is plain but the caller required an encrypted, signed file.</summary>
    NotEncrypted,
    /// <summary><c>__signature__</c> missing from an encrypted file.</summary>
    MissingSignature,
    /// <summary><c>__signature__</c> is not canonical standard base64 of 64 bytes.</summary>
    InvalidSignatureFormat,
    /// <summary>The Ed25519 signature does not verify.</summary>
    SignatureMismatch,
    /// <summary>The policy evaluated to false.</summary>
    PolicyDenied,
    /// <summary>The policy result was undefined.</summary>
    PolicyUndefined,
    /// <summary>The policy result was not a boolean.</summary>
    PolicyNotBoolean,
    /// <summary>The policy uses a construct outside the supported subset, or does not parse.</summary>
    PolicyUnsupported,
    /// <summary>The policy failed while evaluating: conflicting rule values, a bound exceeded, a built-in error.</summary>
    PolicyEvaluationFailed,
    /// <summary>No provider supplied the master key.</summary>
    MissingMasterKey,
    /// <summary>No provider supplied the verification key.</summary>
    MissingVerificationKey,
    /// <summary>No signing key was given to a writer.</summary>
    MissingSigningKey,
    /// <summary>A key is malformed: bad JWK, wrong type, wrong length, bad base64.</summary>
    InvalidKey,
    /// <summary>A header tried to supply key bytes.</summary>
    KeyInHeader,
    /// <summary>Rotation asked for a different algorithm.</summary>
    AlgorithmMismatch,
    /// <summary>A wrapped data key failed authentication.</summary>
    KeyUnwrapFailed,
    /// <summary>A wrapped data key field is empty or undecodable.</summary>
    InvalidWrappedKey,
    /// <summary>A tensor chunk failed authentication.</summary>
    DecryptionFailed,
    /// <summary>A tensor's nonce or tags are missing or of the wrong length.</summary>
    MissingNonceOrTag,
    /// <summary>The v2 chunk counter would overflow 32 bits.</summary>
    IvCounterOverflow,
    /// <summary>No tensor of that name.</summary>
    TensorNotFound,
    /// <summary>The destination buffer has the wrong size.</summary>
    DestinationSize,
    /// <summary>A view's element type does not have the size of the tensor's dtype.</summary>
    ElementSizeMismatch,
    /// <summary>
    /// A tensor that must be authenticated whole (v1 encrypted) is larger than one AEAD call takes (2 GiB), or than the
    /// streaming reader's buffer (<see cref="Reading.CryptoTensorsStreamReader.MaxWholeTensorBytes"/>).
    /// </summary>
    TensorTooLarge,
    /// <summary>A key server's host is not on the allowlist, or its URL is not https (plain http only to loopback, when allowed).</summary>
    KeyHostNotAllowed,
    /// <summary>The key server could not be reached (connection refused, no route, name not resolved).</summary>
    KeyServerUnreachable,
    /// <summary>The key server did not connect or answer within the timeout.</summary>
    KeyServerTimeout,
    /// <summary>The TLS handshake with the key server failed (untrusted or mismatched certificate).</summary>
    KeyServerTlsFailure,
    /// <summary>The key server refused the licence (HTTP 401 or 403: unknown, expired or unbound token, kid not licensed).</summary>
    KeyLicenceRefused,
    /// <summary>The key server has no key with that kid (HTTP 404).</summary>
    KeyNotFoundOnServer,
    /// <summary>The licence was revoked (HTTP 410).</summary>
    KeyRevoked,
    /// <summary>The key server's response exceeds the size limit.</summary>
    KeyResponseTooLarge,
    /// <summary>The key server's response is not a usable JWK or JWK Set, or has an unexpected status.</summary>
    KeyResponseMalformed,
    /// <summary>
    /// The file changed while being read: it grew or was written to since it was opened (a shorter file is
    /// <see cref="IncompleteBuffer"/>). Replacing it by a rename is not a change: the open file is still read.
    /// </summary>
    FileChanged,
    /// <summary>
    /// A header exceeds a documented resource bound (<see cref="Format.HeaderLimits"/>: tensor count, metadata entries,
    /// shape rank); docs/BOUNDS.md lists them all.
    /// </summary>
    LimitExceeded,
}

/// <summary>
/// The one exception type of this library: every refusal carries a <see cref="Kind"/>, a precise
/// <see cref="Code"/>, and, where it applies, the tensor, chunk and header field it concerns.
/// Messages never contain key bytes.
/// </summary>
public class CryptoTensorsException : Exception
{
    /// <summary>Creates an exception; use the subclass of the code's category.</summary>
    protected CryptoTensorsException(ErrorCode code, string message, string? tensor = null, long? chunk = null,
        string? field = null, Exception? inner = null)
        : base(Compose(message, tensor, chunk, field), inner)
    {
        Code = code;
        Tensor = tensor;
        Chunk = chunk;
        Field = field;
    }

    /// <summary>The category (the CLI exit code).</summary>
    public ErrorKind Kind => KindOf(Code);

    /// <summary>The precise reason.</summary>
    public ErrorCode Code { get; }

    /// <summary>The tensor concerned, if any.</summary>
    public string? Tensor { get; }

    /// <summary>The v2 chunk index concerned, if any.</summary>
    public long? Chunk { get; }

    /// <summary>The header field concerned, if any.</summary>
    public string? Field { get; }

    /// <summary>The category of an error code.</summary>
    public static ErrorKind KindOf(ErrorCode code) => code switch
    {
        ErrorCode.HeaderTooSmall or ErrorCode.HeaderTooLarge or ErrorCode.InvalidHeaderLength or ErrorCode.InvalidUtf8
            or ErrorCode.InvalidJson or ErrorCode.DuplicateKey or ErrorCode.UnknownDtype or ErrorCode.InvalidOffset
            or ErrorCode.ValidationOverflow or ErrorCode.MisalignedSlice or ErrorCode.TensorInvalidInfo
            or ErrorCode.IncompleteBuffer or ErrorCode.NestingTooDeep or ErrorCode.TensorNotFound
            or ErrorCode.DestinationSize or ErrorCode.ElementSizeMismatch or ErrorCode.TensorTooLarge
            or ErrorCode.FileChanged or ErrorCode.LimitExceeded => ErrorKind.Malformed,
        ErrorCode.InvalidCryptoField or ErrorCode.MissingVersion or ErrorCode.UnsupportedVersion
            or ErrorCode.InvalidChunkSize or ErrorCode.UnsupportedAlgorithm or ErrorCode.StrippedEncryption
            or ErrorCode.NotEncrypted => ErrorKind.CryptoHeader,
        ErrorCode.MissingSignature => ErrorKind.MissingSignature,
        ErrorCode.InvalidSignatureFormat or ErrorCode.SignatureMismatch => ErrorKind.Signature,
        ErrorCode.PolicyDenied or ErrorCode.PolicyUndefined or ErrorCode.PolicyNotBoolean
            or ErrorCode.PolicyUnsupported or ErrorCode.PolicyEvaluationFailed => ErrorKind.Policy,
        ErrorCode.MissingMasterKey or ErrorCode.MissingVerificationKey or ErrorCode.MissingSigningKey
            or ErrorCode.InvalidKey or ErrorCode.KeyInHeader or ErrorCode.AlgorithmMismatch
            or ErrorCode.KeyHostNotAllowed or ErrorCode.KeyServerUnreachable or ErrorCode.KeyServerTimeout
            or ErrorCode.KeyServerTlsFailure or ErrorCode.KeyLicenceRefused or ErrorCode.KeyNotFoundOnServer
            or ErrorCode.KeyRevoked or ErrorCode.KeyResponseTooLarge or ErrorCode.KeyResponseMalformed => ErrorKind.Key,
        ErrorCode.KeyUnwrapFailed or ErrorCode.InvalidWrappedKey => ErrorKind.KeyUnwrap,
        ErrorCode.DecryptionFailed or ErrorCode.MissingNonceOrTag or ErrorCode.IvCounterOverflow => ErrorKind.Decrypt,
        _ => throw new ArgumentOutOfRangeException(nameof(code)),
    };

    private static string Compose(string message, string? tensor, long? chunk, string? field)
    {
        var where = tensor is null ? "" : chunk is null ? $"tensor '{tensor}': " : $"tensor '{tensor}' chunk {chunk}: ";
        var what = field is null ? "" : $" (field {field})";
        return where + message + what;
    }
}
