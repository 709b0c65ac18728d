namespace Engine.Autograd;

/// <summary>
/// Anomaly detection (<c>engine train --detect-anomaly</c>): inside <see cref="Detect"/>, every
/// op's output (checked in <see cref="Tape.Record"/>, which every op calls) and every gradient a
/// backward adds into (checked in <see cref="Tape.Backward"/>) is read back and tested for NaN
/// and infinity; the first non-finite one stops the step with an <see cref="EngineException"/>
/// naming the op, whether forward or backward, and the tensor's shape. Slow (every value is
/// copied to the host and read), so it is off by default.
/// </summary>
public static class Anomaly
{
    [ThreadStatic] private static int depth;

    public static bool Active => depth > 0;

    /// <summary>Checks every op until the handle is disposed.</summary>
    public static IDisposable Detect()
    {
        depth++;
        return new Exit();
    }

    private sealed class Exit : IDisposable
    {
        private bool done;
        public void Dispose() { if (!done) { done = true; depth--; } }
    }

    internal static void CheckForward(string op, Tensor output)
    {
        if (FirstNonFinite(output) is { } bad)
            throw new EngineException($"anomaly: the forward of op '{op}' produced {bad} in its output {Shape.Format(output.Shape)} (the first non-finite value of this step)");
    }

    internal static void CheckBackward(Node node)
    {
        foreach (var input in node.Inputs)
            if (input.Grad is { } g && FirstNonFinite(g) is { } bad)
                throw new EngineException($"anomaly: the backward of op '{node.Op}' produced {bad} in the gradient of an input {Shape.Format(input.Shape)} (the first non-finite gradient of this step)");
    }

    /// <summary>"NaN at element i", "+inf at element i", or null when every element is finite (integer tensors are always finite).</summary>
    private static string? FirstNonFinite(Tensor t)
    {
        if (t.DType is not (DType.F32 or DType.F64)) return null;
        var v = t.ToDoubleArray();
        for (int i = 0; i < v.Length; i++)
            if (!double.IsFinite(v[i])) return $"{(double.IsNaN(v[i]) ? "NaN" : v[i] > 0 ? "+inf" : "-inf")} at element {i}";
        return null;
    }
}
