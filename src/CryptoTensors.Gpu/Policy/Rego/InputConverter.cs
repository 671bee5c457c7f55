using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;
using System.Text.Json;

namespace CryptoTensors.Gpu.Policy.Rego;

/// <summary>Converts the JSON input document to Rego values, enforcing the input size and depth limits.</summary>
internal static class InputConverter
{
    public static Value? Convert(JsonElement? input, PolicyLimits limits)
    {
        if (input is not { } e || e.ValueKind == JsonValueKind.Undefined) return null;
        long size;
        try
        {
            size = JsonMarshal.GetRawUtf8Value(e).Length;
        }
        catch (ObjectDisposedException ex)
        {
            throw RegoErrors.Eval("the input document was disposed", ex);
        }
        if (size > limits.MaxInputBytes)
            throw RegoErrors.Eval($"the input document is {size} bytes, above the limit of {limits.MaxInputBytes}");
        return Convert(e, 0, limits);
    }

    private static Value Convert(JsonElement e, int depth, PolicyLimits limits)
    {
        switch (e.ValueKind)
        {
            case JsonValueKind.Object:
            {
                CheckDepth(depth, limits);
                var map = new Dictionary<Value, Value>();
                foreach (var p in e.EnumerateObject()) map[new StringValue(p.Name)] = Convert(p.Value, depth + 1, limits);
                return new ObjectValue(map);
            }
            case JsonValueKind.Array:
            {
                CheckDepth(depth, limits);
                var items = new Value[e.GetArrayLength()];
                var i = 0;
                foreach (var item in e.EnumerateArray()) items[i++] = Convert(item, depth + 1, limits);
                return new ArrayValue(items);
            }
            case JsonValueKind.String:
                return new StringValue(e.GetString()!);
            case JsonValueKind.Number:
                if (e.TryGetInt64(out var l)) return NumberValue.Of(l);
                if (e.TryGetDouble(out var d) && double.IsFinite(d)) return NumberValue.Of(d);
                throw RegoErrors.Eval($"input number {e.GetRawText()} is out of range");
            case JsonValueKind.True:
                return Value.True;
            case JsonValueKind.False:
                return Value.False;
            default:
                return Value.Null;
        }
    }

    private static void CheckDepth(int depth, PolicyLimits limits)
    {
        if (depth >= limits.MaxInputDepth || !RuntimeHelpers.TryEnsureSufficientExecutionStack())
            throw RegoErrors.Eval($"the input document nests deeper than {limits.MaxInputDepth} levels");
    }
}
