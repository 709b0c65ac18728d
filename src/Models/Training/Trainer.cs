using System.Diagnostics;
using System.Text.Json;
using System.Text.Json.Nodes;
using Engine.Autograd;
using Engine.Distributed;
using Engine.IO;
using Engine.Models.Data;
using Engine.Models.Peft;
using Engine.Models.Tokenization;
using Engine.Optim;

namespace Engine.Models.Training;

/// <summary>One training-log event: a step's loss, or an evaluation's metrics.</summary>
public sealed record TrainEvent(int Step, int TotalSteps, double Epoch, double? Loss, double LearningRate, double TokensPerSecond,
    IReadOnlyDictionary<string, double>? Eval, string? Note = null);

/// <summary>What a run ended with.</summary>
public sealed record TrainResult(int Steps, IReadOnlyDictionary<string, double> FinalEval, string PrimaryMetric, double BestMetric,
    int BestStep, long TrainedParameters, long TotalParameters, TimeSpan Time, double TokensPerSecond, bool StoppedEarly, IReadOnlyList<double> Losses);

/// <summary>One prediction: the label index (or regression value) and the class probabilities.</summary>
public sealed record Prediction(int Label, double Value, double[] Probabilities);

/// <summary>
/// Fine-tunes a <see cref="SequenceClassifier"/> on tokenized examples: AdamW with a warmup
/// schedule, gradient accumulation and clipping, evaluation every N steps and at epoch ends,
/// early stopping on the task's primary metric, the best and the last checkpoints, and a
/// metrics.jsonl log. On the CPU a run is a pure function of its inputs and seed (same loss
/// curve bit for bit), and a run resumed from its last checkpoint continues exactly as the
/// uninterrupted run would have.
///
/// Out folder: checkpoint-last/ and checkpoint-best/ (each a Hugging Face folder plus
/// trainer_state.json and optimizer.safetensors), metrics.jsonl, eval.json.
/// </summary>
public sealed class Trainer
{
    public const string LastCheckpoint = "checkpoint-last", BestCheckpoint = "checkpoint-best";
    public const string StateFile = "trainer_state.json", OptimizerFile = "optimizer.safetensors", MetricsFile = "metrics.jsonl", EvalFile = "eval.json";

    private readonly SequenceClassifier model;
    private readonly HfModelFolder source;
    private readonly TextTokenizer tokenizer;
    private readonly TrainOptions o;
    private readonly IReadOnlyList<string>? labelNames;
    private readonly bool regression;
    private readonly DataParallel ranks;

    public Trainer(SequenceClassifier model, HfModelFolder source, TextTokenizer tokenizer, TrainOptions options, IReadOnlyList<string>? labelNames, bool regression)
    {
        options.Validate();
        this.model = model;
        this.source = source;
        this.tokenizer = tokenizer;
        ranks = DataParallel.For(options.Device ?? model.Device);
        o = ranks.IsWriter ? options : options with { OutDir = null };   // only rank 0 writes (checkpoints, logs, eval.json)
        this.labelNames = labelNames;
        this.regression = regression;
    }

    public string PrimaryMetric => TaskMetrics.PrimaryMetric(o.Task, regression);

    /// <summary>Trains; <paramref name="resumeFrom"/> continues a run from its checkpoint folder.</summary>
    public TrainResult Train(IReadOnlyList<Example> trainSet, IReadOnlyList<Example>? evalSet, Action<TrainEvent>? progress = null, string? resumeFrom = null)
    {
        var train = Batches.Encode(trainSet, tokenizer, o.MaxLength);
        var eval = evalSet is null ? null : Batches.Encode(evalSet, tokenizer, o.MaxLength);
        if (train.Count == 0) throw new EngineException("train: the training set is empty");
        int globalBatch = o.BatchSize * ranks.Size;   // N ranks × b: each rank takes its shard of every global batch
        int perEpoch = (train.Count + globalBatch - 1) / globalBatch;
        int total = TotalSteps(train.Count);
        int warmup = (int)(o.WarmupRatio * total);

        // The method and the device are the pipeline's (TrainingPipeline applies and moves once).
        if (!o.Peft.IsDefault && model.Peft?.Options.Method != o.Peft.Method)
            throw new EngineException($"train: the options ask for method {o.Peft.Method}, the model has {model.Peft?.Options.Method ?? "none"}; apply it first (TrainingPipeline or PeftSetup.Apply)");
        if (o.Device is { } device && model.Device != device)
            throw new EngineException($"train: the options ask for {device}, the model is on {model.Device}; move it first (TrainingPipeline or Module.To)");
        model.Train();
        // A multi-stage method (InstalledMethod.Stages) splits the steps; each stage has its own
        // optimizer and schedule (warmup and decay over its own steps) and learning rate.
        var stages = model.Peft?.Method.Stages ?? [];
        int stage = model.Peft?.Method.Stage ?? 0;
        // A new run on a model already past its first stages (a saved EH-FT model trained further)
        // runs the stages left; a resumed run continues the split of the run it resumes.
        int skipped = resumeFrom is null ? stage : 0;
        var stageEnds = Enumerable.Repeat(0, skipped)
            .Concat(TrainingStage.Ends(stages.Skip(skipped).ToList(), total, (double)perEpoch / o.GradientAccumulation)).ToArray();
        int StageStart(int i) => i == 0 ? 0 : stageEnds[i - 1];
        // --head-lr: the head and the depth-wise pooling weights get their own peak rate.
        var headParameters = o.HeadLearningRate is null ? null
            : new HashSet<Tensor>(model.NamedParameters().Where(np => IsHeadParameter(np.Name)).Select(np => np.Param), ReferenceEqualityComparer.Instance);
        (Optimizer, LrScheduler) ForStage(int i)
        {
            int steps = stageEnds[i] - StageStart(i), warm = stages.Count == 0 ? warmup : (int)(o.WarmupRatio * steps);
            double lr = stages.Count == 0 ? o.PeakLearningRate : stages[i].LearningRate ?? o.PeakLearningRate;
            var optimizer = new AdamW(model.Parameters(), lr, weightDecay: o.WeightDecay, noDecay: Optimizer.VectorsAndScalars,
                learningRateScale: o.HeadLearningRate is { } headLr ? p => headParameters!.Contains(p) ? headLr / lr : 1.0 : null);
            return (optimizer, new LrScheduler(optimizer, o.Schedule switch
            {
                "constant" => warm > 0 ? new LrSchedule.ConstantWithWarmup(warm) : new LrSchedule.Constant(),
                "cosine" => new LrSchedule.CosineWithWarmup(warm, steps),
                _ => new LrSchedule.LinearWarmupDecay(warm, steps),
            }));
        }
        var (opt, schedule) = ForStage(stage);
        var checkpointNames = new Dictionary<Tensor, string>(ReferenceEqualityComparer.Instance);
        foreach (var (n, p) in model.NamedParameters()) checkpointNames[p] = model.CheckpointName(n);
        string Name(Tensor p) => checkpointNames[p];

        RunGuards.BeforeTraining(model, source, tokenizer, o, train);
        var state = new RunState();
        if (resumeFrom is not null) state = Restore(resumeFrom, opt, schedule, Name, StageStart(stage));
        ranks.Start(model.Parameters(), model.Seeds);
        if (o.OutDir is not null)
        {
            RunGuards.ClaimOutFolder(o.OutDir, o.Overwrite, resumeFrom);
            Directory.CreateDirectory(o.OutDir);
            TrimLog(Path.Combine(o.OutDir, MetricsFile), state.Step);
        }

        var losses = new List<double>();
        var clock = Stopwatch.StartNew();
        long tokens = 0;
        long micro = (long)state.Step * o.GradientAccumulation;
        List<int[]>? order = null;
        int orderEpoch = -1;
        // A method that classifies (text, label) pairs trains on pairs drawn per epoch (LabelPairing).
        var pairing = model.Peft?.Method.Pairing;
        (int Candidate, int Target)[]? pairs = null;
        // A run resumed from the checkpoint written just before it stopped early stays stopped.
        bool stoppedEarly = o.EarlyStoppingPatience is { } patience && state.Patience >= patience;
        var lastEval = state.LastEval;
        var accumulation = new GradientAccumulation(o.GradientAccumulation);

        while (!stoppedEarly && state.Step < total)
        {
            while (stage < stageEnds.Length - 1 && state.Step >= stageEnds[stage])
            {
                // The boundary (also right after resuming from the last checkpoint of a stage).
                stage++;
                model.Peft!.Method.EnterStage(stage);
                PeftSetup.Freeze(model);
                model.Train();
                (opt, schedule) = ForStage(stage);
                Log(new { step = state.Step, stage = stage + 1, stage_name = stages[stage].Name });
                progress?.Invoke(new TrainEvent(state.Step, total, (double)micro / perEpoch, null, opt.LearningRate, 0, null, $"{stages[stage].Name} from step {state.Step + 1}: {model.ParameterCount(trainableOnly: true):N0} parameters trained"));
            }
            double stepLoss = 0;
            string? nonFinite = null;
            for (int a = 0; a < o.GradientAccumulation; a++, micro++)
            {
                // The step's last backward starts the gradient reduction bucket by bucket (every rank arms it, backward or not).
                using var overlap = a == o.GradientAccumulation - 1 ? ranks.OverlapWithBackward(opt.Parameters) : null;
                int epoch = (int)(micro / perEpoch);
                if (epoch != orderEpoch)
                {
                    order = Batches.Order(train, globalBatch, new Random(EpochSeed(o.Seed, epoch)), o.BucketByLength);
                    pairs = pairing?.TrainingPairs(train.Select(e => e.Label).ToList(), new Random(PairSeed(o.Seed, epoch)));
                    orderEpoch = epoch;
                }
                var global = order![(int)(micro % perEpoch)];
                var shard = ranks.Shard(global);
                if (shard.Length == 0) continue;   // a short last batch may leave a rank nothing
                double share = DataParallel.Share(shard.Length, global.Length);
                var batch = Batches.Collate(train, shard, tokenizer.PadId);
                var targets = regression ? batch.Values : batch.Labels;
                if (pairing is not null)
                {
                    pairing.Pair(shard.Select(i => pairs![i].Candidate).ToArray());
                    targets = Tensor.FromArray(shard.Select(i => pairs![i].Target).ToArray(), shard.Length);
                }
                tokens += batch.Tokens;
                using var scope = Scope.Begin();
                using var precision = MixedPrecision.Use(MixedPrecision.Parse(o.Precision)); // bf16: GEMM inputs rounded (forward and backward)
                using var anomaly = o.DetectAnomaly ? Anomaly.Detect() : null;
                var output = model.Forward(batch.Ids, batch.Mask, model.TokenTypes(batch.Types));
                var loss = model.Loss(output.Logits, targets);
                double value = loss.Item();
                if (!double.IsFinite(value)) { nonFinite ??= $"the loss is {value}"; stepLoss = double.NaN; continue; }
                stepLoss += value * share / o.GradientAccumulation;
                accumulation.Backward(loss, share); // loss · share / k (share: this rank's part of the global batch)
            }
            ranks.ReduceGradients(opt.Parameters);
            stepLoss = ranks.Sum(stepLoss); // non-finite on any rank makes it non-finite on every rank: all skip or stop together
            if (nonFinite is null && !double.IsFinite(stepLoss)) nonFinite = $"the loss is {stepLoss} on another rank";
            double norm = nonFinite is not null ? double.NaN
                : o.MaxGradNorm > 0 ? GradClip.ClipByGlobalNorm(opt.Parameters, o.MaxGradNorm) : GradClip.GlobalNorm(opt.Parameters);
            if (nonFinite is null && !double.IsFinite(norm)) nonFinite = $"the gradient norm is {norm}";
            if (nonFinite is not null) RunGuards.NonFiniteStep(o, state.Step + 1, state.SkippedSteps++, nonFinite); // throws unless it may be skipped
            else opt.Step();
            schedule.Step();
            opt.ZeroGrad();
            state.Step++;
            losses.Add(nonFinite is null ? stepLoss : double.NaN);
            double epochNow = (double)micro / perEpoch;
            double tps = tokens / Math.Max(1e-9, clock.Elapsed.TotalSeconds);
            if (state.Step % o.LogEvery == 0 || state.Step == total)
            {
                Log(new { step = state.Step, epoch = Math.Round(epochNow, 4), loss = nonFinite is null ? stepLoss : (double?)null, lr = opt.LearningRate,
                    grad_norm = double.IsFinite(norm) ? norm : (double?)null, tokens_per_s = Math.Round(tps), skipped = nonFinite });
                progress?.Invoke(new TrainEvent(state.Step, total, epochNow, nonFinite is null ? stepLoss : null, opt.LearningRate, tps, null,
                    nonFinite is null ? null : $"step {state.Step} skipped: {nonFinite} ({state.SkippedSteps} of at most {o.SkipNonFinite})"));
            }

            bool epochEnd = micro % perEpoch == 0;
            bool due = o.EvalEvery == 0 ? state.Step == total : (o.EvalEvery is { } every && state.Step % every == 0) || epochEnd || state.Step == total;
            if (!due) continue;
            if (eval is not null && eval.Count > 0)
            {
                lastEval = Evaluate(eval);
                Log(new { step = state.Step, epoch = Math.Round(epochNow, 4), eval = lastEval });
                progress?.Invoke(new TrainEvent(state.Step, total, epochNow, null, opt.LearningRate, tps, lastEval));
                double metric = lastEval[PrimaryMetric];
                if (state.BestStep == 0 || metric > state.Best)
                {
                    state.Best = metric;
                    state.BestStep = state.Step;
                    state.Patience = 0;
                    Save(BestCheckpoint, opt, state, Name, lastEval);
                }
                else state.Patience++;
            }
            state.LastEval = lastEval;
            Save(LastCheckpoint, opt, state, Name, lastEval);
            if (ranks.RootDecides(o.EarlyStoppingPatience is { } limit && state.Patience >= limit) && o.EarlyStoppingPatience is { } p)
            {
                progress?.Invoke(new TrainEvent(state.Step, total, epochNow, null, opt.LearningRate, tps, null,
                    $"early stop: no better {PrimaryMetric} in {p} evaluations (best {state.Best:F4} at step {state.BestStep})"));
                stoppedEarly = true;
                break;
            }
        }

        var final = lastEval ?? new Dictionary<string, double>();
        if (o.OutDir is not null)
            RunGuards.Writing(EvalFile, state.Step, () => File.WriteAllText(Path.Combine(o.OutDir, EvalFile), JsonSerializer.Serialize(final, new JsonSerializerOptions { WriteIndented = true })));
        return new TrainResult(state.Step, final, PrimaryMetric, state.Best, state.BestStep, model.ParameterCount(trainableOnly: true), model.ParameterCount(),
            clock.Elapsed, tokens / Math.Max(1e-9, clock.Elapsed.TotalSeconds), stoppedEarly, losses);
    }

    /// <summary>The optimizer steps of a run over <paramref name="examples"/> examples: MaxSteps, or
    /// the epochs' global batches (batch size × ranks) over the accumulation.</summary>
    public int TotalSteps(int examples)
    {
        int globalBatch = o.BatchSize * ranks.Size;
        return o.MaxSteps ?? Math.Max(1, (int)Math.Ceiling((double)o.Epochs * ((examples + globalBatch - 1) / globalBatch) / o.GradientAccumulation));
    }

    /// <summary>The task's metrics on <paramref name="data"/> (evaluation mode, no gradients); for a
    /// label-pairing method the metrics of its K-way predictions and the pair accuracy. In a
    /// data-parallel job each rank computes the logits of its shard of the examples and every rank
    /// computes the metrics from all of them (<see cref="DataParallel.GatherRows"/>).</summary>
    public Dictionary<string, double> Evaluate(IReadOnlyList<EncodedExample> data)
    {
        var logits = ranks.GatherRows(data.Count, rows => Logits(rows.Length == data.Count ? data : rows.Select(i => data[i]).ToList()));
        var preds = logits.Select(ToPrediction).ToList();
        var metrics = new Dictionary<string, double>(regression
            ? TaskMetrics.For(o.Task, preds.Select(p => p.Value).ToArray(), data.Select(d => d.Value).ToArray())
            : TaskMetrics.For(o.Task, preds.Select(p => p.Label).ToArray(), data.Select(d => d.Label).ToArray(), model.NumLabels));
        if (model.Peft?.Method.Pairing is { } pairing)
            metrics[LabelPairing.PairAccuracyMetric] = pairing.PairAccuracy(logits, data.Select(d => d.Label).ToList(), new Random(PairSeed(o.Seed, -1)));
        return metrics;
    }

    public Dictionary<string, double> Evaluate(IReadOnlyList<Example> data) => Evaluate(Batches.Encode(data, tokenizer, o.MaxLength));

    /// <summary>Label (argmax) and softmax probabilities per example, or the value for regression.
    /// A label-pairing method's example is scored with each of its K labels: its probabilities are
    /// the softmax of the K pairs' "true" logits (<see cref="LabelPairing"/>).</summary>
    public List<Prediction> Predict(IReadOnlyList<EncodedExample> data) => Logits(data).Select(ToPrediction).ToList();

    /// <summary>Per example, its logits row [C]; for a label-pairing method its K pairs' logits
    /// [K·2] (pair k: the example with label k), run K pairs to a row, about a batch of rows at a time.</summary>
    private List<double[]> Logits(IReadOnlyList<EncodedExample> data)
    {
        bool wasTraining = model.Training;
        model.Eval();
        var pairing = model.Peft?.Method.Pairing;
        int k = pairing?.LabelCount ?? 1;
        var result = new List<double[]>(data.Count);
        using (Tape.NoGrad())
        {
            foreach (var idx in Batches.Order(data, Math.Max(1, o.BatchSize / k), null, false))
            {
                using var scope = Scope.Begin();
                var rows = pairing is null ? idx : idx.SelectMany(i => Enumerable.Repeat(i, k)).ToArray();
                pairing?.Pair(Enumerable.Range(0, rows.Length).Select(r => r % k).ToArray());
                var batch = Batches.Collate(data, rows, tokenizer.PadId);
                var logits = model.Forward(batch.Ids, batch.Mask, model.TokenTypes(batch.Types)).Logits;
                int width = k * logits.Dim(1);
                var v = logits.ToDoubleArray();
                for (int r = 0; r < idx.Length; r++) result.Add(v.AsSpan(r * width, width).ToArray());
            }
        }
        if (wasTraining) model.Train();
        return result;
    }

    private Prediction ToPrediction(double[] logits)
    {
        if (regression) return new Prediction(-1, logits[0], []);
        var row = model.Peft?.Method.Pairing is { } pairing ? pairing.Scores(logits) : logits;
        double max = row.Max();
        var probs = new double[row.Length];
        double sum = 0;
        for (int j = 0; j < row.Length; j++) sum += probs[j] = Math.Exp(row[j] - max);
        int best = 0;
        for (int j = 0; j < row.Length; j++) { probs[j] /= sum; if (probs[j] > probs[best]) best = j; }
        return new Prediction(best, double.NaN, probs);
    }

    public List<Prediction> Predict(IReadOnlyList<Example> data) => Predict(Batches.Encode(data, tokenizer, o.MaxLength));

    /// <summary>The data-order seed of an epoch: a fixed function of the run's seed (not
    /// HashCode.Combine, which .NET randomises per process), so a resumed process sees the same order.</summary>
    /// <summary>A parameter that <see cref="TrainOptions.HeadLearningRate"/> applies to: the
    /// classification head (classifier.* / score.*) or the depth-wise pooling weights.</summary>
    public static bool IsHeadParameter(string name) => PeftSetup.GroupOf(name) is "head" or "depth-wise pooling";

    internal static int EpochSeed(int seed, int epoch) => (int)(Rng.Mix((ulong)(uint)seed, (ulong)epoch) & 0x7FFFFFFF);

    /// <summary>The seed of an epoch's (text, label) pairs for a label-pairing method (epoch −1: the
    /// evaluation's pairs), apart from the data order's.</summary>
    public static int PairSeed(int seed, int epoch) => (int)(Rng.Mix(Rng.Mix((ulong)(uint)seed, 0x9A1F), (ulong)(long)epoch) & 0x7FFFFFFF);

    // ------------------------------------------------------------- checkpoints

    private sealed class RunState
    {
        public int Step;
        public double Best = double.NegativeInfinity;
        public int BestStep;
        public int Patience;
        public Dictionary<string, double>? LastEval;
        public int SkippedSteps;
    }

    private void Save(string name, Optimizer opt, RunState s, Func<Tensor, string> nameOf, IReadOnlyDictionary<string, double>? eval)
    {
        if (o.OutDir is null) return;
        RunGuards.Writing(name, s.Step, () => AtomicFolder.Write(Path.Combine(o.OutDir, name), dir =>
        {
            model.SaveInto(dir, source, labelNames);
            var (buffers, steps, count) = opt.ExportState(nameOf);
            SafeTensors.Save(Path.Combine(dir, OptimizerFile), buffers);
            var st = new JsonObject
            {
                ["step"] = s.Step, ["best_metric"] = double.IsFinite(s.Best) ? s.Best : null, ["best_step"] = s.BestStep,
                ["evals_without_improvement"] = s.Patience, ["skipped_steps"] = s.SkippedSteps, ["optimizer_steps"] = count, ["dropout_counter"] = model.Seeds.Counter,
                ["primary_metric"] = PrimaryMetric, ["seed"] = o.Seed, ["ranks"] = ranks.Size,
                ["parameter_steps"] = JsonSerializer.SerializeToNode(steps),
                ["last_eval"] = eval is null ? null : JsonSerializer.SerializeToNode(eval),
                ["options"] = JsonSerializer.SerializeToNode(o),
            };
            File.WriteAllText(Path.Combine(dir, StateFile), st.ToJsonString(new JsonSerializerOptions { WriteIndented = true }));
        }));
    }

    private RunState Restore(string dir, Optimizer opt, LrScheduler schedule, Func<Tensor, string> nameOf, int stageStart)
    {
        var statePath = Path.Combine(dir, StateFile);
        if (!File.Exists(statePath)) throw new EngineException($"--resume: {dir} has no {StateFile}; is it a checkpoint folder written by engine train?");
        JsonNode st;
        try { st = JsonNode.Parse(File.ReadAllText(statePath)) ?? throw new JsonException("empty"); }
        catch (JsonException e) { throw new EngineException($"{statePath}: not valid JSON ({e.Message.Split('\n')[0]})"); }
        var s = new RunState
        {
            Step = st["step"]!.GetValue<int>(),
            Best = st["best_metric"]?.GetValue<double>() ?? double.NegativeInfinity,
            BestStep = st["best_step"]!.GetValue<int>(),
            Patience = st["evals_without_improvement"]!.GetValue<int>(),
            LastEval = st["last_eval"]?.Deserialize<Dictionary<string, double>>(),
            SkippedSteps = st["skipped_steps"]?.GetValue<int>() ?? 0,
        };
        var steps = st["parameter_steps"]!.Deserialize<Dictionary<string, int>>()!;
        var buffers = SafeTensors.Load(Path.Combine(dir, OptimizerFile));
        opt.ImportState(buffers, steps, st["optimizer_steps"]!.GetValue<int>(), nameOf);
        schedule.Restore(s.Step - stageStart);
        model.Seeds.Counter = st["dropout_counter"]!.GetValue<ulong>();
        return s;
    }

    private static readonly JsonSerializerOptions LogJson = new() { DefaultIgnoreCondition = System.Text.Json.Serialization.JsonIgnoreCondition.WhenWritingNull };

    private void Log(object entry)
    {
        if (o.OutDir is null) return;
        RunGuards.Writing(MetricsFile, -1, () => File.AppendAllText(Path.Combine(o.OutDir, MetricsFile), JsonSerializer.Serialize(entry, LogJson) + "\n"));
    }

    /// <summary>On resume, drops log lines past the checkpoint's step (they belong to the interrupted part).</summary>
    internal static void TrimLog(string path, int step)
    {
        if (!File.Exists(path)) return;
        var keep = File.ReadAllLines(path).Where(l =>
        {
            // A stage line at the checkpoint's step is written again when the resumed run crosses the boundary.
            try { return JsonNode.Parse(l) is { } n && (n["step"]?.GetValue<int>() < step || (n["step"]?.GetValue<int>() == step && n["stage"] is null)); }
            catch (JsonException) { return false; }
        }).ToList();
        File.WriteAllLines(path, keep);
    }
}
