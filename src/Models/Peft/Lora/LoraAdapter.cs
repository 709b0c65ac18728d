using Engine.Autograd;
using Engine.Nn;

namespace Engine.Models.Peft.Lora;

/// <summary>
/// What every adapter of the LoRA family has on a frozen linear layer W [out, in]: A [r, in] and
/// B [out, r] ("lora_A.weight", "lora_B.weight"; attached at the base layer's path they get
/// PEFT's names, …attention.self.query.lora_A.weight), the scale s = α/r (α/√r with rsLoRA) and
/// dropout on the adapter's input. A starts as PEFT draws it (kaiming_uniform_ with a = √5, i.e.
/// U(−1/√in, 1/√in)); B starts at zero. The base weight is a frozen parameter (RequiresGrad
/// false), so the matmul's backward does no weight-gradient work for it.
/// </summary>
public abstract class LowRankAdapter : Module
{
    public Linear Base { get; }
    public Tensor A { get; }
    public Tensor B { get; }
    public double Scale { get; }
    public double DropoutP { get; }
    public bool Merged { get; private set; }
    private readonly DropoutSeeds seeds;

    protected LowRankAdapter(Linear baseLayer, LoraOptions o, Random rng, DropoutSeeds seeds)
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

    /// <summary>Whether dropout acts on the adapter's input now (training, p &gt; 0).</summary>
    protected bool Dropping => Training && DropoutP > 0;

    /// <summary>The adapter's input: dropout(x) when <see cref="Dropping"/>, else x.</summary>
    protected Tensor AdapterInput(Tensor x) => Dropping ? Ops.Dropout(x, DropoutP, seeds.Next()) : x;

    /// <summary>s · B (A input): [.., in] → [.., out].</summary>
    protected Tensor LowRank(Tensor input) => Ops.Scale(Ops.Linear(Ops.Linear(input, A), B), Scale);

    /// <summary>The adapted layer's forward (the base layer's alone once merged).</summary>
    public abstract Tensor Forward(Tensor x);

    /// <summary>Folds the adapter into W in place; the adapter path is then skipped.</summary>
    public void Merge()
    {
        if (Merged) return;
        using var noGrad = Tape.NoGrad();
        using var scope = Scope.Begin();
        Fold();
        Merged = true;
    }

    /// <summary>Undoes <see cref="Merge"/> (up to rounding).</summary>
    public void Unmerge()
    {
        if (!Merged) return;
        using var noGrad = Tape.NoGrad();
        using var scope = Scope.Begin();
        Unfold();
        Merged = false;
    }

    /// <summary>W ← the merged weight (called without recording, in a scope).</summary>
    protected abstract void Fold();

    /// <summary>W ← the base weight again.</summary>
    protected abstract void Unfold();
}

/// <summary>
/// One LoRA adapter: y = W x + b + s · B (A dropout(x)). B = 0 at the start, so the adapted layer
/// computes exactly the base layer at step 0. Merging folds s · B A into W (inference and export).
/// </summary>
public sealed class LoraAdapter(Linear baseLayer, LoraOptions o, Random rng, DropoutSeeds seeds) : LowRankAdapter(baseLayer, o, rng, seeds)
{
    public override Tensor Forward(Tensor x)
    {
        var y = Base.Forward(x);
        return Merged ? y : Ops.Add(y, LowRank(AdapterInput(x)));
    }

    protected override void Fold() => Base.Weight.Backend.Axpy(Ops.MatMul(B, A), Base.Weight, Scale);

    protected override void Unfold() => Base.Weight.Backend.Axpy(Ops.MatMul(B, A), Base.Weight, -Scale);
}
