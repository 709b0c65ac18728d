using Engine.Autograd;

namespace Engine;

/// <summary>The outcome of one gradient check.</summary>
public sealed record GradCheckResult(string Op, string Case, double MaxRelError, bool ShapeOk, bool Passed, string? Error = null);

/// <summary>
/// Finite-difference gradient checking in float64. For a case with output y, the check draws a
/// random R of y's shape and compares, for every element of every differentiable input, the
/// hand-written backward's ∂(Σ R ⊙ y)/∂x against the central difference
/// Σ R ⊙ (y(x + h) − y(x − h)) / 2h, with h = 1e-6·max(1, |x|). The error of an element is |analytic − numeric| divided by
/// max(|analytic|, |numeric|, 1e-3 · the largest numeric gradient of the case).
/// </summary>
public static class GradCheck
{
    public const double DefaultTolerance = 1e-6;

    /// <summary>Checks a catalog entry on a fresh case drawn from <paramref name="seed"/>.</summary>
    public static GradCheckResult Check(OpEntry entry, int seed, double tolerance = DefaultTolerance)
    {
        var rng = new Random(seed);
        OpCase c;
        try { c = entry.Generate(rng, DType.F64); }
        catch (Exception e) { return new(entry.Name, "(generator)", double.NaN, false, false, e.Message); }
        return Check(entry.Name, c, seed, tolerance);
    }

    public static GradCheckResult Check(string name, OpCase c, int seed, double tolerance = DefaultTolerance)
    {
        try
        {
            using var scope = Scope.Begin();
            var inputs = c.Inputs.Select((t, i) => c.Differentiable[i] ? Leaf(t) : t).ToArray();
            var y = c.Apply(inputs);
            bool shapeOk = Shape.Equal(y.Shape, c.ExpectedShape);
            var weights = Tensor.Randn(y.ShapeArray, new Random(seed ^ 0x5EED), DType.F64);
            y.Backward(weights);

            var w = weights.ToDoubleArray();
            double[] Out(Tensor[] xs)
            {
                using var _ = Tape.NoGrad();
                return c.Apply(xs).ToDoubleArray();
            }
            // Σ_i w_i (o⁺_i − o⁻_i) / 2h: differencing each output before the weighted sum keeps
            // the rounding error of a large Σ w·o out of the estimate.
            double Central(double[] plus, double[] minus, double h)
            {
                double s = 0;
                for (int i = 0; i < w.Length; i++) s += w[i] * (plus[i] - minus[i]);
                return s / (2 * h);
            }

            var analytic = new List<double>();
            var numeric = new List<double>();
            for (int k = 0; k < inputs.Length; k++)
            {
                if (!c.Differentiable[k]) continue;
                var x = inputs[k];
                var grad = x.Grad?.ToDoubleArray() ?? new double[x.Numel];
                var data = x.Span<double>();
                for (int i = 0; i < data.Length; i++)
                {
                    double orig = x.Span<double>()[i];
                    double h = 1e-6 * Math.Max(1.0, Math.Abs(orig));
                    x.Span<double>()[i] = orig + h;
                    var plus = Out(inputs);
                    x.Span<double>()[i] = orig - h;
                    var minus = Out(inputs);
                    x.Span<double>()[i] = orig;
                    numeric.Add(Central(plus, minus, h));
                    analytic.Add(grad[i]);
                }
            }

            double scale = numeric.Count == 0 ? 0 : numeric.Max(Math.Abs);
            double floor = Math.Max(1e-3 * scale, 1e-10);
            double maxErr = 0;
            for (int i = 0; i < numeric.Count; i++)
            {
                double a = analytic[i], n = numeric[i];
                double err = Math.Abs(a - n) / Math.Max(Math.Max(Math.Abs(a), Math.Abs(n)), floor);
                if (double.IsNaN(err)) err = double.PositiveInfinity;
                maxErr = Math.Max(maxErr, err);
            }
            return new(name, c.Description, maxErr, shapeOk, shapeOk && maxErr <= tolerance);
        }
        catch (Exception e) when (e is EngineException or InvalidOperationException or ArgumentException or IndexOutOfRangeException)
        {
            return new(name, c.Description, double.NaN, false, false, e.Message);
        }
    }

    /// <summary>A fresh leaf copy that requires gradients (the case's own tensor stays untouched).</summary>
    private static Tensor Leaf(Tensor t)
    {
        var copy = Tensor.Empty(t.ShapeArray, t.DType, t.Device);
        Backend.Backends.Copy(t, copy);
        copy.RequiresGrad = true;
        return copy;
    }
}
