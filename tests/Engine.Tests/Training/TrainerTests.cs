using Engine.IO;
using Engine.Models;
using Engine.Models.Demo;
using Engine.Models.Tokenization;
using Engine.Models.Training;
using NUnit.Framework;

namespace Engine.Tests;

/// <summary>The trainer on the demo's small BERT and synthetic task: determinism, exact resume,
/// the non-finite stop, and that it learns.</summary>
public class TrainerTests
{
    private TempFolder temp = null!;

    [SetUp] public void SetUp() => temp = new TempFolder();
    [TearDown] public void TearDown() => temp.Dispose();

    private (HfModelFolder Folder, Trainer Trainer, SequenceClassifier Model) Make(string? outDir, int steps, int seed = 3, string? from = null, string method = "full")
    {
        var folder = from is null ? DemoModel.CreateFolder(Path.Combine(temp.Path, "init"), seed, hidden: 32) : HfModelFolder.Open(from);
        var model = SequenceClassifier.FromFolder(folder, seed, numLabels: 2);
        var options = new TrainOptions { MaxSteps = steps, BatchSize = 8, LearningRate = 2e-3, MaxLength = 32, Seed = seed, EvalEvery = 4, OutDir = outDir, LogEvery = 1,
            Peft = new Models.Peft.PeftOptions { Method = method } };
        Models.Peft.PeftSetup.Apply(model, options.Peft, folder.Path, seed: seed); // the pipeline's step: the Trainer trains a model its method is applied to
        return (folder, new Trainer(model, folder, TextTokenizer.FromFolder(folder), options, DemoModel.LabelNames, regression: false), model);
    }

    private static readonly Models.Data.Dataset Train = DemoModel.Data(120, 5, "train");
    private static readonly Models.Data.Dataset Eval = DemoModel.Data(40, 6, "eval");

    [Test]
    public void TheSameSeedGivesTheSameLossCurveBitForBit()
    {
        var a = Make(null, 6).Trainer.Train(Train.Examples, null);
        var b = Make(null, 6).Trainer.Train(Train.Examples, null);
        Assert.That(b.Losses, Is.EqualTo(a.Losses));
        Assert.That(a.Losses.Distinct().Count(), Is.GreaterThan(1));
    }

    [TestCase("full")]
    [TestCase("lora")]
    public void AResumedRunContinuesExactlyAsTheUninterruptedOne(string method)
    {
        var full = Make(Path.Combine(temp.Path, "full"), 12, method: method);
        var fullResult = full.Trainer.Train(Train.Examples, Eval.Examples);

        // The same run, killed after step 6 (the last checkpoint is from step 4), then resumed.
        var cut = Make(Path.Combine(temp.Path, "cut"), 12, method: method);
        Assert.Throws<OperationCanceledException>(() => cut.Trainer.Train(Train.Examples, Eval.Examples,
            e => { if (e.Step == 6 && e.Loss is not null) throw new OperationCanceledException("killed"); }));
        var checkpoint = Path.Combine(temp.Path, "cut", Trainer.LastCheckpoint);
        var resumed = Make(Path.Combine(temp.Path, "cut"), 12, from: checkpoint, method: method);
        var resumedResult = resumed.Trainer.Train(Train.Examples, Eval.Examples, resumeFrom: checkpoint);

        Assert.That(resumedResult.Losses, Is.EqualTo(fullResult.Losses.Skip(4)), "losses of steps 5..12");
        foreach (var ((name, p), (_, q)) in full.Model.NamedParameters().Zip(resumed.Model.NamedParameters()))
            Assert.That(q.ToFloatArray(), Is.EqualTo(p.ToFloatArray()), name);
        Assert.That(resumedResult.FinalEval, Is.EqualTo(fullResult.FinalEval));
        var log = File.ReadAllLines(Path.Combine(temp.Path, "cut", Trainer.MetricsFile));
        Assert.That(log.Count(l => l.Contains("\"loss\"")), Is.EqualTo(12), "one training line per step, none duplicated by the resume");
    }

    /// <summary>--head-lr: after one AdamW step (constant rate, no warmup, no decay) every
    /// parameter with a gradient moves by about its rate (the first Adam step is lr·g/(|g| + ε)),
    /// so the head and the depth-wise weights move by the head's rate and the body by the body's;
    /// a head rate equal to the rate is the plain run bit for bit.</summary>
    [Test]
    public void TheHeadLearningRateMovesTheHeadAndThePoolingWeightsAtTheirOwnRate()
    {
        Dictionary<string, float[]> Run(double? headLr, out Dictionary<string, float[]> before)
        {
            var folder = DemoModel.CreateFolder(Path.Combine(temp.Path, $"init{headLr}"), 3, hidden: 32);
            var model = SequenceClassifier.FromFolder(folder, 3, numLabels: 2);
            var options = new TrainOptions { MaxSteps = 1, BatchSize = 8, LearningRate = 1e-4, HeadLearningRate = headLr, MaxLength = 32, Seed = 3,
                WarmupRatio = 0, Schedule = "constant", WeightDecay = 0, MaxGradNorm = 0,
                Peft = new Models.Peft.PeftOptions { Method = "full", Pooling = "depthwise" } };
            Models.Peft.PeftSetup.Apply(model, options.Peft, folder.Path, seed: 3);
            before = model.NamedParameters().ToDictionary(np => np.Name, np => np.Param.ToFloatArray());
            new Trainer(model, folder, TextTokenizer.FromFolder(folder), options, DemoModel.LabelNames, regression: false).Train(Train.Examples, null);
            return model.NamedParameters().ToDictionary(np => np.Name, np => np.Param.ToFloatArray());
        }
        var after = Run(3e-3, out var before);
        int heads = 0, bodies = 0;
        foreach (var (name, w) in after)
        {
            double moved = w.Zip(before[name], (a, b) => Math.Abs((double)a - b)).Max();
            bool head = Trainer.IsHeadParameter(name);
            double rate = head ? 3e-3 : 1e-4;
            // The key bias's gradient is zero up to rounding (softmax ignores a constant added to
            // every score), far below Adam's ε: it moves by almost nothing, never by more than its rate.
            double lowest = name.EndsWith("key.bias", StringComparison.Ordinal) ? 0 : 0.5 * rate;
            Assert.That(moved, Is.InRange(lowest, 1.05 * rate), $"{name}: largest change {moved:G3}, rate {rate:G3}");
            if (head) heads++; else bodies++;
        }
        Assert.That(heads, Is.GreaterThanOrEqualTo(3), "classifier weight, bias and the depth-wise weights moved");
        Assert.That(after.Keys.Count(Trainer.IsHeadParameter), Is.EqualTo(heads));
        Assert.That(after.Keys, Does.Contain(Models.Peft.SequencePooling.ParameterName));
        Assert.That(bodies, Is.GreaterThan(10));

        var same = Run(1e-4, out _);
        var plain = Run(null, out _);
        foreach (var (name, w) in plain) Assert.That(same[name], Is.EqualTo(w), name);
    }

    /// <summary>Found by the kill/resume test: a run killed after writing the checkpoint of the step
    /// at which it stopped early trained on when resumed.</summary>
    [Test]
    public void ARunResumedAfterItsEarlyStopStaysStopped()
    {
        var outDir = Path.Combine(temp.Path, "run");
        var folder = DemoModel.CreateFolder(Path.Combine(temp.Path, "init"), 3, hidden: 32);
        var options = new TrainOptions { MaxSteps = 40, BatchSize = 8, LearningRate = 1e-6, MaxLength = 32, Seed = 3, EvalEvery = 1, EarlyStoppingPatience = 1, OutDir = outDir };
        var first = new Trainer(SequenceClassifier.FromFolder(folder, 3, numLabels: 2), folder, TextTokenizer.FromFolder(folder), options, DemoModel.LabelNames, false)
            .Train(Train.Examples, Eval.Examples);
        Assert.That(first.StoppedEarly && first.Steps < 40, $"the run stopped early (at step {first.Steps})");
        var checkpoint = Path.Combine(outDir, Trainer.LastCheckpoint);
        var weights = File.ReadAllBytes(Path.Combine(checkpoint, SafeTensors.SingleFileName));
        var again = HfModelFolder.Open(checkpoint);
        var resumed = new Trainer(SequenceClassifier.FromFolder(again, 3, numLabels: 2), again, TextTokenizer.FromFolder(again), options, DemoModel.LabelNames, false)
            .Train(Train.Examples, Eval.Examples, resumeFrom: checkpoint);
        Assert.That((resumed.Steps, resumed.StoppedEarly), Is.EqualTo((first.Steps, true)));
        Assert.That(File.ReadAllBytes(Path.Combine(checkpoint, SafeTensors.SingleFileName)), Is.EqualTo(weights));
    }

    [Test]
    public void ANonFiniteLossStopsTheRunAndKeepsTheLastCheckpoint()
    {
        var outDir = Path.Combine(temp.Path, "run");
        var (_, trainer, model) = Make(outDir, 4);
        trainer.Train(Train.Examples, Eval.Examples);
        var checkpointWeights = File.ReadAllBytes(Path.Combine(outDir, Trainer.LastCheckpoint, SafeTensors.SingleFileName));

        var checkpoint = Path.Combine(outDir, Trainer.LastCheckpoint);
        var (_, again, broken) = Make(outDir, 8, from: checkpoint);
        broken.NamedParameters().First(p => p.Name.EndsWith("word_embeddings.weight")).Param.Span<float>().Fill(float.NaN);
        var e = Assert.Throws<EngineException>(() => again.Train(Train.Examples, Eval.Examples, resumeFrom: checkpoint));
        Assert.That(e!.Message, Does.Contain("NaN").And.Contain("step 5").And.Contain("not applied"));
        Assert.That(File.ReadAllBytes(Path.Combine(outDir, Trainer.LastCheckpoint, SafeTensors.SingleFileName)), Is.EqualTo(checkpointWeights));
        Assert.That(Directory.GetDirectories(outDir).Where(d => d.Contains(".tmp-")), Is.Empty, "no half-written checkpoint");
    }

    [Test]
    public void TheDemoLearnsAWordOrderTaskABagOfWordsCannot()
    {
        var result = Engine.Cli.Commands.DemoCommand.Run(Path.Combine(temp.Path, "demo"), steps: 200, seed: 4, trainCount: 3000, evalCount: 300);
        Assert.That(result.FinalEval["accuracy"], Is.GreaterThan(0.8), "majority class ≈ 0.5");
        foreach (var f in new[] { Trainer.MetricsFile, Trainer.EvalFile, "loss.png", Path.Combine(Trainer.BestCheckpoint, "config.json"),
                                  Path.Combine(Trainer.LastCheckpoint, Trainer.OptimizerFile) })
            Assert.That(File.Exists(Path.Combine(temp.Path, "demo", f)), f);
    }
}

public class NegationTaskTests
{
    [Test]
    public void SwappingTheClausesKeepsTheWordsAndCanFlipTheLabel()
    {
        var data = Engine.Models.Demo.NegationTask.Make(2000, 11);
        int twoClause = 0, flipped = 0;
        foreach (var e in data)
        {
            var parts = e.Text.TrimEnd(' ', '.').Split(" but ");
            if (parts.Length != 2) continue;
            twoClause++;
            var swapped = $"{parts[1]} but {parts[0]} .";
            Assert.That(swapped.Split(' ').Order(), Is.EqualTo(e.Text.Split(' ').Order()), "the same bag of words");
            bool firstPositive = Polarity(parts[0]);
            if (firstPositive != (e.Label == 1)) flipped++; // the swapped sentence's label (first clause's polarity) differs
        }
        Assert.That(twoClause, Is.GreaterThan(800));
        Assert.That((double)flipped / twoClause, Is.EqualTo(0.5).Within(0.06), "about half the swaps flip the label: no bag of words can tell");
    }

    private static bool Polarity(string clause)
    {
        var words = clause.Split(' ');
        bool positive = words.Any(w => Engine.Models.Demo.NegationTask.Positive.Contains(w));
        return positive ^ words.Contains("not");
    }
}
