namespace Engine.Optim;

/// <summary>
/// AdamW with torch.optim.AdamW semantics (amsgrad off): for each parameter p with gradient g,
/// at its own step t (1 on the first update),
/// <code>
/// p ← p · (1 − lr·λ)                          decoupled weight decay (λ = 0 for no-decay parameters)
/// m ← β₁·m + (1 − β₁)·g                       first moment
/// v ← β₂·v + (1 − β₂)·g²                      second moment
/// p ← p − lr/(1 − β₁ᵗ) · m / (√v / √(1 − β₂ᵗ) + ε)   bias-corrected update
/// </code>
/// The moments are the parameter's state buffers 0 (m) and 1 (v), zeros before the first update.
/// The defaults are PyTorch's (β = (0.9, 0.999), ε = 1e-8, λ = 0.01).
/// </summary>
public sealed class AdamW : Optimizer
{
    public AdamW(IEnumerable<Tensor> parameters, double learningRate = 1e-3, double beta1 = 0.9, double beta2 = 0.999,
                 double eps = 1e-8, double weightDecay = 0.01, Func<Tensor, bool>? noDecay = null,
                 Func<Tensor, double>? learningRateScale = null)
        : base(parameters, learningRate, noDecay, learningRateScale)
    {
        if (!(beta1 >= 0 && beta1 < 1)) throw new EngineException($"AdamW: beta1 {beta1} must be in [0, 1)");
        if (!(beta2 >= 0 && beta2 < 1)) throw new EngineException($"AdamW: beta2 {beta2} must be in [0, 1)");
        if (!(eps >= 0)) throw new EngineException($"AdamW: eps {eps} must be ≥ 0");
        if (!(weightDecay >= 0)) throw new EngineException($"AdamW: weight decay {weightDecay} must be ≥ 0");
        Beta1 = beta1;
        Beta2 = beta2;
        Eps = eps;
        WeightDecay = weightDecay;
    }

    public double Beta1 { get; }
    public double Beta2 { get; }
    public double Eps { get; }
    /// <summary>λ for the parameters that decay (the no-decay ones use 0).</summary>
    public double WeightDecay { get; set; }

    protected override void Update(ParameterState state, Tensor grad)
    {
        var p = state.Parameter;
        var m = state.Buffer(0);
        var v = state.Buffer(1);
        p.Backend.AdamW(p, grad, m, v, state.LearningRate(this), Beta1, Beta2, Eps, state.Decays ? WeightDecay : 0.0, state.Steps);
    }
}
