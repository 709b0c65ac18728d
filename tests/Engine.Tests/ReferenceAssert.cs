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
    public static void Close(Tensor actual, IWeightSource reference, string name, double tol, Tensor? mask = null)
    {
        var expected = reference.ReadAs(name, DType.F64).ToDoubleArray();
        var a = actual.ToDoubleArray();
        Assert.That(a.Length, Is.EqualTo(expected.Length), name);
        var keep = mask?.ToIntArray();
        int width = keep is null ? 1 : a.Length / keep.Length;
        double scale = Math.Max(1.0, expected.Max(Math.Abs));
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

    /// <summary>Every parameter got a gradient matching "grad.NAME", and every reference gradient has a parameter.</summary>
    public static void EveryGradient(Module model, IWeightSource reference, double tol)
    {
        int checkedGrads = 0;
        foreach (var (name, p) in model.NamedParameters())
        {
            Assert.That(p.Grad, Is.Not.Null, $"{name} got no gradient");
            Close(p.Grad!, reference, "grad." + name, tol);
            checkedGrads++;
        }
        Assert.That(checkedGrads, Is.EqualTo(reference.Names.Count(n => n.StartsWith("grad."))), "every reference gradient has a parameter");
    }
}
