using Engine.Autograd;
using Engine.Nn;

namespace Engine.Models.Peft.Lora;

/// <summary>
/// One LoRA adapter on a frozen linear layer W [out, in]:
/// y = W x + b + s · B (A dropout(x)), A [r, in], B [out, r], s = α/r (α/√r with rsLoRA).
/// A starts as PEFT draws it (kaiming_uniform_ with a = √5, i.e. U(−1/√in, 1/√in)); B starts at
/// zero, so the adapted layer computes exactly the base layer at step 0. Its parameters are
/// "lora_A.weight" and "lora_B.weight"; attached to a classifier at the base layer's path they
/// get PEFT's names (…attention.self.query.lora_A.weight).
///
/// The base weight is a frozen parameter (RequiresGrad false), so the matmul's backward does no
/// weight-gradient work for it; only the input gradient flows through.
/// <see cref="Merge"/> folds s · B A into W in place (inference and export); a merged adapter
/// computes the base layer alone.
/// </summary>
public sealed class LoraAdapter : Module
{
    public Linear Base { get; }
    public Tensor A { get; }
    public Tensor B { get; }
    public double Scale { get; }
    public double DropoutP { get; }
    public bool Merged { get; private set; }
    private readonly DropoutSeeds seeds;

    public LoraAdapter(Linear baseLayer, LoraOptions o, Random rng, DropoutSeeds seeds)
    {
        Base = baseLayer;
        this.seeds = seeds;
        int outFeatures = baseLayer.Weight.Dim(0), inFeatures = baseLayer.Weight.Dim(1);
        var dtype = baseLayer.Weight.DType;
        double bound = 1.0 / Math.Sqrt(inFeatures);
        A = Param("lora_A.weight", Tensor.Uniform([o.Rank, inFeatures], rng, -bound, bound, dtype));
        B = Param("lora_B.weight", Tensor.Zeros([outFeatures, o.Rank], dtype));
        Scale = o.Scale;
        DropoutP = o.Dropout;
    }

    public int Rank => A.Dim(0);

    public Tensor Forward(Tensor x)
    {
        var y = Base.Forward(x);
        if (Merged) return y;
        var input = Training && DropoutP > 0 ? Ops.Dropout(x, DropoutP, seeds.Next()) : x;
        return Ops.Add(y, Ops.Scale(Ops.Linear(Ops.Linear(input, A), B), Scale));
    }

    /// <summary>W += s · B A (in place); the adapter path is then skipped.</summary>
    public void Merge()
    {
        if (Merged) return;
        Fold(+1);
        Merged = true;
    }

    /// <summary>W −= s · B A: undoes <see cref="Merge"/> (up to rounding).</summary>
    public void Unmerge()
    {
        if (!Merged) return;
        Fold(-1);
        Merged = false;
    }

    private void Fold(int sign)
    {
        using var noGrad = Tape.NoGrad();
        using var scope = Scope.Begin();
        var delta = Ops.MatMul(B, A);
        Base.Weight.Backend.Axpy(delta, Base.Weight, sign * Scale);
    }
}
