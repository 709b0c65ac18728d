namespace Engine.Optim;

/// <summary>
/// Gradient accumulation: k micro-batches, one optimizer step. Gradients already accumulate
/// (+=) across <see cref="Tensor.Backward"/> calls, so the only work is to scale each
/// micro-batch's loss by 1/k (the gradients then add up to those of the mean over the k
/// micro-batches: for mean-reduced losses over micro-batches of equal size, exactly the
/// gradients of one batch k times as large) and to step only after the k-th backward:
/// <code>
/// var accumulation = new GradientAccumulation(4);
/// foreach (var batch in microBatches)
///     using (Scope.Begin())
///     {
///         if (!accumulation.Backward(model.Loss(batch))) continue;   // 1/4 of the loss, backward
///         GradClip.ClipByGlobalNorm(opt.Parameters, 1.0);
///         opt.Step(); lr.Step(); opt.ZeroGrad();
///     }
/// </code>
/// Clipping, the optimizer step and the schedule count full batches, not micro-batches.
/// </summary>
public sealed class GradientAccumulation
{
    public GradientAccumulation(int microBatches)
    {
        if (microBatches < 1) throw new EngineException($"gradient accumulation: {microBatches} micro-batches; need at least 1");
        MicroBatches = microBatches;
    }

    /// <summary>k: the micro-batches per optimizer step.</summary>
    public int MicroBatches { get; }

    /// <summary>The micro-batches seen since the last boundary (0 right after one).</summary>
    public int Pending { get; private set; }

    /// <summary>Runs backward on weight · loss / k and returns true when this was the k-th
    /// micro-batch (time for the optimizer step). <paramref name="weight"/> scales a micro-batch's
    /// part (data-parallel ranks: the share of the global batch a rank's shard is).</summary>
    public bool Backward(Tensor loss, double weight = 1)
    {
        (MicroBatches == 1 && weight == 1 ? loss : Ops.Scale(loss, weight / MicroBatches)).Backward();
        Pending++;
        if (Pending < MicroBatches) return false;
        Pending = 0;
        return true;
    }
}
