using CryptoTensors.Gpu.Keys;

namespace CryptoTensors.Gpu.Reading;

/// <summary>How a file is opened: which keys, and how strict.</summary>
public sealed class ReaderOptions
{
    /// <summary>The master key to use whatever the header's kid says (not disposed by the reader).</summary>
    public MasterKey? MasterKey { get; init; }

    /// <summary>The Ed25519 public key to verify with whatever the header's kid says.</summary>
    public VerificationKey? VerificationKey { get; init; }

    /// <summary>Providers for keys not given directly; default: <see cref="KeyRegistry.CreateDefault"/>.</summary>
    public KeyRegistry? Keys { get; init; }

    /// <summary>
    /// Follow a key location (<c>jku</c>) taken from the header. Off by default — safer than the reference: the
    /// header is not yet verified when keys are looked up, so a model could otherwise point the verifier at a key
    /// file it ships itself. Off, providers are asked by <c>kid</c> only.
    /// </summary>
    public bool FollowHeaderKeyLocations { get; init; }

    /// <summary>Refuse files that are not encrypted and signed (the reference accepts plain files silently).</summary>
    public bool RequireEncrypted { get; init; }

    /// <summary>
    /// Refuse files in which any tensor is stored in plain (<see cref="ErrorCode.NotEncrypted"/>, naming the first):
    /// the signature covers the header, not the tensor bytes, and only encrypted tensors are authenticated (by their
    /// tags), so a partially encrypted file's plain tensors could be swapped by whoever hosts the file. Implies
    /// <see cref="RequireEncrypted"/>. Checked after the signature and the policy, before any data key is unwrapped.
    /// </summary>
    public bool RequireAllTensorsEncrypted { get; init; }

    /// <summary>Caller-supplied facts given to the policy as <c>input.context</c> (a JSON object), or null.</summary>
    public System.Text.Json.JsonElement? PolicyContext { get; init; }

    /// <summary>The device the tensors are loaded for (<c>input.device</c> of the policy): <c>cpu</c> or <c>cuda:N</c>.</summary>
    public string Device { get; init; } = "cpu";

    /// <summary>Tensor names the caller intends to read, when known (<c>input.tensors</c> of the policy).</summary>
    public IReadOnlyList<string>? RequestedTensors { get; init; }

    /// <summary>The clock of <c>input.time</c> and <c>time.now_ns()</c> (default: the system clock).</summary>
    public TimeProvider? PolicyClock { get; init; }

    /// <summary>
    /// Set only by <see cref="Writing.Rewrapper"/> when the holder of the old master key rotates without evaluating
    /// the old policy: the signature and every data-key unwrap are still checked, no tensor is decrypted.
    /// </summary>
    internal bool SkipPolicyEvaluation { get; init; }

    /// <summary>Bounds on policy size and evaluation (default: <see cref="Policy.PolicyLimits.Default"/>).</summary>
    public Policy.PolicyLimits? PolicyLimits { get; init; }

    /// <summary>A copy of these options with <see cref="SkipPolicyEvaluation"/> set.</summary>
    internal ReaderOptions WithoutPolicyEvaluation() => new()
    {
        MasterKey = MasterKey,
        VerificationKey = VerificationKey,
        Keys = Keys,
        FollowHeaderKeyLocations = FollowHeaderKeyLocations,
        RequireEncrypted = RequireEncrypted,
        RequireAllTensorsEncrypted = RequireAllTensorsEncrypted,
        PolicyContext = PolicyContext,
        Device = Device,
        RequestedTensors = RequestedTensors,
        PolicyClock = PolicyClock,
        PolicyLimits = PolicyLimits,
        SkipPolicyEvaluation = true,
    };
}
