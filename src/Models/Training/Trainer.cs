using System.Diagnostics;
using System.Text.Json;
using System.Text.Json.Nodes;
using Engine.Autograd;
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

    public Trainer(SequenceClassifier model, HfModelFolder source, TextTokenizer tokenizer, TrainOptions options, IReadOnlyList<string>? labelNames, bool regression)
    {
        options.Validate();
        this.model = model;
        this.source = source;
        this.tokenizer = tokenizer;
        o = options;
        this.labelNames = labelNames;
        this.regression = regression;
    }

    public string PrimaryMetric => Metrics.PrimaryMetric(o.Task, regression);

    /// <summary>Trains; <paramref name="resumeFrom"/> continues a run from its checkpoint folder.</summary>
    public TrainResult Train(IReadOnlyList<Example> trainSet, IReadOnlyList<Example>? evalSet, Action<TrainEvent>? progress = null, string? resumeFrom = null)
    {
        var train = Batches.Encode(trainSet, tokenizer, o.MaxLength);
        var eval = evalSet is null ? null : Batches.Encode(evalSet, tokenizer, o.MaxLength);
        if (train.Count == 0) throw new EngineException("train: the training set is empty");
        int perEpoch = (train.Count + o.BatchSize - 1) / o.BatchSize;
        int total = o.MaxSteps ?? Math.Max(1, (int)Math.Ceiling((double)o.Epochs * perEpoch / o.GradientAccumulation));
        int warmup = (int)(o.WarmupRatio * total);

        // The method decides what trains (a no-op when the model already has it: a resumed run,
        // or a caller that applied it to print the parameter table first).
        PeftSetup.Apply(model, o.Peft, source.Path, text => tokenizer.EncodeWithoutSpecialTokens(text), o.Seed);
        if (o.Device is { } device) model.To(device);
        model.Train();
        var opt = new AdamW(model.Parameters(), o.LearningRate, weightDecay: o.WeightDecay, noDecay: Optimizer.VectorsAndScalars);
        var schedule = new LrScheduler(opt, o.Schedule switch
        {
            "constant" => warmup > 0 ? new LrSchedule.ConstantWithWarmup(warmup) : new LrSchedule.Constant(),
            "cosine" => new LrSchedule.CosineWithWarmup(warmup, total),
            _ => new LrSchedule.LinearWarmupDecay(warmup, total),
        });
        var checkpointNames = new Dictionary<Tensor, string>(ReferenceEqualityComparer.Instance);
        foreach (var (n, p) in model.NamedParameters()) checkpointNames[p] = model.CheckpointName(n);
        string Name(Tensor p) => checkpointNames[p];

        var state = new RunState();
        if (resumeFrom is not null) state = Restore(resumeFrom, opt, schedule, Name);
        if (o.OutDir is not null)
        {
            Directory.CreateDirectory(o.OutDir);
            TrimLog(Path.Combine(o.OutDir, MetricsFile), state.Step);
        }

        var losses = new List<double>();
        var clock = Stopwatch.StartNew();
        long tokens = 0;
        long micro = (long)state.Step * o.GradientAccumulation;
        List<int[]>? order = null;
        int orderEpoch = -1;
        bool stoppedEarly = false;
        var lastEval = state.LastEval;

        while (state.Step < total)
        {
            double stepLoss = 0;
            for (int a = 0; a < o.GradientAccumulation; a++, micro++)
            {
                int epoch = (int)(micro / perEpoch);
                if (epoch != orderEpoch)
                {
                    order = Batches.Order(train, o.BatchSize, new Random(EpochSeed(o.Seed, epoch)), o.BucketByLength);
                    orderEpoch = epoch;
                }
                var batch = Batches.Collate(train, order![(int)(micro % perEpoch)], tokenizer.PadId);
                tokens += batch.Tokens;
                using var scope = Scope.Begin();
                using var precision = MixedPrecision.Use(MixedPrecision.Parse(o.Precision)); // bf16: GEMM inputs rounded (forward and backward)
                var output = model.Forward(batch.Ids, batch.Mask, batch.Types);
                var loss = model.Loss(output.Logits, regression ? batch.Values : batch.Labels);
                double value = loss.Item();
                if (!double.IsFinite(value))
                    throw new EngineException($"train: the loss is {value} at step {state.Step + 1}; stopped (the last checkpoint is intact)");
                stepLoss += value / o.GradientAccumulation;
                (o.GradientAccumulation == 1 ? loss : Ops.Scale(loss, 1.0 / o.GradientAccumulation)).Backward();
            }
            double norm = o.MaxGradNorm > 0 ? GradClip.ClipByGlobalNorm(opt.Parameters, o.MaxGradNorm) : GradClip.GlobalNorm(opt.Parameters);
            if (!double.IsFinite(norm))
                throw new EngineException($"train: the gradient norm is {norm} at step {state.Step + 1}; stopped (the last checkpoint is intact)");
            opt.Step();
            schedule.Step();
            opt.ZeroGrad();
            state.Step++;
            losses.Add(stepLoss);
            double epochNow = (double)micro / perEpoch;
            double tps = tokens / Math.Max(1e-9, clock.Elapsed.TotalSeconds);
            if (state.Step % o.LogEvery == 0 || state.Step == total)
            {
                Log(new { step = state.Step, epoch = Math.Round(epochNow, 4), loss = stepLoss, lr = opt.LearningRate, grad_norm = norm, tokens_per_s = Math.Round(tps) });
                progress?.Invoke(new TrainEvent(state.Step, total, epochNow, stepLoss, opt.LearningRate, tps, null));
            }

            bool epochEnd = micro % perEpoch == 0;
            bool due = (o.EvalEvery is { } every && state.Step % every == 0) || epochEnd || state.Step == total;
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
            if (o.EarlyStoppingPatience is { } p && state.Patience >= p)
            {
                progress?.Invoke(new TrainEvent(state.Step, total, epochNow, null, opt.LearningRate, tps, null,
                    $"early stop: no better {PrimaryMetric} in {p} evaluations (best {state.Best:F4} at step {state.BestStep})"));
                stoppedEarly = true;
                break;
            }
        }

        var final = lastEval ?? new Dictionary<string, double>();
        if (o.OutDir is not null) File.WriteAllText(Path.Combine(o.OutDir, EvalFile), JsonSerializer.Serialize(final, new JsonSerializerOptions { WriteIndented = true }));
        return new TrainResult(state.Step, final, PrimaryMetric, state.Best, state.BestStep, model.ParameterCount(trainableOnly: true), model.ParameterCount(),
            clock.Elapsed, tokens / Math.Max(1e-9, clock.Elapsed.TotalSeconds), stoppedEarly, losses);
    }

    /// <summary>The task's metrics on <paramref name="data"/> (evaluation mode, no gradients).</summary>
    public Dictionary<string, double> Evaluate(IReadOnlyList<EncodedExample> data)
    {
        var preds = Predict(data);
        return new Dictionary<string, double>(regression
            ? Metrics.ForTask(o.Task, preds.Select(p => p.Value).ToArray(), data.Select(d => d.Value).ToArray())
            : Metrics.ForTask(o.Task, preds.Select(p => p.Label).ToArray(), data.Select(d => d.Label).ToArray(), model.NumLabels));
    }

    public Dictionary<string, double> Evaluate(IReadOnlyList<Example> data) => Evaluate(Batches.Encode(data, tokenizer, o.MaxLength));

    /// <summary>Label (argmax) and softmax probabilities per example, or the value for regression.</summary>
    public List<Prediction> Predict(IReadOnlyList<EncodedExample> data)
    {
        bool wasTraining = model.Training;
        model.Eval();
        var result = new List<Prediction>(data.Count);
        using (Tape.NoGrad())
        {
            foreach (var idx in Batches.Order(data, o.BatchSize, null, false))
            {
                using var scope = Scope.Begin();
                var batch = Batches.Collate(data, idx, tokenizer.PadId);
                var logits = model.Forward(batch.Ids, batch.Mask, batch.Types).Logits;
                int c = logits.Dim(1);
                var v = logits.ToDoubleArray();
                for (int r = 0; r < idx.Length; r++)
                {
                    var row = v.AsSpan(r * c, c);
                    if (regression) { result.Add(new Prediction(-1, row[0], [])); continue; }
                    double max = double.NegativeInfinity;
                    foreach (var x in row) max = Math.Max(max, x);
                    var probs = new double[c];
                    double sum = 0;
                    for (int j = 0; j < c; j++) sum += probs[j] = Math.Exp(row[j] - max);
                    int best = 0;
                    for (int j = 0; j < c; j++) { probs[j] /= sum; if (probs[j] > probs[best]) best = j; }
                    result.Add(new Prediction(best, double.NaN, probs));
                }
            }
        }
        if (wasTraining) model.Train();
        return result;
    }

    public List<Prediction> Predict(IReadOnlyList<Example> data) => Predict(Batches.Encode(data, tokenizer, o.MaxLength));

    /// <summary>The data-order seed of an epoch: a fixed function of the run's seed (not
    /// HashCode.Combine, which .NET randomises per process), so a resumed process sees the same order.</summary>
    internal static int EpochSeed(int seed, int epoch) => (int)(Rng.Mix((ulong)(uint)seed, (ulong)epoch) & 0x7FFFFFFF);

    // ------------------------------------------------------------- checkpoints

    private sealed class RunState
    {
        public int Step;
        public double Best = double.NegativeInfinity;
        public int BestStep;
        public int Patience;
        public Dictionary<string, double>? LastEval;
    }

    private void Save(string name, Optimizer opt, RunState s, Func<Tensor, string> nameOf, IReadOnlyDictionary<string, double>? eval)
    {
        if (o.OutDir is null) return;
        AtomicFolder.Write(Path.Combine(o.OutDir, name), dir =>
        {
            model.SaveInto(dir, source, labelNames);
            var (buffers, steps, count) = opt.ExportState(nameOf);
            SafeTensors.Save(Path.Combine(dir, OptimizerFile), buffers);
            var st = new JsonObject
            {
                ["step"] = s.Step, ["best_metric"] = double.IsFinite(s.Best) ? s.Best : null, ["best_step"] = s.BestStep,
                ["evals_without_improvement"] = s.Patience, ["optimizer_steps"] = count, ["dropout_counter"] = model.Seeds.Counter,
                ["primary_metric"] = PrimaryMetric, ["seed"] = o.Seed,
                ["parameter_steps"] = JsonSerializer.SerializeToNode(steps),
                ["last_eval"] = eval is null ? null : JsonSerializer.SerializeToNode(eval),
                ["options"] = JsonSerializer.SerializeToNode(o),
            };
            File.WriteAllText(Path.Combine(dir, StateFile), st.ToJsonString(new JsonSerializerOptions { WriteIndented = true }));
        });
    }

    private RunState Restore(string dir, Optimizer opt, LrScheduler schedule, Func<Tensor, string> nameOf)
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
        };
        var steps = st["parameter_steps"]!.Deserialize<Dictionary<string, int>>()!;
        var buffers = SafeTensors.Load(Path.Combine(dir, OptimizerFile));
        opt.ImportState(buffers, steps, st["optimizer_steps"]!.GetValue<int>(), nameOf);
        schedule.Restore(s.Step);
        model.Seeds.Counter = st["dropout_counter"]!.GetValue<ulong>();
        return s;
    }

    private void Log(object entry)
    {
        if (o.OutDir is null) return;
        File.AppendAllText(Path.Combine(o.OutDir, MetricsFile), JsonSerializer.Serialize(entry) + "\n");
    }

    /// <summary>On resume, drops log lines past the checkpoint's step (they belong to the interrupted part).</summary>
    internal static void TrimLog(string path, int step)
    {
        if (!File.Exists(path)) return;
        var keep = File.ReadAllLines(path).Where(l =>
        {
            try { return JsonNode.Parse(l)?["step"]?.GetValue<int>() <= step; }
            catch (JsonException) { return false; }
        }).ToList();
        File.WriteAllLines(path, keep);
    }
}
