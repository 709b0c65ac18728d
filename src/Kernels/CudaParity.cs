namespace Engine.Kernels;

/// <summary>The outcome of one CPU-vs-CUDA comparison: the largest scaled error of the forward
/// output and of the input gradients.</summary>
public sealed record ParityResult(string Op, string Case, double ForwardError, double GradientError, bool Passed, string? Error = null);

/// <summary>
/// CPU-vs-CUDA parity of a catalog op. The case is drawn twice from one seed: in F64 for the CPU
/// (the reference, itself gradient-checked in F64) and in F32 for the GPU (same shapes, same
/// values rounded to float). Both run forward, then backward from the same random output
/// weights R (∂Σ R⊙y/∂x). The error of a tensor is max|gpu − cpu| / max(1, max|cpu|); the F32
/// tolerance is <see cref="F32Tolerance"/>.
/// </summary>
public static class CudaParity
{
    /// <summary>F32 against F64: a few float32 roundings over short sums (≈ 1e-6) with margin.</summary>
    public const double F32Tolerance = 1e-4;

    /// <summary>The comparison for one seed; <paramref name="type"/> is the candidate's element type
    /// (F64 checks the float64 kernels, at a tolerance of roundoff).</summary>
    public static ParityResult Check(OpEntry entry, int seed, Device device, double tolerance = F32Tolerance, DType type = DType.F32)
    {
        OpCase reference, candidate;
        try
        {
            reference = entry.Generate(new Random(seed), DType.F64);
            candidate = entry.Generate(new Random(seed), type);
        }
        catch (Exception e) when (e is EngineException or ArgumentException) { return new(entry.Name, "(generator)", double.NaN, double.NaN, false, e.Message); }
        try
        {
            using var scope = Scope.Begin();
            var (yc, gc) = Run(reference, Device.Cpu, seed);
            var (yg, gg) = Run(candidate, device, seed);
            double fwd = Error(yg, yc), grad = 0;
            for (int i = 0; i < gc.Length; i++)
                if (gc[i] is { } c) grad = Math.Max(grad, gg[i] is { } g ? Error(g, c) : double.PositiveInfinity);
            return new(entry.Name, reference.Description, fwd, grad, fwd <= tolerance && grad <= tolerance);
        }
        catch (Exception e) when (e is EngineException or InvalidOperationException or ArgumentException)
        {
            return new(entry.Name, reference.Description, double.NaN, double.NaN, false, e.Message);
        }
    }

    /// <summary>max|a − b| / max(1, max|b|); NaN counts as infinitely wrong unless both are NaN.</summary>
    public static double Error(double[] actual, double[] expected)
    {
        if (actual.Length != expected.Length) return double.PositiveInfinity;
        double scale = 1, worst = 0;
        foreach (var v in expected) if (!double.IsNaN(v)) scale = Math.Max(scale, Math.Abs(v));
        for (int i = 0; i < actual.Length; i++)
        {
            if (double.IsNaN(actual[i]) && double.IsNaN(expected[i])) continue;
            double d = Math.Abs(actual[i] - expected[i]);
            worst = Math.Max(worst, double.IsNaN(d) ? double.PositiveInfinity : d);
        }
        return worst / scale;
    }

    private static (double[] Output, double[]?[] Gradients) Run(OpCase c, Device device, int seed)
    {
        var inputs = c.Inputs.Select((t, i) =>
        {
            var copy = Tensor.Empty(t.ShapeArray, t.DType, device);
            Backend.Backends.Copy(t, copy);
            if (c.Differentiable[i]) copy.RequiresGrad = true;
            return copy;
        }).ToArray();
        var y = c.Apply(inputs);
        var weights = Tensor.Randn(y.ShapeArray, new Random(seed ^ 0x5EED), y.DType).To(device);
        if (y.RequiresGrad) y.Backward(weights);
        var grads = inputs.Select((x, i) => c.Differentiable[i] ? x.Grad?.ToDoubleArray() ?? new double[x.Numel] : null).ToArray();
        return (y.ToDoubleArray(), grads);
    }
}
