using Engine.IO;
using Engine.Nn;
using NUnit.Framework;

namespace Engine.Tests;

/// <summary>Comparisons against reference fixtures (hidden states, logits, gradients), shared by the model tests.</summary>
public static class ReferenceAssert
{
    /// <summary>|engine − reference| ≤ tol · max(1, max|reference|). With a mask [B, T], hidden states
    /// at padded positions are skipped: a left-padded query sees no unmasked key, and transformers
    /// (a uniform softmax over all keys) and the engine (causal keys only) fill such rows
    /// differently; nothing downstream reads them.</summary>
    public static void Close(Tensor actual, IWeightSource reference, string name, double tol, Tensor? mask = null, double? scaleOverride = null)
    {
        var expected = reference.ReadAs(name, DType.F64).ToDoubleArray();
        var a = actual.ToDoubleArray();
        Assert.That(a.Length, Is.EqualTo(expected.Length), name);
        var keep = mask?.ToIntArray();
        int width = keep is null ? 1 : a.Length / keep.Length;
        double scale = scaleOverride ?? Math.Max(1.0, expected.Max(Math.Abs));
        double worst = 0;
        int at = -1;
        for (int i = 0; i < a.Length; i++)
        {
            if (keep is not null && keep[i / width] == 0) continue;
            double d = Math.Abs(a[i] - expected[i]);
            if (double.IsNaN(d) || d > worst) { worst = double.IsNaN(d) ? double.PositiveInfinity : d; at = i; }
        }
        Assert.That(worst, Is.LessThanOrEqualTo(tol * scale), $"{name}[{at}]: engine {(at >= 0 ? a[at] : 0)} vs reference {(at >= 0 ? expected[at] : 0)}");
    }

    /// <summary>The share of the model's largest reference gradient below which a tensor's gradient is held to that floor instead of its own scale.</summary>
    public const double GradientFloor = 1e-3;

    /// <summary>The scale each reference gradient "grad.NAME" is compared at: its own max|reference|,
    /// but at least <see cref="GradientFloor"/> × the largest |reference gradient| of the model (the
    /// group's scale). A tensor is held to a relative error of its own, so a gradient of zeros
    /// fails for every tensor whose reference is not itself negligible next to the group (the
    /// old max(1, max|ref|) scale let an all-zero gradient pass for 30 of the tiny BERT's 41
    /// tensors, whose gradients are below 1e-3); BertReferenceTests proves it on zeros.</summary>
    public static Dictionary<string, double> GradientScales(IWeightSource reference)
    {
        var max = reference.Names.Where(n => n.StartsWith("grad.")).ToDictionary(n => n, n => reference.ReadAs(n, DType.F64).ToDoubleArray().Max(Math.Abs));
        double floor = GradientFloor * max.Values.Max();
        return max.ToDictionary(kv => kv.Key, kv => Math.Max(kv.Value, floor));
    }

    /// <summary>Every parameter got a gradient matching "grad.NAME" to <paramref name="tol"/> relative
    /// to <see cref="GradientScales"/>, and every reference gradient has a parameter.</summary>
    public static void EveryGradient(Module model, IWeightSource reference, double tol)
    {
        int checkedGrads = 0;
        var scales = GradientScales(reference);
        foreach (var (name, p) in model.NamedParameters())
        {
            Assert.That(p.Grad, Is.Not.Null, $"{name} got no gradient");
            Assert.That(scales.ContainsKey("grad." + name), $"the reference has no grad.{name}");
            Close(p.Grad!, reference, "grad." + name, tol, scaleOverride: scales["grad." + name]);
            checkedGrads++;
        }
        Assert.That(checkedGrads, Is.EqualTo(reference.Names.Count(n => n.StartsWith("grad."))), "every reference gradient has a parameter");
    }
}
