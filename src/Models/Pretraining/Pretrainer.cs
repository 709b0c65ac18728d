using System.Diagnostics;
using System.Text.Json;
using System.Text.Json.Nodes;
using Engine.Distributed;
using Engine.IO;
using Engine.Models.Training;
using Engine.Optim;

namespace Engine.Models.Pretraining;

/// <summary>How a pretraining run goes. Defaults: AdamW (β 0.9/0.98, weight decay 0.01 except
/// biases and norm weights), peak learning rate 1e-3 after 2% linear warmup, cosine decay to
/// zero at <see cref="Steps"/>, gradient clipping at 1.0.</summary>
public sealed record PretrainOptions
{
    public required int Steps { get; init; }
    /// <summary>Rows per step (per rank in a data-parallel job: the global batch is ranks × this).</summary>
    public int BatchSize { get; init; } = 32;
    public double LearningRate { get; init; } = 1e-3;
    public double WarmupRatio { get; init; } = 0.02;
    public double WeightDecay { get; init; } = 0.01;
    public double Beta2 { get; init; } = 0.98;
    public double MaxGradNorm { get; init; } = 1.0;
    /// <summary>constant, linear or cosine (after the warmup).</summary>
    public string Schedule { get; init; } = "cosine";
    public int Seed { get; init; } = 0;
    /// <summary>Evaluate on the held-out rows every this many steps (and at the end).</summary>
    public int EvalEvery { get; init; } = 500;
    /// <summary>Write checkpoint-last every this many steps (and at the end).</summary>
    public int SaveEvery { get; init; } = 500;
    public int LogEvery { get; init; } = 10;
    /// <summary>At most this many held-out rows are scored per evaluation.</summary>
    public int EvalRows { get; init; } = 256;
    public string? OutDir { get; init; }
    public Device? Device { get; init; }
    /// <summary>"f32" or "bf16" GEMMs in the training forward and backward (see <see cref="MixedPrecision"/>).</summary>
    public string Precision { get; init; } = "f32";
    /// <summary>End this session after step N of the run (evaluate, write checkpoint-last, return),
    /// as a clean interruption: the schedule is still that of <see cref="Steps"/> and a resume
    /// continues the same run. Not part of the run's fingerprint. Null: run to the end.</summary>
    public int? StopAfter { get; init; }

    public void Validate()
    {
        if (Steps < 1) throw new EngineException($"pretrain: steps must be at least 1, got {Steps}");
        if (StopAfter is < 1) throw new EngineException($"pretrain: stop-after-step must be at least 1, got {StopAfter}");
        if (BatchSize < 1) throw new EngineException($"pretrain: batch size must be at least 1, got {BatchSize}");
        if (!(LearningRate > 0)) throw new EngineException($"pretrain: learning rate must be positive, got {LearningRate}");
        if (WarmupRatio is < 0 or > 1) throw new EngineException($"pretrain: warmup ratio must be in [0, 1], got {WarmupRatio}");
        if (Schedule is not ("constant" or "linear" or "cosine")) throw new EngineException($"pretrain: unknown schedule '{Schedule}' (constant, linear, cosine)");
        if (EvalEvery < 1 || SaveEvery < 1 || LogEvery < 1) throw new EngineException("pretrain: eval-every, save-every and log-every must be at least 1");
        if (EvalRows < 1) throw new EngineException($"pretrain: eval rows must be at least 1, got {EvalRows}");
        MixedPrecision.Parse(Precision, "pretrain: precision (--dtype)");
    }
}

/// <summary>What a run ended with: steps, tokens (input tokens of all steps, resumed ones
/// included), training time (all sessions), the last evaluation and this session's losses.</summary>
public sealed record PretrainResult(int Steps, long Tokens, TimeSpan TrainingTime, double TokensPerSecond, LmEvalResult? LastEval, IReadOnlyList<double> Losses);

/// <summary>
/// Pretrains a <see cref="LanguageModel"/> on a <see cref="PackedCorpus"/>: each step draws
/// <see cref="PretrainOptions.BatchSize"/> training rows in a seeded order (a fresh permutation
/// of the training rows each epoch, a fixed function of (seed, epoch)), prepares them through the
/// <see cref="LmObjective"/> (BERT: masks keyed by (epoch, row); Llama: next-token targets),
/// and takes one AdamW step on the mean cross-entropy. Every <see cref="PretrainOptions.EvalEvery"/>
/// steps the held-out rows are scored (<see cref="LmEvaluator"/>) next to the unigram baseline;
/// every <see cref="PretrainOptions.SaveEvery"/> steps OUT/checkpoint-last is written atomically
/// (<see cref="AtomicFolder"/>): a Hugging Face folder plus optimizer.safetensors and
/// pretrain_state.json. On the CPU a run is a pure function of its inputs and seed, and a run
/// resumed from checkpoint-last continues bit for bit as the uninterrupted run would have.
/// OUT/metrics.jsonl gets one line per LogEvery steps (with the wall-clock training seconds of
/// all sessions, and this process's CPU seconds, user + system, so a busy machine's share is
/// visible) and one per evaluation.
///
/// Data-parallel (docs/scaling.md): under <c>mpirun -np N</c> a step's rows are the global batch of
/// N × <see cref="PretrainOptions.BatchSize"/> rows one process with that batch would draw; every
/// rank prepares (masks) the whole global batch, so the masks and the number of scored positions
/// do not depend on N, and trains on its contiguous shard with its loss weighted by its share of
/// the global batch's scored positions; the gradients are summed before clipping. Evaluation is
/// sharded the same way (each rank scores its slice of the held-out rows, the sums are added);
/// only rank 0 writes files.
/// </summary>
public sealed class Pretrainer
{
    public const string LastCheckpoint = Trainer.LastCheckpoint, StateFile = "pretrain_state.json", OptimizerFile = Trainer.OptimizerFile, MetricsFile = Trainer.MetricsFile;

    private readonly LmObjective objective;
    private readonly LanguageModel model;
    private readonly HfModelFolder? source;
    private readonly PackedCorpus corpus;
    private readonly PretrainOptions o;
    private readonly DataParallel ranks;

    /// <summary><paramref name="source"/> is the folder the model came from: its config.json and
    /// tokenizer files go into every checkpoint (needed when <see cref="PretrainOptions.OutDir"/> is set).</summary>
    public Pretrainer(LmObjective objective, HfModelFolder? source, PackedCorpus corpus, PretrainOptions options)
    {
        options.Validate();
        if (options.OutDir is not null && source is null) throw new ArgumentException("a run that writes checkpoints needs the source folder", nameof(source));
        if (corpus.TrainRows.Count == 0) throw new EngineException($"pretrain: the corpus gives no training rows of {corpus.RowLength} tokens ({corpus.Stream.Length:N0} tokens in all)");
        if (corpus.HeldOutRows.Count == 0) throw new EngineException($"pretrain: the corpus gives no held-out rows ({corpus.RowCount} rows, every {corpus.HeldOutEvery}th held out); give more text");
        this.objective = objective;
        model = objective.Model;
        this.source = source;
        this.corpus = corpus;
        ranks = DataParallel.For(options.Device ?? model.Device);
        o = ranks.IsWriter ? options : options with { OutDir = null };   // only rank 0 writes (checkpoints, logs)
        var counts = UnigramBaseline.Count(corpus, corpus.TrainRows, model.VocabSize);
        Unigram = new UnigramBaseline(counts, id => objective.Masker is not { } m || !m.IsSpecial(id));
    }

    /// <summary>The unigram baseline, counted on the training rows.</summary>
    public UnigramBaseline Unigram { get; }

    public IReadOnlyList<int> EvalRows => corpus.HeldOutRows.Take(o.EvalRows).ToArray();

    /// <summary>Rows per step over all ranks: the batch per rank × the ranks.</summary>
    public int GlobalBatch => o.BatchSize * ranks.Size;

    /// <summary>Scores the held-out rows; in a job each rank scores its shard and the sums are added.</summary>
    public LmEvalResult Evaluate() => LmEvaluator.Evaluate(objective, corpus, EvalRows, o.BatchSize, Unigram, ranks);

    public PretrainResult Train(Action<TrainEvent>? progress = null, string? resumeFrom = null)
    {
        if (o.Device is { } device) model.To(device);
        model.Train();
        int total = o.Steps, warmup = (int)(o.WarmupRatio * total);
        var opt = new AdamW(model.Parameters(), o.LearningRate, beta2: o.Beta2, weightDecay: o.WeightDecay, noDecay: Optimizer.VectorsAndScalars);
        var schedule = new LrScheduler(opt, o.Schedule switch
        {
            "constant" => warmup > 0 ? new LrSchedule.ConstantWithWarmup(warmup) : new LrSchedule.Constant(),
            "linear" => new LrSchedule.LinearWarmupDecay(warmup, total),
            _ => new LrSchedule.CosineWithWarmup(warmup, total),
        });
        var names = new Dictionary<Tensor, string>(ReferenceEqualityComparer.Instance);
        foreach (var (name, p) in model.NamedParameters()) names[p] = name;
        string Name(Tensor p) => names[p];

        int step = 0;
        double previousSeconds = 0;
        LmEvalResult? lastEval = null;
        if (resumeFrom is not null) (step, previousSeconds) = Restore(resumeFrom, opt, schedule, Name);
        ranks.Start(model.Parameters(), model.Seeds);
        if (o.OutDir is not null)
        {
            Directory.CreateDirectory(o.OutDir);
            Trainer.TrimLog(Path.Combine(o.OutDir, MetricsFile), step);
        }

        int n = corpus.TrainRows.Count, t = corpus.RowLength, b = GlobalBatch;
        var accumulation = new GradientAccumulation(1);
        int[]? order = null;
        long orderEpoch = -1;
        var losses = new List<double>();
        var clock = Stopwatch.StartNew();
        long sessionTokens = 0;
        double Seconds() => previousSeconds + clock.Elapsed.TotalSeconds;

        int end = Math.Min(total, o.StopAfter ?? total);
        while (step < end)
        {
            // Rows step·B … step·B + B − 1 of the endless sequence of epoch permutations (B: the global batch).
            var rows = new int[b];
            var keys = new ulong[b];
            for (int i = 0; i < b; i++)
            {
                long draw = (long)step * b + i;
                long epoch = draw / n;
                if (epoch != orderEpoch) { order = Permutation(n, o.Seed, epoch); orderEpoch = epoch; }
                rows[i] = corpus.TrainRows[order![(int)(draw % n)]];
                keys[i] = ((ulong)epoch << 32) | (uint)rows[i];
            }
            // The whole global batch is prepared on every rank (masks keyed by (epoch, row), as one
            // process draws them); this rank trains on its rows, weighted by its share of the scored positions.
            var (input, targets) = objective.Prepare(corpus.Rows(rows), b, t, (ulong)o.Seed, keys);
            var shard = ranks.Shard(Enumerable.Range(0, b).ToArray());
            int from = shard.Length == 0 ? 0 : shard[0] * t, length = shard.Length * t;
            int scored = Scored(targets), local = Scored(targets.AsSpan(from, length));
            double value = 0;
            using (ranks.OverlapWithBackward(opt.Parameters))   // the reduction starts bucket by bucket during the backward
            {
                if (local > 0 || scored == 0)   // (a batch with nothing scored at all stops in Predict with a line saying so)
                {
                    using var scope = Scope.Begin();
                    using var precision = MixedPrecision.Use(MixedPrecision.Parse(o.Precision));
                    var loss = LanguageModel.Loss(model.Predict(input[from..(from + length)], targets[from..(from + length)], shard.Length, t));
                    double share = DataParallel.Share(local, scored);
                    value = loss.Item() * share;
                    if (double.IsFinite(value)) accumulation.Backward(loss, share);
                }
            }
            ranks.ReduceGradients(opt.Parameters);
            value = ranks.Sum(value);   // the global batch's mean loss; non-finite on any rank makes it non-finite everywhere
            if (!double.IsFinite(value)) throw new EngineException($"pretrain: the loss is {value} at step {step + 1}; stopped (the last checkpoint is intact)");
            double norm = o.MaxGradNorm > 0 ? GradClip.ClipByGlobalNorm(opt.Parameters, o.MaxGradNorm) : GradClip.GlobalNorm(opt.Parameters);
            if (!double.IsFinite(norm)) throw new EngineException($"pretrain: the gradient norm is {norm} at step {step + 1}; stopped (the last checkpoint is intact)");
            opt.Step();
            schedule.Step();
            opt.ZeroGrad();
            step++;
            sessionTokens += (long)b * t;
            losses.Add(value);
            long tokens = (long)step * b * t;
            double epochNow = (double)step * b / n;
            double tps = sessionTokens / Math.Max(1e-9, clock.Elapsed.TotalSeconds);
            if (step % o.LogEvery == 0 || step == end)
            {
                Log(new { step, epoch = Math.Round(epochNow, 4), tokens, loss = value, lr = opt.LearningRate, grad_norm = norm, tokens_per_s = Math.Round(tps), seconds = Math.Round(Seconds(), 1),
                    cpu_seconds = Math.Round(Process.GetCurrentProcess().TotalProcessorTime.TotalSeconds, 1) });
                progress?.Invoke(new TrainEvent(step, total, epochNow, value, opt.LearningRate, tps, null));
            }
            if (step % o.EvalEvery == 0 || step == end)
            {
                lastEval = Evaluate();
                var metrics = lastEval.ToMetrics(objective.Masked);
                Log(new { step, epoch = Math.Round(epochNow, 4), tokens, eval = metrics });
                progress?.Invoke(new TrainEvent(step, total, epochNow, null, opt.LearningRate, tps, metrics));
            }
            if (step % o.SaveEvery == 0 || step == end) Save(opt, step, Seconds(), lastEval, Name);
        }
        double totalSeconds = Seconds();
        return new PretrainResult(step, (long)step * b * t, TimeSpan.FromSeconds(totalSeconds),
            sessionTokens / Math.Max(1e-9, clock.Elapsed.TotalSeconds), lastEval, losses);
    }

    private static int Scored(ReadOnlySpan<int> targets)
    {
        int count = 0;
        foreach (int target in targets) if (target != MlmMasker.Ignore) count++;
        return count;
    }

    /// <summary>The training-row order of an epoch: a Fisher–Yates shuffle seeded by (seed, epoch).</summary>
    internal static int[] Permutation(int n, int seed, long epoch)
    {
        var order = Enumerable.Range(0, n).ToArray();
        new Random(Trainer.EpochSeed(seed, (int)epoch)).Shuffle(order);
        return order;
    }

    // ------------------------------------------------------------- checkpoints

    /// <summary>What must match between a run and the checkpoint it resumes: everything that changes
    /// which rows, masks or learning rates a step sees. "batch" is the global batch (rows per step over
    /// all ranks), so a run resumes with any number of ranks that gives the same global batch.</summary>
    private JsonObject Fingerprint() => new()
    {
        ["steps"] = o.Steps, ["batch"] = GlobalBatch, ["seq"] = corpus.RowLength, ["seed"] = o.Seed, ["lr"] = o.LearningRate,
        ["warmup"] = o.WarmupRatio, ["schedule"] = o.Schedule, ["stream_tokens"] = corpus.Stream.Length, ["held_out_every"] = corpus.HeldOutEvery,
        ["whole_word"] = objective.Masker?.WholeWords ?? false, ["mlm_probability"] = objective.Masker?.Probability ?? 0,
    };

    private void Save(Optimizer opt, int step, double seconds, LmEvalResult? eval, Func<Tensor, string> nameOf)
    {
        if (o.OutDir is null) return;
        AtomicFolder.Write(Path.Combine(o.OutDir, LastCheckpoint), dir =>
        {
            model.SaveInto(dir, source!);
            var (buffers, steps, count) = opt.ExportState(nameOf);
            SafeTensors.Save(Path.Combine(dir, OptimizerFile), buffers);
            var state = new JsonObject
            {
                ["step"] = step, ["tokens"] = (long)step * GlobalBatch * corpus.RowLength, ["ranks"] = ranks.Size, ["training_seconds"] = Math.Round(seconds, 3),
                ["optimizer_steps"] = count, ["dropout_counter"] = model.Seeds.Counter,
                ["parameter_steps"] = JsonSerializer.SerializeToNode(steps),
                ["last_eval"] = eval is null ? null : JsonSerializer.SerializeToNode(eval.ToMetrics(objective.Masked)),
                ["run"] = Fingerprint(),
                ["options"] = JsonSerializer.SerializeToNode(o with { Device = null }),
            };
            File.WriteAllText(Path.Combine(dir, StateFile), state.ToJsonString(new JsonSerializerOptions { WriteIndented = true }));
        });
    }

    private (int Step, double Seconds) Restore(string dir, Optimizer opt, LrScheduler schedule, Func<Tensor, string> nameOf)
    {
        var statePath = Path.Combine(dir, StateFile);
        if (!File.Exists(statePath)) throw new EngineException($"--resume: {dir} has no {StateFile}; is it a checkpoint folder written by engine pretrain?");
        JsonNode st;
        try { st = JsonNode.Parse(File.ReadAllText(statePath)) ?? throw new JsonException("empty"); }
        catch (JsonException e) { throw new EngineException($"{statePath}: not valid JSON ({e.Message.Split('\n')[0]})"); }
        var saved = st["run"]?.AsObject() ?? throw new EngineException($"{statePath}: no 'run' entry");
        foreach (var (key, value) in Fingerprint())
            if (!JsonNode.DeepEquals(saved[key], value))
                throw new EngineException($"--resume: the checkpoint's run has {key} = {saved[key]?.ToJsonString() ?? "nothing"}, this one {value?.ToJsonString()}; resume with the same options (and corpus) to continue exactly");
        int step = st["step"]!.GetValue<int>();
        var steps = st["parameter_steps"]!.Deserialize<Dictionary<string, int>>()!;
        opt.ImportState(SafeTensors.Load(Path.Combine(dir, OptimizerFile)), steps, st["optimizer_steps"]!.GetValue<int>(), nameOf);
        schedule.Restore(step);
        model.Seeds.Counter = st["dropout_counter"]!.GetValue<ulong>();
        return (step, st["training_seconds"]?.GetValue<double>() ?? 0);
    }

    private void Log(object entry)
    {
        if (o.OutDir is null) return;
        File.AppendAllText(Path.Combine(o.OutDir, MetricsFile), JsonSerializer.Serialize(entry) + "\n");
    }
}
