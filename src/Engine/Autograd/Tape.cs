namespace Engine.Autograd;

/// <summary>
/// One recorded op: its inputs and its hand-written backward. The backward receives the
/// gradient of the op's output and adds (+=) into the gradients of the inputs that require
/// them (<see cref="Tape.GradOf"/>); it skips the work for inputs that do not.
/// </summary>
public sealed class Node(string op, Tensor[] inputs, Action<Tensor> backward)
{
    public string Op { get; } = op;
    public IReadOnlyList<Tensor> Inputs { get; } = inputs;
    internal Action<Tensor> BackwardFn { get; } = backward;
    public override string ToString() => Op;
}

/// <summary>
/// Reverse-mode autograd. Ops record a <see cref="Node"/> on their output when any input
/// requires gradients (and recording is on); <see cref="Backward"/> orders the recorded nodes
/// reachable from the loss into a tape (topological order) and runs each backward in reverse.
/// Gradients accumulate: a tensor used twice receives the sum of both contributions.
///
/// <see cref="OnGradientReady"/> lets a caller act on a leaf's gradient (a parameter's) as soon as
/// it is final, while the backward goes on: data-parallel training starts summing a bucket of
/// gradients over the ranks once every parameter in it is done.
/// </summary>
public static class Tape
{
    [ThreadStatic] private static int noGradDepth;
    [ThreadStatic] private static Action<Tensor>? gradientReady;
    [ThreadStatic] private static Tensor? releasing;

    /// <summary>False inside <see cref="NoGrad"/>.</summary>
    public static bool Recording => noGradDepth == 0;

    /// <summary>Inference mode: ops record nothing until the returned handle is disposed.</summary>
    public static IDisposable NoGrad()
    {
        noGradDepth++;
        return new Exit();
    }

    private sealed class Exit : IDisposable
    {
        private bool done;
        public void Dispose() { if (!done) { done = true; noGradDepth--; } }
    }

    /// <summary>Until the returned handle is disposed, every <see cref="Backward"/> on this thread calls
    /// <paramref name="ready"/> with each leaf that requires gradients (a parameter, or an input that
    /// asked for gradients) once the backward has run every op that takes it as an input, so its
    /// gradient is final for this backward (the leaf's Grad may be null when no gradient reached it).
    /// Leaves come in the order they become final. A hook set inside another replaces it until disposed.
    /// Without a hook the backward does no extra work.</summary>
    public static IDisposable OnGradientReady(Action<Tensor> ready)
    {
        var outer = gradientReady;
        gradientReady = ready;
        return new Restore(() => gradientReady = outer);
    }

    private sealed class Restore(Action restore) : IDisposable
    {
        private bool done;
        public void Dispose() { if (!done) { done = true; restore(); } }
    }

    /// <summary>True when an op with these inputs must record its backward.</summary>
    public static bool Needs(Tensor a) => Recording && a.RequiresGrad;
    public static bool Needs(Tensor a, Tensor? b) => Recording && (a.RequiresGrad || b is { RequiresGrad: true });
    public static bool Needs(Tensor a, Tensor? b, Tensor? c) =>
        Recording && (a.RequiresGrad || b is { RequiresGrad: true } || c is { RequiresGrad: true });
    public static bool Needs(IEnumerable<Tensor?> inputs) => Recording && inputs.Any(t => t is { RequiresGrad: true });

    /// <summary>Attaches a node to <paramref name="output"/> when any input requires gradients.
    /// This is also the way to add a custom op from outside the engine.</summary>
    public static Tensor Record(string op, Tensor output, Tensor[] inputs, Action<Tensor> backward)
    {
        OpProfile.Forward(op);
        if (Anomaly.Active) Anomaly.CheckForward(op, output);
        if (!Needs(inputs)) return output;
        output.Node = new Node(op, inputs, backward);
        output.SetRequiresGradFromOp();
        return output;
    }

    /// <summary>The gradient buffer of <paramref name="t"/>, made (zeros) on first use. It lives as
    /// long as <paramref name="t"/>: a parameter's gradient is long-lived, an activation's is
    /// released with its step scope.</summary>
    public static Tensor GradOf(Tensor t) => t.Grad ?? NewGrad(t, zero: true);

    private static Tensor NewGrad(Tensor t, bool zero)
    {
        var g = new Tensor(t.Backend.Allocate(t.DType, t.Numel, zero), t.ShapeArray, 0, longLived: t.IsLongLived);
        t.Grad = g;
        return g;
    }

    /// <summary>The gradient buffer of <paramref name="t"/> for a backward whose kernel writes every
    /// element and can either assign or add: when <paramref name="t"/> has no gradient yet, a new
    /// buffer left unzeroed and <paramref name="accumulate"/> false (the kernel assigns: no pass to
    /// zero it, no read of the zeros); otherwise its buffer and true.</summary>
    public static Tensor GradToWrite(Tensor t, out bool accumulate)
    {
        accumulate = t.Grad is not null;
        return t.Grad ?? NewGrad(t, zero: false);
    }

    /// <summary>Adds <paramref name="dy"/> (an op's output gradient with <paramref name="t"/>'s number of
    /// elements: a reshape's, an addition's) into <paramref name="t"/>'s gradient. When <paramref name="t"/>
    /// is an activation with no gradient yet and <paramref name="dy"/> is the gradient the tape releases
    /// after the running backward, <paramref name="t"/> takes over dy's storage as a view in its own shape
    /// (no copy, no zeroed buffer); dy is handed over once per backward.</summary>
    public static void AccumulateGrad(Tensor t, Tensor dy)
    {
        if (t.Grad is null && !t.IsLongLived && ReferenceEquals(dy, releasing) && dy.DType == t.DType && dy.Numel == t.Numel)
        {
            t.Grad = new Tensor(dy.Storage, t.ShapeArray, dy.Offset);
            releasing = null;
            return;
        }
        t.Backend.Axpy(dy, GradOf(t), 1.0);
    }

    public static void Backward(Tensor root, Tensor? seed)
    {
        if (!root.RequiresGrad)
            throw new EngineException("Backward: the tensor does not require gradients (no parameter or input that requires them was used, or it was made under NoGrad)");
        if (seed is null && root.Numel != 1)
            throw new EngineException($"Backward: a seed gradient is needed for a non-scalar tensor of shape {Shape.Format(root.Shape)}");
        if (seed is not null && !Shape.Equal(seed.Shape, root.Shape))
            throw new EngineException($"Backward: seed shape {Shape.Format(seed.Shape)} differs from the tensor's {Shape.Format(root.Shape)}");

        var g = GradOf(root);
        if (seed is null) root.Backend.AddScalar(g, 1.0);
        else root.Backend.Axpy(seed, g, 1.0);

        using var _ = NoGrad();
        var outerReleasing = releasing;   // a backward run inside another op's backward
        try { Run(root); }
        finally { releasing = outerReleasing; }
    }

    private static void Run(Tensor root)
    {
        var order = TopologicalOrder(root);
        var hook = gradientReady;
        var ready = hook is null ? null : LeavesFinalAfter(order);
        for (int i = order.Count - 1; i >= 0; i--)
        {
            var t = order[i];
            if (t.Grad is { } grad)
            {
                var node = t.Node!;
                // The gradient released below may be handed to an input instead (AccumulateGrad).
                releasing = t.RetainGrad || grad.IsLongLived ? null : grad;
                if (OpProfile.Active) OpProfile.Backward(node.Op, () => node.BackwardFn(grad));
                else node.BackwardFn(grad);
                releasing = null;
                if (Anomaly.Active) Anomaly.CheckBackward(node);
                if (!t.RetainGrad)
                {
                    t.Grad = null;
                    if (!grad.IsLongLived) grad.Release();
                }
            }
            if (ready?[i] is { } leaves) foreach (var leaf in leaves) hook!(leaf);
        }
        if (hook is not null && root.Node is null) hook(root);   // a leaf as the root: its gradient is the seed
    }

    /// <summary>For each position i of a topological order, the leaves whose last use in the backward
    /// (which runs the order from its end) is order[i]'s op: the leaves among its inputs that no
    /// earlier position takes as input. Null where there are none.</summary>
    private static List<Tensor>?[] LeavesFinalAfter(List<Tensor> order)
    {
        var first = new Dictionary<Tensor, int>(ReferenceEqualityComparer.Instance);
        for (int i = 0; i < order.Count; i++)
            foreach (var input in order[i].Node!.Inputs)
                if (input.Node is null && input.RequiresGrad) first.TryAdd(input, i);
        var ready = new List<Tensor>?[order.Count];
        foreach (var (leaf, i) in first) (ready[i] ??= []).Add(leaf);
        return ready;
    }

    /// <summary>Non-leaf tensors reachable from <paramref name="root"/>, each after its inputs.</summary>
    internal static List<Tensor> TopologicalOrder(Tensor root)
    {
        var order = new List<Tensor>();
        var seen = new HashSet<Tensor>(ReferenceEqualityComparer.Instance);
        var stack = new Stack<(Tensor T, int Next)>();
        if (root.Node is null) return order;
        stack.Push((root, 0));
        seen.Add(root);
        while (stack.Count > 0)
        {
            var (t, next) = stack.Pop();
            var inputs = t.Node!.Inputs;
            if (next < inputs.Count)
            {
                stack.Push((t, next + 1));
                var child = inputs[next];
                if (child.Node is not null && child.RequiresGrad && seen.Add(child)) stack.Push((child, 0));
            }
            else order.Add(t);
        }
        return order;
    }
}
