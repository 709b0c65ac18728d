namespace Engine.Optim;

/// <summary>
/// Stochastic gradient descent with torch.optim.SGD semantics: for each parameter p with
/// gradient g,
/// <code>
/// d ← g + λ·p                                  L2 weight decay, added to the gradient (λ = 0 for no-decay parameters)
/// b ← d on the parameter's first update, else μ·b + (1 − dampening)·d     (only when μ ≠ 0)
/// d ← d + μ·b if nesterov, else b              (only when μ ≠ 0)
/// p ← p − lr·d
/// </code>
/// The momentum buffer b is the parameter's state buffer 0; with μ = 0 there is no state.
/// The gradient itself is not modified.
/// </summary>
public sealed class Sgd : Optimizer
{
    public Sgd(IEnumerable<Tensor> parameters, double learningRate, double momentum = 0, double dampening = 0,
               double weightDecay = 0, bool nesterov = false, Func<Tensor, bool>? noDecay = null,
               Func<Tensor, double>? learningRateScale = null)
        : base(parameters, learningRate, noDecay, learningRateScale)
    {
        if (!(momentum >= 0)) throw new EngineException($"SGD: momentum {momentum} must be ≥ 0");
        if (!(weightDecay >= 0)) throw new EngineException($"SGD: weight decay {weightDecay} must be ≥ 0");
        if (nesterov && (momentum <= 0 || dampening != 0))
            throw new EngineException("SGD: nesterov momentum needs a momentum > 0 and zero dampening");
        Momentum = momentum;
        Dampening = dampening;
        WeightDecay = weightDecay;
        Nesterov = nesterov;
    }

    public double Momentum { get; }
    public double Dampening { get; }
    public bool Nesterov { get; }
    /// <summary>λ for the parameters that decay (the no-decay ones use 0).</summary>
    public double WeightDecay { get; set; }

    protected override void Update(ParameterState state, Tensor grad)
    {
        var p = state.Parameter;
        var buffer = Momentum != 0 ? state.Buffer(0) : null;
        p.Backend.Sgd(p, grad, buffer, state.LearningRate(this), Momentum, Dampening, state.Decays ? WeightDecay : 0.0, Nesterov,
                      firstStep: state.Steps == 1);
    }
}
