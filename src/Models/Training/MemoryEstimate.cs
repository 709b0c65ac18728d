namespace Engine.Models.Training;

/// <summary>
/// A training step's memory, estimated before the run starts from the model and the run's
/// settings (bytes, float32 everywhere: bf16 mode rounds GEMM inputs but stores float32):
/// <list type="bullet">
/// <item>parameters: every parameter, 4 bytes each;</item>
/// <item>gradients: 4 bytes per trained parameter; AdamW state: 8 bytes per trained parameter;</item>
/// <item>activations: batch × length × layers × (14·hidden + 4·intermediate + 3·heads·length)
/// floats — what one layer keeps for its backward per token (the Q/K/V/output projections,
/// norms and residuals ≈ 14·hidden, the MLP's pre- and post-activation ≈ 4·intermediate, the
/// attention scores, probabilities and dropout mask ≈ 3·heads·length) — times 1.5 for the
/// gradients of activations alive during the backward.</item>
/// </list>
/// The length is the longest encoded training example (at most --max-len): batches are padded
/// to their own longest row, so that is the worst step. An estimate, not a bound: it is meant to
/// refuse runs that are off by a wide margin before they start, rather than fail an hour in.
/// </summary>
public sealed record MemoryEstimate(long Parameters, long Gradients, long OptimizerState, long Activations, int Batch, int Length)
{
    public long Total => Parameters + Gradients + OptimizerState + Activations;

    public static MemoryEstimate ForRun(SequenceClassifier model, HfModelFolder folder, TrainOptions o, int longest)
    {
        long all = model.ParameterCount(), trained = model.ParameterCount(trainableOnly: true);
        int length = Math.Min(longest, o.MaxLength);
        (int layers, int hidden, int intermediate, int heads) = folder.Family switch
        {
            ModelFamily.Bert => (folder.BertConfig.NumHiddenLayers, folder.BertConfig.HiddenSize, folder.BertConfig.IntermediateSize, folder.BertConfig.NumAttentionHeads),
            ModelFamily.Llama => (folder.LlamaConfig.NumHiddenLayers, folder.LlamaConfig.HiddenSize, folder.LlamaConfig.IntermediateSize, folder.LlamaConfig.NumAttentionHeads),
            _ => (0, 0, 0, 0),
        };
        double perToken = layers * (14.0 * hidden + 4.0 * intermediate + 3.0 * heads * length);
        long activations = (long)(1.5 * 4 * perToken * o.BatchSize * length);
        return new MemoryEstimate(4 * all, 4 * trained, 8 * trained, activations, o.BatchSize, length);
    }

    /// <summary>The memory a run may use: <see cref="TrainOptions.MemoryBudgetBytes"/>, else on the
    /// CPU what the runtime reports as available to the process (physical memory or the container's
    /// limit); null on another device without a budget (not checked).</summary>
    public static long? Budget(TrainOptions o) =>
        o.MemoryBudgetBytes ?? (o.Device is null || o.Device.Value.Kind == DeviceKind.Cpu ? GC.GetGCMemoryInfo().TotalAvailableMemoryBytes : null);

    /// <summary>Refuses a run whose estimate exceeds the budget, saying by how much and what to change.</summary>
    public static void Check(MemoryEstimate e, TrainOptions o)
    {
        if (Budget(o) is not { } budget || e.Total <= budget) return;
        static string Gb(long b) => $"{b / 1e9:F2} GB";
        long rest = e.Parameters + e.Gradients + e.OptimizerState;
        string advice = rest >= budget
            ? "the model's parameters, gradients and optimizer state alone do not fit: train fewer parameters (--method lora, head, bitfit, prefix or prompt) or use a machine with more memory"
            : $"activations are {Gb(e.Activations)}: use a smaller --batch (with --grad-accum to keep the effective batch; --batch {Math.Max(1, (int)(e.Batch * (double)(budget - rest) / e.Activations))} fits), " +
              $"or a shorter --max-len, or train fewer parameters (--method lora)";
        throw new EngineException($"train: a step needs about {Gb(e.Total)} (parameters {Gb(e.Parameters)}, gradients {Gb(e.Gradients)}, " +
            $"optimizer state {Gb(e.OptimizerState)}, activations {Gb(e.Activations)} at batch {e.Batch} × length {e.Length}), " +
            $"{Gb(e.Total - budget)} more than the {Gb(budget)} available; {advice}");
    }
}
