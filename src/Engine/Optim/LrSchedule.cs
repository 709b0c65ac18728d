namespace Engine.Optim;

/// <summary>
/// A learning-rate schedule: the multiplier of the base learning rate at step t, where t counts
/// the optimizer steps already taken (t = 0 for the first step), as in PyTorch's LambdaLR and
/// the Hugging Face schedules (transformers.get_*_schedule_with_warmup), whose formulas these
/// follow exactly. With warmup, the first step therefore runs at lr·0 = 0.
/// </summary>
public abstract record LrSchedule
{
    /// <summary>The multiplier at step <paramref name="step"/> (≥ 0).</summary>
    public abstract double Multiplier(int step);

    /// <summary>Multiplier 1 at every step.</summary>
    public sealed record Constant : LrSchedule
    {
        public override double Multiplier(int step) => 1.0;
    }

    /// <summary>t/warmup during the warmup, then 1 (get_constant_schedule_with_warmup).</summary>
    public sealed record ConstantWithWarmup(int WarmupSteps) : LrSchedule
    {
        public override double Multiplier(int step)
        {
            CheckSteps(step, WarmupSteps, 1);
            return step < WarmupSteps ? Warmup(step, WarmupSteps) : 1.0;
        }
    }

    /// <summary>t/warmup during the warmup, then linearly down to 0 at <see cref="TotalSteps"/>,
    /// and 0 after (get_linear_schedule_with_warmup).</summary>
    public sealed record LinearWarmupDecay(int WarmupSteps, int TotalSteps) : LrSchedule
    {
        public override double Multiplier(int step)
        {
            CheckSteps(step, WarmupSteps, TotalSteps);
            if (step < WarmupSteps) return Warmup(step, WarmupSteps);
            return Math.Max(0.0, (double)(TotalSteps - step) / Math.Max(1, TotalSteps - WarmupSteps));
        }
    }

    /// <summary>t/warmup during the warmup, then ½(1 + cos(π·2·cycles·progress)) with progress
    /// going from 0 to 1 over the remaining steps (get_cosine_schedule_with_warmup; 0.5 cycles
    /// is half a cosine, from 1 down to 0 at <see cref="TotalSteps"/>). Past the total the
    /// formula is kept, as in transformers: with 0.5 cycles the multiplier rises again.</summary>
    public sealed record CosineWithWarmup(int WarmupSteps, int TotalSteps, double Cycles = 0.5) : LrSchedule
    {
        public override double Multiplier(int step)
        {
            CheckSteps(step, WarmupSteps, TotalSteps);
            if (step < WarmupSteps) return Warmup(step, WarmupSteps);
            double progress = (double)(step - WarmupSteps) / Math.Max(1, TotalSteps - WarmupSteps);
            return Math.Max(0.0, 0.5 * (1.0 + Math.Cos(Math.PI * Cycles * 2.0 * progress)));
        }
    }

    private static double Warmup(int step, int warmup) => (double)step / Math.Max(1, warmup);

    private static void CheckSteps(int step, int warmup, int total)
    {
        if (step < 0) throw new ArgumentOutOfRangeException(nameof(step), $"schedule step {step} must be ≥ 0");
        if (warmup < 0) throw new EngineException($"schedule: warmup steps {warmup} must be ≥ 0");
        if (total < 1) throw new EngineException($"schedule: total steps {total} must be ≥ 1");
    }
}

/// <summary>
/// Drives an optimizer's learning rate from a schedule, like PyTorch's LambdaLR: the base rate is
/// the optimizer's learning rate when the scheduler is made; the scheduler at once sets
/// lr = base·multiplier(0), and each <see cref="Step"/> (call it after the optimizer's step)
/// advances t and sets lr = base·multiplier(t).
/// <code>
/// var opt = new AdamW(model.Parameters, learningRate: 2e-5);
/// var lr = new LrScheduler(opt, new LrSchedule.LinearWarmupDecay(100, 1000));
/// // per step: loss.Backward(); opt.Step(); lr.Step(); opt.ZeroGrad();
/// </code>
/// </summary>
public sealed class LrScheduler
{
    public LrScheduler(Optimizer optimizer, LrSchedule schedule)
    {
        Optimizer = optimizer;
        Schedule = schedule;
        BaseLearningRate = optimizer.LearningRate;
        Apply();
    }

    public Optimizer Optimizer { get; }
    public LrSchedule Schedule { get; }
    public double BaseLearningRate { get; }

    /// <summary>How many times <see cref="Step"/> has run: the t of the rate now set.</summary>
    public int CurrentStep { get; private set; }

    /// <summary>The rate the schedule gives at step <paramref name="step"/>.</summary>
    public double LearningRateAt(int step) => BaseLearningRate * Schedule.Multiplier(step);

    public void Step()
    {
        CurrentStep++;
        Apply();
    }

    /// <summary>Jumps to step <paramref name="step"/> (resuming a run) and sets its rate.</summary>
    public void Restore(int step)
    {
        if (step < 0) throw new EngineException($"scheduler: step {step} is negative");
        CurrentStep = step;
        Apply();
    }

    private void Apply() => Optimizer.LearningRate = LearningRateAt(CurrentStep);
}
