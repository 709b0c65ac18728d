using System.Diagnostics;
using Engine.Autograd;
using Engine.Optim;

namespace Engine.Models.Tiny;

/// <summary>Settings of the demo run.</summary>
public sealed record DemoOptions(int Steps = 300, int BatchSize = 32, double LearningRate = 3e-3, int Seed = 1,
    int TrainExamples = 4000, int TestExamples = 500, int LogEvery = 50);

/// <summary>What a demo run measured.</summary>
public sealed record DemoResult(double FirstLoss, double FinalLoss, double TestAccuracy, double TokensPerSecond, long Parameters, IReadOnlyList<double> Losses);

/// <summary>
/// `engine demo`: trains <see cref="TinyTransformer"/> on <see cref="MajorityTask"/> with AdamW,
/// linear warmup and decay and gradient clipping, then reports held-out accuracy. Everything a
/// step makes lives in the step's scope.
/// </summary>
public static class TinyDemo
{
    public static DemoResult Run(DemoOptions o, Action<string> log)
    {
        var config = new TinyConfig();
        var model = new TinyTransformer(config, o.Seed);
        var train = MajorityTask.Make(o.TrainExamples, config.Vocab, 6, 20, o.Seed);
        var test = MajorityTask.Make(o.TestExamples, config.Vocab, 6, 20, o.Seed + 1000);
        var opt = new AdamW(model.Parameters(), o.LearningRate, weightDecay: 0.01, noDecay: Optimizer.VectorsAndScalars);
        var schedule = new LrScheduler(opt, new LrSchedule.LinearWarmupDecay(o.Steps / 10, o.Steps));
        var rng = new Random(o.Seed);
        log($"tiny transformer: {config.Layers} layers, dim {config.Dim}, {config.Heads} heads, {model.ParameterCount():N0} parameters");
        log($"task: is token A more frequent than token B? {train.Count} training / {test.Count} held-out sequences of 6-20 tokens");

        double first = double.NaN, last = double.NaN, smoothed = double.NaN;
        long tokens = 0;
        var losses = new List<double>();
        var clock = Stopwatch.StartNew();
        var order = Enumerable.Range(0, train.Count).ToArray();
        int cursor = order.Length;
        for (int step = 1; step <= o.Steps; step++)
        {
            if (cursor + o.BatchSize > order.Length) { rng.Shuffle(order); cursor = 0; }
            var batch = MajorityTask.Collate(order.Skip(cursor).Take(o.BatchSize).Select(i => train[i]).ToList());
            cursor += o.BatchSize;
            using (Scope.Begin())
            {
                var loss = Ops.CrossEntropy(model.Forward(batch.Ids, batch.Mask), batch.Labels);
                loss.Backward();
                double norm = GradClip.ClipByGlobalNorm(opt.Parameters, 1.0);
                last = loss.Item();
                losses.Add(last);
                if (!double.IsFinite(last) || !double.IsFinite(norm))
                    throw new EngineException($"demo: non-finite loss {last} or gradient norm {norm} at step {step}");
                opt.Step();
                schedule.Step();
                opt.ZeroGrad();
            }
            tokens += batch.Ids.Numel;
            if (step == 1) first = smoothed = last;
            smoothed = 0.9 * smoothed + 0.1 * last;
            if (step % o.LogEvery == 0 || step == o.Steps)
                log($"step {step,5}/{o.Steps}  loss {smoothed:F4}  lr {opt.LearningRate:E2}  {tokens / clock.Elapsed.TotalSeconds:N0} tokens/s");
        }
        double tps = tokens / clock.Elapsed.TotalSeconds;
        double acc = Accuracy(model, test);
        log($"held-out accuracy {acc:P1} (chance 50%); loss {first:F4} → {smoothed:F4}; {clock.Elapsed.TotalSeconds:F1} s");
        return new DemoResult(first, smoothed, acc, tps, model.ParameterCount(), losses);
    }

    public static double Accuracy(TinyTransformer model, List<(int[] Tokens, int Label)> data)
    {
        model.Eval();
        int correct = 0;
        using (Tape.NoGrad())
        {
            for (int i = 0; i < data.Count; i += 100)
            {
                using var _ = Scope.Begin();
                var batch = MajorityTask.Collate(data.Skip(i).Take(100).ToList());
                var logits = model.Forward(batch.Ids, batch.Mask).ToDoubleArray();
                var labels = batch.Labels.ToIntArray();
                for (int b = 0; b < labels.Length; b++)
                    if ((logits[2 * b + 1] > logits[2 * b] ? 1 : 0) == labels[b]) correct++;
            }
        }
        model.Train();
        return (double)correct / data.Count;
    }
}
