using Engine.Models.Peft;

namespace Engine.Models.Training;

/// <summary>
/// How a fine-tuning run goes. Defaults are the usual BERT fine-tuning recipe (AdamW, lr 2e-5 for full fine-tuning, each method's own otherwise,
/// batch 32, 10% linear warmup then linear decay, weight decay 0.01 except biases and norm
/// weights, gradient clipping at 1.0).
/// </summary>
public sealed record TrainOptions
{
    public int Epochs { get; init; } = 3;
    /// <summary>Optimizer steps to run; overrides <see cref="Epochs"/> when set.</summary>
    public int? MaxSteps { get; init; }
    /// <summary>The peak learning rate; null: the method's (<see cref="FineTuningMethod.DefaultLearningRate"/>:
    /// 2e-5 for full fine-tuning, 5e-4 for LoRA, 1e-3 for the head, …).</summary>
    public double? LearningRate { get; init; }
    /// <summary>The peak learning rate the run uses: <see cref="LearningRate"/>, or the method's default.</summary>
    public double PeakLearningRate => LearningRate ?? MethodRegistry.Get(Peft.Method).DefaultLearningRate;
    /// <summary>The peak learning rate of the classification head (<c>classifier.*</c> /
    /// <c>score.*</c>) and of the depth-wise pooling weights (<c>--head-lr</c>); they follow the
    /// same warmup and decay as the rest (a fixed multiple of <see cref="PeakLearningRate"/>, or of a
    /// stage's rate). Null: the same rate as everything else.</summary>
    public double? HeadLearningRate { get; init; }
    public int BatchSize { get; init; } = 32;
    /// <summary>Tokens per example after truncation (longest-first for pairs).</summary>
    public int MaxLength { get; init; } = 128;
    public int Seed { get; init; } = 42;
    public double WarmupRatio { get; init; } = 0.1;
    public double WeightDecay { get; init; } = 0.01;
    /// <summary>Micro-batches whose gradients add up to one optimizer step.</summary>
    public int GradientAccumulation { get; init; } = 1;
    /// <summary>Clip the global gradient norm to this (0: no clipping).</summary>
    public double MaxGradNorm { get; init; } = 1.0;
    /// <summary>Evaluate (and write checkpoints) every this many optimizer steps and at each epoch end;
    /// null: at epoch ends only; 0: only after the last step (no checkpoint until then: a run to
    /// measure, not one to resume).</summary>
    public int? EvalEvery { get; init; }
    /// <summary>Stop after this many evaluations without a better primary metric; null: never.</summary>
    public int? EarlyStoppingPatience { get; init; }
    /// <summary>constant, linear (warmup then linear decay) or cosine (warmup then cosine decay).</summary>
    public string Schedule { get; init; } = "linear";
    /// <summary>Group examples of similar length into batches (less padding); batch order stays random.</summary>
    public bool BucketByLength { get; init; }
    /// <summary>Write a training line to metrics.jsonl every this many steps.</summary>
    public int LogEvery { get; init; } = 10;
    /// <summary>The task name (sst2, cola, mrpc, stsb, …): picks the metrics and the primary metric.</summary>
    public string? Task { get; init; }
    /// <summary>Where checkpoints, metrics.jsonl, plots and eval.json go; null: nothing is written.</summary>
    public string? OutDir { get; init; }
    /// <summary>The fine-tuning method (a name from <see cref="MethodRegistry"/>) with its
    /// settings, and the pooling; applied to the model when training starts (docs/peft.md).</summary>
    public PeftOptions Peft { get; init; } = new();
    /// <summary>Where to train: the model is moved there after its method is applied (its
    /// checkpoints are still written from host copies). Null: leave the model where it is.</summary>
    public Device? Device { get; init; }
    /// <summary>GEMM precision of the training forward and backward (<c>--dtype</c>): "f32", or "bf16" —
    /// every float32 GEMM rounds its inputs to bfloat16 and accumulates in float32, while
    /// parameters (master weights), gradients, optimizer state and activations stay float32
    /// (<see cref="MixedPrecision"/>). Evaluation runs in float32 either way.</summary>
    public string Precision { get; init; } = "f32";
    /// <summary>Replace the outputs of an earlier run in <see cref="OutDir"/> (otherwise refused; a resumed run continues its folder).</summary>
    public bool Overwrite { get; init; }
    /// <summary>Steps with a non-finite loss or gradient that may be skipped (not applied) before the run stops; 0: stop at the first.</summary>
    public int SkipNonFinite { get; init; }
    /// <summary>Check every op's output and gradient for NaN/infinity and stop naming the first op that made one (slow).</summary>
    public bool DetectAnomaly { get; init; }
    /// <summary>The memory a step may use (bytes); null: what is available (see <see cref="MemoryEstimate"/>).</summary>
    public long? MemoryBudgetBytes { get; init; }

    public void Validate()
    {
        if (Epochs < 1 && MaxSteps is null) throw new EngineException($"train: epochs must be at least 1, got {Epochs}");
        if (MaxSteps is < 1) throw new EngineException($"train: steps must be at least 1, got {MaxSteps}");
        if (BatchSize < 1) throw new EngineException($"train: batch size must be at least 1, got {BatchSize}");
        if (MaxLength < 2) throw new EngineException($"train: max length must be at least 2, got {MaxLength}");
        if (GradientAccumulation < 1) throw new EngineException($"train: gradient accumulation must be at least 1, got {GradientAccumulation}");
        if (LearningRate is { } lr && !(lr > 0 && !double.IsInfinity(lr))) throw new EngineException($"train: learning rate must be positive, got {lr}");
        if (HeadLearningRate is { } h && !(h > 0 && !double.IsInfinity(h))) throw new EngineException($"train: head learning rate (--head-lr) must be positive, got {h}");
        if (WarmupRatio is < 0 or > 1) throw new EngineException($"train: warmup ratio must be in [0, 1], got {WarmupRatio}");
        if (Schedule is not ("constant" or "linear" or "cosine")) throw new EngineException($"train: unknown schedule '{Schedule}' (constant, linear, cosine)");
        if (EvalEvery is < 0) throw new EngineException($"train: eval-every must be 0 (only at the end) or more, got {EvalEvery}");
        MixedPrecision.Parse(Precision, "train: precision (--dtype)");
        if (SkipNonFinite < 0) throw new EngineException($"train: skip-nonfinite must be at least 0, got {SkipNonFinite}");
        if (MemoryBudgetBytes is <= 0) throw new EngineException($"train: the memory budget must be positive, got {MemoryBudgetBytes} bytes");
        Peft.Validate();
    }
}
