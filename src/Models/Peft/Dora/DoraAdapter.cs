using Engine.Autograd;
using Engine.Models.Peft.Lora;
using Engine.Nn;

namespace Engine.Models.Peft.Dora;

/// <summary>
/// One DoRA adapter (weight-decomposed LoRA, Liu et al. 2024; PEFT's use_dora) on a frozen linear
/// layer W [out, in] with bias b:
/// <code>
/// y = m ⊙ (W + s·B A) x / ‖W + s·B A‖ + b        ‖·‖: the norm of each output feature's row, [out]
/// </code>
/// A [r, in], B [out, r] and s as in LoRA (<see cref="LoraOptions"/>); the magnitude m [out] starts
/// as ‖W‖ (B = 0), so step 0 computes the base layer. The norm is a constant in the backward
/// (detached, as PEFT does after the DoRA paper's section 4.3): gradients reach m, A and B through
/// m / ‖·‖ and the adapted product, not through the norm. With dropout on the adapter's input (training), PEFT's form
/// y = W x + b + (g − 1) ⊙ W dropout(x) + g ⊙ s·B A dropout(x), g = m / ‖W + s·B A‖, which is the
/// formula above when dropout keeps everything.
///
/// The row norm is computed on the device from catalog ops, without a square root:
/// ‖v‖ = ⟨v, rms_norm(v)⟩ / √n for a row v of n values (rms_norm(v) = v / √(mean(v²) + ε), ε = 1e-30,
/// a relative change below 1e-12 for any weight row that is not all but zero).
///
/// Parameters, named as PEFT names them when attached at the base layer's path:
/// "lora_A.weight", "lora_B.weight", and "lora_magnitude_vector" [out] (PEFT's state dict key,
/// which drops the ".weight" of its DoraLinearLayer).
/// </summary>
public sealed class DoraAdapter : LowRankAdapter
{
    public const string MagnitudeName = "lora_magnitude_vector";
    private const double Eps = 1e-30;

    public Tensor Magnitude { get; }
    private double[]? mergedScale;

    public DoraAdapter(Linear baseLayer, LoraOptions o, Random rng, DropoutSeeds seeds) : base(baseLayer, o, rng, seeds)
    {
        int outFeatures = baseLayer.Weight.Dim(0), inFeatures = baseLayer.Weight.Dim(1);
        var w = baseLayer.Weight.ToDoubleArray();
        var norms = new double[outFeatures];
        for (int r = 0; r < outFeatures; r++)
        {
            double sum = 0;
            for (int j = 0; j < inFeatures; j++) sum += w[r * inFeatures + j] * w[r * inFeatures + j];
            norms[r] = Math.Sqrt(sum);
        }
        Magnitude = Param(MagnitudeName, Tensor.FromDoubles(norms, [outFeatures], baseLayer.Weight.DType));
    }

    /// <summary>W + s·B A [out, in], recorded when gradients are on.</summary>
    private Tensor Adapted() => Ops.Add(Base.Weight, Ops.Scale(Ops.MatMul(B, A), Scale));

    /// <summary>‖W + s·B A‖ per output feature [out], a constant (computed without recording).</summary>
    public Tensor WeightNorm()
    {
        using var noGrad = Tape.NoGrad();
        var v = Adapted();
        int n = v.Dim(1);
        var ones = Tensor.Full([n], 1.0, v.DType).To(v.Device);
        return Ops.Scale(Ops.Sum(Ops.Mul(v, Ops.RmsNorm(v, ones, Eps))), 1.0 / Math.Sqrt(n));
    }

    public override Tensor Forward(Tensor x)
    {
        if (Merged) return Base.Forward(x);
        var g = Ops.Div(Magnitude, WeightNorm());
        if (!Dropping)
        {
            var y = Ops.Mul(Ops.Add(Ops.Linear(x, Base.Weight), LowRank(x)), g);
            return Base.Bias is null ? y : Ops.Add(y, Base.Bias);
        }
        var input = AdapterInput(x);
        var minusOne = Ops.Sub(g, Tensor.Full([g.Dim(0)], 1.0, g.DType).To(g.Device));
        return Ops.Add(Ops.Add(Base.Forward(x), Ops.Mul(Ops.Linear(input, Base.Weight), minusOne)), Ops.Mul(LowRank(input), g));
    }

    /// <summary>W ← g ⊙ (W + s·B A) row by row, remembering g.</summary>
    protected override void Fold()
    {
        var g = Ops.Div(Magnitude, WeightNorm());
        mergedScale = g.ToDoubleArray();
        Backend.Backends.Copy(Ops.Mul(Adapted(), g.Reshape(g.Dim(0), 1)), Base.Weight);
    }

    /// <summary>W ← W / g − s·B A with the g of the merge.</summary>
    protected override void Unfold()
    {
        var g = Tensor.FromDoubles(mergedScale!, [mergedScale!.Length, 1], Base.Weight.DType).To(Base.Weight.Device);
        Backend.Backends.Copy(Ops.Sub(Ops.Div(Base.Weight, g), Ops.Scale(Ops.MatMul(B, A), Scale)), Base.Weight);
    }
}
