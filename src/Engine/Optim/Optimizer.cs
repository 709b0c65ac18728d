namespace Engine.Optim;

/// <summary>
/// What an optimizer keeps for one trainable parameter: its state buffers (moments, momentum),
/// made lazily on the parameter's first update, and how many updates it has had.
///
/// Buffers are long-lived tensors with the parameter's shape, element type and device: they are
/// never released by a step scope, even when <see cref="Optimizer.Step"/> runs inside one.
/// </summary>
public sealed class ParameterState
{
    private readonly List<Tensor> buffers = new();

    internal ParameterState(Tensor parameter, bool decays, double learningRateScale = 1.0)
    {
        Parameter = parameter;
        Decays = decays;
        LearningRateScale = learningRateScale;
    }

    public Tensor Parameter { get; }

    /// <summary>False for parameters the optimizer was told not to decay (biases, norm weights).</summary>
    public bool Decays { get; }

    /// <summary>This parameter's learning rate as a multiple of <see cref="Optimizer.LearningRate"/>
    /// (1 unless the optimizer was given a <c>learningRateScale</c>): a parameter group with its
    /// own peak rate that follows the same schedule, as a PyTorch param group whose lr is a fixed
    /// multiple of the others'.</summary>
    public double LearningRateScale { get; }

    /// <summary>The rate this parameter's next update uses: the optimizer's current rate times
    /// <see cref="LearningRateScale"/>.</summary>
    public double LearningRate(Optimizer optimizer) => optimizer.LearningRate * LearningRateScale;   // × 1 is exact: unscaled runs keep their bits

    /// <summary>How many updates this parameter has had, counting the one in progress. A step
    /// that finds the parameter without a gradient does not count (as in PyTorch, where the
    /// bias correction of Adam uses each parameter's own step count).</summary>
    public int Steps { get; internal set; }

    /// <summary>The state buffers made so far (empty until the first update).</summary>
    public IReadOnlyList<Tensor> Buffers => buffers;

    /// <summary>State buffer number <paramref name="index"/>, made (zeros, long-lived, like the
    /// parameter) on first use. Buffers are made in index order.</summary>
    public Tensor Buffer(int index)
    {
        if (index < buffers.Count) return buffers[index];
        if (index != buffers.Count)
            throw new ArgumentOutOfRangeException(nameof(index), $"buffer {index} asked for before buffer {buffers.Count}");
        var p = Parameter;
        // The internal constructor with longLived: true is the path Tape.GradOf takes for a
        // parameter's gradient: the tensor is not adopted by the scope that may be open now.
        var buffer = new Tensor(p.Backend.Allocate(p.DType, p.Numel, zero: true), p.ShapeArray, 0, longLived: true)
        {
            Name = p.Name is null ? null : $"{p.Name}.state{index}",
        };
        buffers.Add(buffer);
        return buffer;
    }
}

/// <summary>
/// The base of every optimizer. It holds the trainable parameters (those with
/// <see cref="Tensor.RequiresGrad"/> set when the optimizer is made; frozen ones are dropped and
/// never get state), their state, and the learning rate.
///
/// Conventions:
/// - <see cref="Step"/> updates every parameter that has a gradient, in place, with the current
///   <see cref="LearningRate"/>; a parameter whose <see cref="Tensor.Grad"/> is null is skipped
///   (no update, no state made, its step count unchanged).
/// - The update itself runs in the parameter's backend (<see cref="Backend.IBackend.AdamW"/>,
///   <see cref="Backend.IBackend.Sgd"/>), so the same optimizer drives CPU and GPU parameters.
/// - <see cref="ZeroGrad"/> fills gradients with zeros and keeps the buffers (no allocation in
///   the training loop); <c>ZeroGrad(setToNone: true)</c> drops them instead.
/// - Weight decay can be switched off per parameter with a <c>noDecay</c> predicate, the two
///   parameter groups of BERT fine-tuning: <c>noDecay: Optimizer.VectorsAndScalars</c> exempts
///   biases and norm weights (every parameter of rank ≤ 1).
/// - A <c>learningRateScale</c> gives a parameter its own multiple of the learning rate (a new
///   classification head trained faster than the pretrained body); a schedule that sets
///   <see cref="LearningRate"/> moves every group together.
/// </summary>
public abstract class Optimizer
{
    private readonly List<ParameterState> states = new();
    private readonly List<Tensor> parameters = new();
    private readonly Dictionary<Tensor, ParameterState> byParameter = new(ReferenceEqualityComparer.Instance);

    protected Optimizer(IEnumerable<Tensor> parameters, double learningRate, Func<Tensor, bool>? noDecay,
                        Func<Tensor, double>? learningRateScale = null)
    {
        CheckLearningRate(learningRate);
        LearningRate = learningRate;
        foreach (var p in parameters)
        {
            if (!p.RequiresGrad || byParameter.ContainsKey(p)) continue;
            if (!p.IsLeaf || !p.IsLongLived)
                throw new EngineException($"optimizer: {Describe(p)} is not a long-lived leaf tensor; make parameters with Tensor.Parameter, outside any step scope");
            double scale = learningRateScale?.Invoke(p) ?? 1.0;
            if (!(scale >= 0) || double.IsInfinity(scale))
                throw new EngineException($"optimizer: the learning-rate scale of {Describe(p)} is {scale}; it must be finite and ≥ 0");
            var state = new ParameterState(p, decays: noDecay is null || !noDecay(p), scale);
            states.Add(state);
            byParameter.Add(p, state);
            this.parameters.Add(p);
        }
        Parameters = this.parameters.AsReadOnly();
    }

    /// <summary>A <c>noDecay</c> predicate for the usual fine-tuning split: no weight decay on
    /// biases, norm weights and other parameters of rank ≤ 1.</summary>
    public static bool VectorsAndScalars(Tensor p) => p.Rank <= 1;

    private double learningRate;

    /// <summary>The learning rate the next <see cref="Step"/> uses (a schedule sets it each step).</summary>
    public double LearningRate
    {
        get => learningRate;
        set { CheckLearningRate(value); learningRate = value; }
    }

    /// <summary>How many times <see cref="Step"/> has run.</summary>
    public int StepCount { get; private set; }

    /// <summary>The trainable parameters, in the order they were given.</summary>
    public IReadOnlyList<Tensor> Parameters { get; }

    /// <summary>The state of <paramref name="parameter"/>, or null when the optimizer does not
    /// train it (it was frozen when the optimizer was made, or was never given).</summary>
    public ParameterState? StateOf(Tensor parameter) => byParameter.GetValueOrDefault(parameter);

    /// <summary>One update of every parameter that has a gradient.</summary>
    public void Step()
    {
        foreach (var state in states)
        {
            var p = state.Parameter;
            if (p.Grad is not { } grad) continue;
            if (!Shape.Equal(grad.Shape, p.Shape) || grad.DType != p.DType || grad.Device != p.Device)
                throw new EngineException($"optimizer: the gradient of {Describe(p)} is {grad.DType} {Shape.Format(grad.Shape)} on {grad.Device}; " +
                                          $"expected {p.DType} {Shape.Format(p.Shape)} on {p.Device}");
            state.Steps++;
            Update(state, grad);
        }
        StepCount++;
    }

    /// <summary>Updates one parameter in place from its gradient. <paramref name="state"/>.Steps
    /// already counts this update (1 on the first).</summary>
    protected abstract void Update(ParameterState state, Tensor grad);

    /// <summary>Clears the gradients of the trainable parameters before the next accumulation:
    /// fills them with zeros (default; the buffers are reused, and a parameter that then gets no
    /// gradient is still stepped with a zero gradient, as PyTorch's zero_grad(set_to_none=False)),
    /// or, with <paramref name="setToNone"/>, releases them so such a parameter is skipped.</summary>
    public void ZeroGrad(bool setToNone = false)
    {
        foreach (var state in states)
        {
            var p = state.Parameter;
            if (p.Grad is not { } grad) continue;
            if (setToNone)
            {
                p.Grad = null;
                if (grad.IsLongLived) grad.Release();
            }
            else grad.Backend.Fill(grad, 0.0);
        }
    }

    /// <summary>
    /// The optimizer's state for a checkpoint: every buffer as "<c>NAME.state.I</c>" (NAME from
    /// <paramref name="nameOf"/>, usually the parameter's checkpoint name) and each parameter's
    /// step count as "<c>NAME</c>" → steps, plus the optimizer's own step count.
    /// </summary>
    public (List<KeyValuePair<string, Tensor>> Buffers, Dictionary<string, int> Steps, int StepCount) ExportState(Func<Tensor, string> nameOf)
    {
        var buffers = new List<KeyValuePair<string, Tensor>>();
        var steps = new Dictionary<string, int>();
        foreach (var state in states)
        {
            var name = nameOf(state.Parameter);
            steps[name] = state.Steps;
            for (int i = 0; i < state.Buffers.Count; i++) buffers.Add(new($"{name}.state.{i}", state.Buffers[i]));
        }
        return (buffers, steps, StepCount);
    }

    /// <summary>Restores what <see cref="ExportState"/> wrote, so the next <see cref="Step"/> is
    /// the one the saved run would have taken. A buffer of the wrong shape, or a parameter the
    /// checkpoint does not know, is an error naming it.</summary>
    public void ImportState(IReadOnlyDictionary<string, Tensor> buffers, IReadOnlyDictionary<string, int> steps, int stepCount, Func<Tensor, string> nameOf)
    {
        foreach (var state in states)
        {
            var name = nameOf(state.Parameter);
            if (!steps.TryGetValue(name, out var n)) throw new EngineException($"optimizer state: the checkpoint has nothing for {name}");
            state.Steps = n;
            for (int i = 0; buffers.TryGetValue($"{name}.state.{i}", out var saved); i++)
            {
                var b = state.Buffer(i);
                if (!Shape.Equal(saved.Shape, b.Shape) || saved.DType != b.DType)
                    throw new EngineException($"optimizer state: {name}.state.{i} is {saved.DType} {Shape.Format(saved.Shape)}, expected {b.DType} {Shape.Format(b.Shape)}");
                Backend.Backends.Copy(saved, b);
            }
        }
        StepCount = stepCount;
    }

    private static void CheckLearningRate(double lr)
    {
        if (!(lr >= 0) || double.IsInfinity(lr)) throw new EngineException($"optimizer: learning rate {lr} must be finite and ≥ 0");
    }

    private static string Describe(Tensor p) => p.Name ?? $"parameter {Shape.Format(p.Shape)}";
}
