using System.Text.Json;
using System.Text.Json.Nodes;
using Engine.Autograd;
using Engine.Models;
using Engine.Models.Demo;
using Engine.Models.Peft;
using Engine.Models.Peft.LTuning;
using Engine.Models.Tokenization;
using Engine.Models.Training;
using Engine.Tests.Devices;
using NUnit.Framework;

namespace Engine.Tests.Peft;

/// <summary>L-Tuning learns, on the tuned demo backbone of <see cref="PeftTests"/> (its helper).</summary>
public partial class PeftTests
{
    // Measured (K-way held-out accuracy on 400 sentences before → after; the pair accuracy after),
    // 400 steps of 16 at lr 1e-2, method seeds 1, 2, 3, 4:
    //   lt-prefix            99.8, 99.5, 99.5, 99.8%; pairs 76.7, 81.2, 77.7, 73.8%
    //   lt-prompt            100% for each seed;      pairs 84.0, 75.5, 78.5, 79.0%
    //   lt-prefix depthwise  100, 99.8, 100, 100%;    pairs 78.5, 81.0, 82.3, 74.0%
    // Before training: K-way 19–55%, pairs 44–51%. With 120 steps: 73–76% K-way. With the texts
    // "the ending was good/bad" (l = 6) LT-prompt stayed at 92%: its text then starts 6
    // positions later, beyond the 0–4 the backbone was tuned with. The pair accuracy levels off
    // near 75–84% on this 2-block backbone (frozen, its pooler too): see docs/methods.md.
    [TestCase("lt-prefix", null, 1e-2, 400)]
    [TestCase("lt-prompt", null, 1e-2, 400)]
    [TestCase("lt-prefix", "depthwise", 1e-2, 400)]
    public void LTuningLearnsANewTaskOnATunedBackbone(string method, string? pooling, double lr, int steps)
    {
        var backbone = Tuned();
        var peft = LTuningTests.Options(method, pooling, LTuningTests.FlippedTexts);
        var model = SequenceClassifier.FromFolder(backbone.Folder, 3, numLabels: 2);
        PeftSetup.Apply(model, peft, backbone.Folder.Path, backbone.Tokenizer, 3, DemoModel.LabelNames);
        var trainer = new Trainer(model, backbone.Folder, backbone.Tokenizer, new TrainOptions
        {
            MaxSteps = steps, BatchSize = 16, LearningRate = lr, MaxLength = 32, Seed = 3, WarmupRatio = 0, LogEvery = 1000, Peft = peft,
        }, DemoModel.LabelNames, regression: false);
        var before = trainer.Evaluate(DownstreamHeldOut);
        var result = trainer.Train(DownstreamTrain, null);
        var after = trainer.Evaluate(DownstreamHeldOut);
        TestContext.Out.WriteLine($"{method} {pooling}: loss {result.Losses[0]:F3} → {result.Losses[^1]:F3}; held out accuracy {before["accuracy"]:P1} → {after["accuracy"]:P1}, " +
                                  $"pair accuracy {before[LabelPairing.PairAccuracyMetric]:P1} → {after[LabelPairing.PairAccuracyMetric]:P1}");
        Assert.That(before["accuracy"], Is.LessThan(0.8), "fresh method parameters and head do not start solved");
        Assert.That(before[LabelPairing.PairAccuracyMetric], Is.LessThan(0.6));
        Assert.That(after["accuracy"], Is.GreaterThanOrEqualTo(0.95), $"{method}: K-way held-out accuracy");
        Assert.That(after[LabelPairing.PairAccuracyMetric], Is.GreaterThanOrEqualTo(0.65), $"{method}: pair accuracy");
    }
}

/// <summary>
/// L-Tuning (lt-prefix, lt-prompt) on the demo's small BERT (width 32, 2 layers, 4 heads), the tiny
/// RoBERTa fixture (width 32, 2 layers) and the tiny Llama fixture (width 32, 2 layers, 2 kv heads
/// of 8: key/value width 16; 3 labels).
/// </summary>
public class LTuningTests
{
    private TempFolder temp = null!;

    [SetUp] public void SetUp() => temp = new TempFolder();
    [TearDown] public void TearDown() => temp.Dispose();

    /// <summary>Texts in the demo vocabulary (its label names "negative", "positive" are not in it),
    /// of different lengths so the shorter is padded with '.'.</summary>
    internal static readonly Dictionary<string, string> DemoTexts = new() { ["negative"] = "the story was bad", ["positive"] = "the story was really good" };

    /// <summary>For the flipped task of <see cref="PeftTests"/> (label "negative" on sentences whose
    /// last clause is positive). One word each (l = 3 with [CLS] and [SEP]): LT-prompt moves the
    /// text l positions right, and the tuned backbone reads text at offsets up to 4.</summary>
    internal static readonly Dictionary<string, string> FlippedTexts = new() { ["negative"] = "good", ["positive"] = "bad" };

    private static readonly string[] LlamaLabels = ["negative", "neutral", "positive"];
    private static readonly Dictionary<string, string> LlamaTexts = new() { ["negative"] = "it was bad", ["neutral"] = "it was fine i guess", ["positive"] = "it was good" };

    internal static PeftOptions Options(string method, string? pooling, IReadOnlyDictionary<string, string>? texts, double dropout = 0.1) => new()
    {
        Method = method, Pooling = pooling,
        Settings = method == "lt-prefix" ? new LtPrefixOptions { LabelTexts = texts, Dropout = dropout } : new LtPromptOptions { LabelTexts = texts, Dropout = dropout },
    };

    /// <summary>A word-level tokenizer for the tokenizer-less Llama and RoBERTa fixtures: '.' is id 4,
    /// other words ids 5..V−1 by a fixed hash; no special tokens.</summary>
    private sealed class WordTokenizer(int vocab, int pad) : TextTokenizer
    {
        public override int PadId => pad;
        public override int VocabSize => vocab;
        public override IReadOnlyList<int> EncodeWithoutSpecialTokens(string text) =>
            text.Split(' ', StringSplitOptions.RemoveEmptyEntries).Select(w => w == "." ? 4 : 5 + w.Aggregate(7, (h, c) => (h * 31 + c) % 9973) % (vocab - 5)).ToList();
        public override string? IdToToken(int id) => id == 4 ? "." : null;
        public override int? TokenToId(string token) => token == "." ? 4 : null;
    }

    private sealed record Setup(HfModelFolder Folder, TextTokenizer Tokenizer, IReadOnlyList<string> Labels, IReadOnlyDictionary<string, string> Texts,
        List<Models.Data.Example> Train, List<Models.Data.Example> Held);

    /// <summary>The family's model folder, tokenizer, labels, texts and data (Llama: 3 labels, the
    /// demo sentences labelled by a word-count rule, for mechanics only; RoBERTa: the tiny fixture
    /// with the word tokenizer, so its prompts are not wrapped).</summary>
    private Setup For(string family)
    {
        if (family == "roberta")
        {
            var roberta = HfModelFolder.Open(Path.Combine(TestContext.CurrentContext.TestDirectory, "Fixtures", "bert_tiny", "roberta"));
            return new Setup(roberta, new WordTokenizer(99, 1), DemoModel.LabelNames, DemoTexts,
                DemoModel.Data(48, 5, "train").Examples.ToList(), DemoModel.Data(20, 6, "held").Examples.ToList());
        }
        if (family == "bert")
        {
            var folder = DeviceModelTests.Folder("bert", temp.Path);
            return new Setup(folder, TextTokenizer.FromFolder(folder), DemoModel.LabelNames, DemoTexts,
                DemoModel.Data(48, 5, "train").Examples.ToList(), DemoModel.Data(20, 6, "held").Examples.ToList());
        }
        var llama = DeviceModelTests.Folder("llama", temp.Path);
        List<Models.Data.Example> Three(int n, int seed) => DemoModel.Data(n, seed, "x").Examples.Select(e => e with { Label = e.Text.Split(' ').Length % 3 }).ToList();
        return new Setup(llama, new WordTokenizer(101, 0), LlamaLabels, LlamaTexts, Three(48, 5), Three(20, 6));
    }

    private static SequenceClassifier Model(Setup s, PeftOptions peft, int seed = 3)
    {
        var model = SequenceClassifier.FromFolder(s.Folder, seed, numLabels: s.Labels.Count);
        PeftSetup.Apply(model, peft, s.Folder.Path, s.Tokenizer, seed, s.Labels);
        return model;
    }

    /// <summary>The run on <paramref name="model"/> (its method applied already: the pipeline keeps it; moved to <paramref name="device"/>).</summary>
    private static TrainingPipeline TrainerFor(Setup s, SequenceClassifier model, PeftOptions peft, int steps, string? outDir = null, Device? device = null, int batch = 8) =>
        new(s.Folder, s.Tokenizer, model, new TrainOptions
        {
            MaxSteps = steps, BatchSize = batch, LearningRate = 1e-2, MaxLength = 32, Seed = 3, WarmupRatio = 0, LogEvery = 1, EvalEvery = 3,
            OutDir = outDir, Peft = peft, Device = device,
        }, s.Labels, regression: false);

    // ------------------------------------------------------------------ prompts

    [Test]
    public void LabelPromptsArePaddedWithTheDotTokenAndWrappedForEncoders()
    {
        var s = For("bert");
        var prompts = LabelPrompts.Build(s.Tokenizer, ["the story was bad", "the story was really good"], wrap: true);
        int cls = s.Tokenizer.TokenToId("[CLS]")!.Value, sep = s.Tokenizer.TokenToId("[SEP]")!.Value, dot = s.Tokenizer.TokenToId(".")!.Value;
        var bad = s.Tokenizer.EncodeWithoutSpecialTokens("the story was bad");
        var good = s.Tokenizer.EncodeWithoutSpecialTokens("the story was really good");
        Assert.That(prompts[0], Is.EqualTo(new[] { cls }.Concat(bad).Append(dot).Append(sep)));
        Assert.That(prompts[1], Is.EqualTo(new[] { cls }.Concat(good).Append(sep)));
        var unwrapped = LabelPrompts.Build(s.Tokenizer, ["the story was bad", "the story was really good"], wrap: false);
        Assert.That(unwrapped[0], Is.EqualTo(bad.Append(dot)));
    }

    // ------------------------------------------------------------------ what trains

    /// <summary>Trained parameters by name and count: l = the longest text's tokens (+ 2 special
    /// tokens for BERT), m = 2 blocks, D = 32, W = 32 (encoders) or 16 (Llama), K = 2 (encoders) or 3.</summary>
    [TestCase("bert", "lt-prefix", null)]
    [TestCase("bert", "lt-prompt", null)]
    [TestCase("bert", "lt-prefix", "depthwise")]
    [TestCase("roberta", "lt-prefix", null)]
    [TestCase("roberta", "lt-prompt", "mean")]
    [TestCase("llama", "lt-prefix", null)]
    [TestCase("llama", "lt-prompt", "depthwise")]
    public void LTuningTrainsExactlyItsParameters(string family, string method, string? pooling)
    {
        var s = For(family);
        var peft = Options(method, pooling, s.Texts);
        var model = Model(s, peft);
        bool bert = family != "llama"; // the encoder variants and head
        int l = 5 + (family == "bert" ? 2 : 0), d = 32, m = 2, w = bert ? 32 : 16, k = s.Labels.Count;
        var expected = new Dictionary<string, long>
        {
            ["ltuning.head.weight"] = 2 * d,
        };
        if (bert) expected["ltuning.head.bias"] = 2;
        if (method == "lt-prefix" || bert) { expected["ltuning.scorer.weight"] = d; expected["ltuning.scorer.bias"] = 1; }
        if (method == "lt-prefix" && bert) { expected["ltuning.projection.weight"] = l * l * 2 * m * w; expected["ltuning.projection.bias"] = l * 2 * m * w; }
        if (method == "lt-prefix" && !bert)
            foreach (var kv in new[] { "key", "value" }) { expected[$"ltuning.{kv}_projection.weight"] = l * l * m * w; expected[$"ltuning.{kv}_projection.bias"] = l * m * w; }
        if (method == "lt-prompt" && bert) { expected["ltuning.projection.weight"] = l * l * d; expected["ltuning.projection.bias"] = l * d; }
        if (method == "lt-prompt" && !bert) { expected["ltuning.transform.weight"] = d * d; expected["ltuning.transform.bias"] = d; }
        if (pooling?.StartsWith("depthwise") == true) expected[SequencePooling.ParameterName] = m;

        var trained = model.NamedParameters().Where(p => p.Param.RequiresGrad).ToDictionary(p => p.Name, p => p.Param.Numel);
        Assert.That(trained, Is.EquivalentTo(expected));
        var states = model.NamedParameters().Single(p => p.Name == "ltuning.label_states").Param;
        Assert.That(states.ShapeArray, Is.EqualTo(new[] { k, l, d }), "label states [K, l, D], frozen");
        Assert.That(states.RequiresGrad, Is.False);
        Assert.That(PeftSetup.ParameterTable(model), Does.Contain("L-Tuning").And.Contain("label states"));

        var before = model.NamedParameters().ToDictionary(p => p.Name, p => p.Param.ToFloatArray());
        TrainerFor(s, model, peft, 4).Train(s.Train, null);
        foreach (var (name, p) in model.NamedParameters())
        {
            bool same = p.ToFloatArray().SequenceEqual(before[name]);
            if (expected.ContainsKey(name)) Assert.That(same, Is.False, $"{name} trains");
            else Assert.That(same, $"{name} is frozen but changed");
        }
    }

    // ------------------------------------------------------------------ K-way evaluation

    /// <summary>The trainer's K-way labels, probabilities, accuracy and pair accuracy against a
    /// direct computation: each example alone, paired with each label in turn, its "true" logit,
    /// softmax and argmax; pairs drawn with the evaluation's seed.</summary>
    [TestCase("bert", "lt-prefix")]
    [TestCase("bert", "lt-prompt")]
    [TestCase("roberta", "lt-prefix")]
    [TestCase("llama", "lt-prefix")]
    [TestCase("llama", "lt-prompt")]
    public void TheKWayEvaluationEqualsADirectComputation(string family, string method)
    {
        var s = For(family);
        var peft = Options(method, null, s.Texts);
        // Weight matrices (backbone and method) of a larger scale than at initialisation, so the
        // pairs' logits differ clearly between labels: with the demo BERT's N(0, 0.02) weights the
        // labels' probabilities differ by ~1e-4, which would hide a mix-up of the logit columns.
        var rng = new Random(5);
        void Scramble(SequenceClassifier m, bool methodOnly)
        {
            foreach (var (name, p) in m.NamedParameters().Where(p => p.Param.Rank == 2 && (!methodOnly || p.Param.RequiresGrad)))
                Backend.Backends.Copy(Tensor.Randn(p.ShapeArray, rng, p.DType, methodOnly ? 1.0 : 0.3), p);
        }
        var model = SequenceClassifier.FromFolder(s.Folder, 3, numLabels: s.Labels.Count);
        Scramble(model, methodOnly: false);
        PeftSetup.Apply(model, peft, s.Folder.Path, s.Tokenizer, 3, s.Labels);
        Scramble(model, methodOnly: true);
        var trainer = TrainerFor(s, model, peft, 1, batch: 5);
        var metrics = trainer.Evaluate(s.Held);
        var predictions = trainer.Predict(s.Held);

        var pairing = model.Peft!.Method.Pairing!;
        int k = s.Labels.Count;
        model.Eval();
        var direct = new List<double[]>();
        var pairLogits = new List<double[]>();
        using (Tape.NoGrad())
            foreach (var e in s.Held)
            {
                var enc = s.Tokenizer.Encode(e.Text, null, 32);
                var ids = Tensor.FromArray(enc.Ids.ToArray(), 1, enc.Ids.Count);
                var all = new double[2 * k];
                for (int label = 0; label < k; label++)
                {
                    pairing.Pair([label]);
                    var logits = model.Forward(ids, Tensor.FromArray(Enumerable.Repeat(1, enc.Ids.Count).ToArray(), 1, enc.Ids.Count)).Logits.ToDoubleArray();
                    all[2 * label] = logits[0];
                    all[2 * label + 1] = logits[1];
                }
                pairLogits.Add(all);
                var scores = Enumerable.Range(0, k).Select(j => all[2 * j + 1]).ToArray();
                var exp = scores.Select(x => Math.Exp(x - scores.Max())).ToArray();
                direct.Add(exp.Select(x => x / exp.Sum()).ToArray());
            }
        Assert.That(direct.Count(p => p.Max() - p.Min() > 0.05), Is.GreaterThan(s.Held.Count / 2), "the labels' probabilities differ");
        for (int i = 0; i < s.Held.Count; i++)
        {
            var p = predictions[i].Probabilities;
            for (int j = 0; j < k; j++) Assert.That(p[j], Is.EqualTo(direct[i][j]).Within(1e-5), $"example {i}, label {j}");
            Assert.That(predictions[i].Label, Is.EqualTo(Array.IndexOf(direct[i], direct[i].Max())), $"example {i}");
        }
        double accuracy = s.Held.Select((e, i) => Array.IndexOf(direct[i], direct[i].Max()) == e.Label ? 1.0 : 0.0).Average();
        Assert.That(metrics["accuracy"], Is.EqualTo(accuracy).Within(1e-12));
        var pairs = pairing.TrainingPairs(s.Held.Select(e => e.Label).ToList(), new Random(Trainer.PairSeed(3, -1)));
        double pairAccuracy = pairs.Select((pr, i) => (pairLogits[i][2 * pr.Candidate + 1] > pairLogits[i][2 * pr.Candidate] ? 1 : 0) == pr.Target ? 1.0 : 0.0).Average();
        Assert.That(metrics[LabelPairing.PairAccuracyMetric], Is.EqualTo(pairAccuracy).Within(1e-12));
        Assert.That(predictions.All(p => p.Label >= 0 && p.Label < k));
    }

    [Test]
    public void TrainingPairsAreAboutHalfTrueSeededAndNeverMislabelled()
    {
        var pairing = new LabelPairing(4, _ => { });
        var labels = Enumerable.Range(0, 4000).Select(i => i % 4).ToList();
        var a = pairing.TrainingPairs(labels, new Random(Trainer.PairSeed(7, 2)));
        var b = pairing.TrainingPairs(labels, new Random(Trainer.PairSeed(7, 2)));
        var c = pairing.TrainingPairs(labels, new Random(Trainer.PairSeed(7, 3)));
        Assert.That(a, Is.EqualTo(b), "one (seed, epoch), one pairing");
        Assert.That(a, Is.Not.EqualTo(c), "another epoch, other pairs");
        double share = a.Count(p => p.Target == 1) / (double)a.Length;
        Assert.That(share, Is.InRange(0.45, 0.55));
        for (int i = 0; i < a.Length; i++)
            Assert.That(a[i].Target == 1 ? a[i].Candidate == labels[i] : a[i].Candidate != labels[i], $"pair {i}");
        var wrong = a.Where(p => p.Target == 0).GroupBy(p => p.Candidate).Select(g => g.Count()).ToList();
        Assert.That(wrong, Has.Count.EqualTo(4));
        Assert.That(wrong.Min(), Is.GreaterThan(wrong.Max() * 0.8), "wrong labels drawn uniformly");
    }

    // ------------------------------------------------------------------ saving, devices, resume

    [TestCase("bert", "lt-prefix")]
    [TestCase("llama", "lt-prompt")]
    public void ASavedModelReloadsWithItsLabelTextsAndPredictsTheSame(string family, string method)
    {
        var s = For(family);
        var peft = Options(method, "depthwise", s.Texts);
        var model = Model(s, peft);
        var outDir = Path.Combine(temp.Path, "run");
        var trainer = TrainerFor(s, model, peft, 3, outDir);
        trainer.Train(s.Train, s.Held);
        var expected = trainer.Predict(s.Held);

        var checkpoint = Path.Combine(outDir, Trainer.LastCheckpoint);
        var section = JsonNode.Parse(File.ReadAllText(Path.Combine(checkpoint, HfModelFolder.ConfigFileName)))![PeftState.ConfigKey]![method]!;
        Assert.That(section["label_texts"]!.AsObject().ToDictionary(p => p.Key, p => p.Value!.GetValue<string>()), Is.EqualTo(s.Texts));
        var reloaded = SequenceClassifier.FromFolder(HfModelFolder.Open(checkpoint));
        Assert.That(reloaded.Peft!.Options.Method, Is.EqualTo(method));
        var again = new Trainer(reloaded, HfModelFolder.Open(checkpoint), s.Tokenizer, new TrainOptions { BatchSize = 7, MaxLength = 32 }, s.Labels, false).Predict(s.Held);
        for (int i = 0; i < expected.Count; i++)
        {
            Assert.That(again[i].Label, Is.EqualTo(expected[i].Label));
            Assert.That(again[i].Probabilities, Is.EqualTo(expected[i].Probabilities).Within(1e-6));
        }
        var eval = JsonSerializer.Deserialize<Dictionary<string, double>>(File.ReadAllText(Path.Combine(outDir, Trainer.EvalFile)))!;
        Assert.That(eval.Keys, Does.Contain("accuracy").And.Contain(LabelPairing.PairAccuracyMetric));
    }

    /// <summary>A run on the mirror device (the CPU's kernels behind a device boundary) equals the
    /// CPU run bit for bit, and one killed after step 4 and resumed from its step-3 checkpoint
    /// continues exactly (the pairs are redrawn from (seed, epoch); 48 examples in batches of 8:
    /// epoch 1 starts at step 7, so steps 4–9 cross an epoch boundary).</summary>
    [TestCase("bert", "lt-prefix", null)]
    [TestCase("bert", "lt-prompt", "depthwise")]
    [TestCase("llama", "lt-prefix", null)]
    public void ARunOnTheDeviceFollowsTheCpuRunAndResumesExactly(string family, string method, string? pooling)
    {
        var device = MirrorBackend.Install();
        var s = For(family);
        var peft = Options(method, pooling, s.Texts);
        var cpuModel = Model(s, peft);
        var cpuRun = TrainerFor(s, cpuModel, peft, 9, Path.Combine(temp.Path, "cpu")).Train(s.Train, s.Held);

        var outDir = Path.Combine(temp.Path, "device");
        var deviceModel = Model(s, peft);
        Assert.Throws<OperationCanceledException>(() => TrainerFor(s, deviceModel, peft, 9, outDir, device).Train(s.Train, s.Held,
            e => { if (e.Step == 4 && e.Loss is not null) throw new OperationCanceledException("killed"); }));
        Assert.That(deviceModel.Device, Is.EqualTo(device));
        var checkpoint = Path.Combine(outDir, Trainer.LastCheckpoint);
        var resumedModel = SequenceClassifier.FromFolder(HfModelFolder.Open(checkpoint), 3);
        var resumed = TrainerFor(s, resumedModel, peft, 9, outDir, device).Train(s.Train, s.Held, resumeFrom: checkpoint);
        Assert.That(resumed.Losses, Is.EqualTo(cpuRun.Losses.Skip(3)), "losses of steps 4..9");
        Assert.That(resumed.FinalEval, Is.EqualTo(cpuRun.FinalEval));
        foreach (var ((name, p), (_, q)) in cpuModel.NamedParameters().Zip(resumedModel.NamedParameters()))
        {
            Assert.That(q.Device, Is.EqualTo(device), name);
            Assert.That(q.ToDoubleArray(), Is.EqualTo(p.ToDoubleArray()), name);
        }
    }

    // ------------------------------------------------------------------ bad input

    [Test]
    public void MissingOrUnknownLabelTextsAndRegressionAreOneLineErrors()
    {
        var s = For("bert");
        var missing = Assert.Throws<EngineException>(() => Model(s, Options("lt-prefix", null, new Dictionary<string, string> { ["negative"] = "bad" })));
        Assert.That(missing!.Message, Does.Contain("'positive'"));
        var unknown = Assert.Throws<EngineException>(() => Model(s, Options("lt-prompt", null, new Dictionary<string, string>(DemoTexts) { ["neutral"] = "fine" })));
        Assert.That(unknown!.Message, Does.Contain("'neutral'"));
        var regression = SequenceClassifier.FromFolder(s.Folder, 3, numLabels: 1);
        var e = Assert.Throws<EngineException>(() => PeftSetup.Apply(regression, Options("lt-prefix", null, null), s.Folder.Path, s.Tokenizer, 3, ["score"]));
        Assert.That(e!.Message, Does.Contain("regression"));
    }

    // ------------------------------------------------------------------ the CLI

    [Test]
    public void TrainEvalAndPredictFromTheCommandLine()
    {
        var model = DemoModel.CreateFolder(Path.Combine(temp.Path, "model"), seed: 1, hidden: 32).Path;
        string Name(int label) => DemoModel.LabelNames[label];
        File.WriteAllLines(temp.File("train.tsv"), new[] { "sentence\tlabel" }.Concat(NegationTask.Make(48, 1).Select(e => $"{e.Text}\t{Name(e.Label)}")));
        File.WriteAllLines(temp.File("dev.tsv"), new[] { "sentence\tlabel" }.Concat(NegationTask.Make(12, 2).Select(e => $"{e.Text}\t{Name(e.Label)}")));
        File.WriteAllText(temp.File("texts.json"), JsonSerializer.Serialize(DemoTexts));
        File.WriteAllText(temp.File("missing.json"), JsonSerializer.Serialize(new Dictionary<string, string> { ["negative"] = "bad" }));
        string[] Train(string texts, string run) =>
            ["train", "--model", model, "--train", temp.File("train.tsv"), "--eval", temp.File("dev.tsv"), "--method", "lt-prefix",
             "--label-texts", temp.File(texts), "--steps", "3", "--batch", "16", "--lr", "1e-2", "--out", temp.File(run)];

        var line = EngineProcess.AssertUserError(EngineProcess.Run(Train("missing.json", "bad")));
        Assert.That(line, Does.Contain("missing.json").And.Contain("'positive'"));
        Assert.That(Directory.Exists(temp.File("bad")), Is.False, "nothing written before the error");

        var r = EngineProcess.Run(Train("texts.json", "run"));
        Assert.That(r.Exit, Is.EqualTo(0), r.Err);
        Assert.That(r.Out, Does.Contain("method lt-prefix").And.Contain("L-Tuning"));
        var best = Path.Combine(temp.File("run"), Trainer.BestCheckpoint);
        r = EngineProcess.Run("eval", "--model", best, "--data", temp.File("dev.tsv"));
        Assert.That(r.Exit, Is.EqualTo(0), r.Err);
        Assert.That(r.Out, Does.Contain("accuracy").And.Contain(LabelPairing.PairAccuracyMetric));
        r = EngineProcess.Run("predict", "--model", best, "--data", temp.File("dev.tsv"), "--out", temp.File("pred.jsonl"));
        Assert.That(r.Exit, Is.EqualTo(0), r.Err);
        var lines = File.ReadAllLines(temp.File("pred.jsonl"));
        Assert.That(lines, Has.Length.EqualTo(12));
        using var first = JsonDocument.Parse(lines[0]);
        Assert.That(first.RootElement.GetProperty("label").GetString(), Is.AnyOf("negative", "positive"));
        Assert.That(first.RootElement.GetProperty("probabilities").EnumerateObject().Sum(p => p.Value.GetDouble()), Is.EqualTo(1.0).Within(1e-5));
    }
}
