using System.Text.Json;
using Engine.Autograd;
using Engine.Models;
using Engine.Models.Analysis;
using Engine.Models.Demo;
using Engine.Models.Peft;
using Engine.Models.Peft.Select;
using Engine.Models.Tokenization;
using Engine.Models.Training;
using NUnit.Framework;

namespace Engine.Tests.Peft;

/// <summary>`--method select` (variability-guided layer selection): which parameters train, that the
/// blocks above the head layer never run, that it learns on a tuned backbone, that a saved model
/// loads and predicts, and its one-line errors.</summary>
public class SelectMethodTests
{
    private TempFolder temp = null!;

    [SetUp] public void SetUp() => temp = new TempFolder();
    [TearDown] public void TearDown() => temp.Dispose();

    private static PeftOptions Select(int? headLayer, int tuneLayers, string? pooling = null, bool freezeEmbeddings = false) =>
        new() { Method = "select", Pooling = pooling, Settings = new SelectOptions { HeadLayer = headLayer, TuneLayers = tuneLayers, FreezeEmbeddings = freezeEmbeddings } };

    /// <summary>The demo BERT with 4 blocks of width 32 (intermediate 64; 39-word vocabulary, 64 positions).</summary>
    private HfModelFolder FourBlocks() => DemoModel.CreateFolder(temp.File("four"), 3, hidden: 32, layers: 4);

    // One block of the 4-block demo BERT, d = 32, I = 64: q, k, v, attention output 4·(d² + d);
    // intermediate d·I + I; output I·d + d; two layer norms 2·2d.
    private const int Block = 4 * (32 * 32 + 32) + (32 * 64 + 64) + (64 * 32 + 32) + 2 * 2 * 32; // 8,544
    private const int Pooler = 32 * 32 + 32, Head = 2 * 32 + 2;
    private const int Embeddings = 39 * 32 + 64 * 32 + 2 * 32 + 2 * 32; // words, positions, token types, LayerNorm

    [TestCase(3, 2, null)]
    [TestCase(2, 2, null)] // N = K: the embeddings train too
    [TestCase(4, 0, null)] // the head (and pooler) alone on the last block
    [TestCase(1, 1, "depthwise")]
    [TestCase(3, 1, "depthwise:with-embeddings")]
    [TestCase(1, 1, null, true)] // N = K with --freeze-embeddings: the block without the embeddings
    [TestCase(3, 1, null, true)] // N < K: the flag changes nothing
    public void ItTrainsExactlyTheBlocksEndingAtTheHeadLayerAndTheHead(int k, int n, string? pooling, bool freeze = false)
    {
        var folder = FourBlocks();
        var model = SequenceClassifier.FromFolder(folder, 3, numLabels: 2);
        PeftSetup.Apply(model, Select(k, n, pooling, freeze), folder.Path);
        var expected = new HashSet<string> { "bert.pooler.dense.weight", "bert.pooler.dense.bias", "classifier.weight", "classifier.bias" };
        foreach (var (name, _) in model.NamedParameters())
        {
            for (int i = k - n; i < k; i++)
                if (name.StartsWith($"bert.encoder.layer.{i}.", StringComparison.Ordinal)) expected.Add(name);
            if (n == k && !freeze && name.StartsWith("bert.embeddings.", StringComparison.Ordinal)) expected.Add(name);
        }
        if (pooling is not null) expected.Add(SequencePooling.ParameterName);
        var trained = model.NamedParameters().Where(p => p.Param.RequiresGrad).Select(p => p.Name).ToHashSet();
        Assert.That(trained, Is.EquivalentTo(expected));
        int poolingWeights = pooling is null ? 0 : k + (pooling.Contains("with-embeddings") ? 1 : 0);
        Assert.That(model.ParameterCount(trainableOnly: true), Is.EqualTo(n * Block + Pooler + Head + (n == k && !freeze ? Embeddings : 0) + poolingWeights));
        Assert.That(model.ParameterCount(), Is.EqualTo(4 * Block + Pooler + Head + Embeddings + poolingWeights), "the dropped blocks stay in the model");

        // A few steps: the trained parameters move, every other one keeps its loaded value.
        var tokenizer = TextTokenizer.FromFolder(folder);
        var before = model.NamedParameters().ToDictionary(p => p.Name, p => p.Param.ToFloatArray());
        new Trainer(model, folder, tokenizer, new TrainOptions
        {
            MaxSteps = 3, BatchSize = 16, LearningRate = 1e-2, MaxLength = 32, Seed = 3, WarmupRatio = 0, LogEvery = 100, Peft = Select(k, n, pooling, freeze),
        }, DemoModel.LabelNames, regression: false).Train(DemoModel.Data(48, 5, "train").Examples, null);
        foreach (var (name, p) in model.NamedParameters())
        {
            bool same = p.ToFloatArray().SequenceEqual(before[name]);
            if (!expected.Contains(name)) Assert.That(same, $"{name} is frozen but changed");
            else if (name.EndsWith(".weight", StringComparison.Ordinal) && !name.Contains("LayerNorm")) Assert.That(same, Is.False, $"{name} trains");
        }
    }

    [TestCase(null, null, new[] { 2, 3 })] // the defaults: the top two blocks of four
    [TestCase(1, null, new[] { 0 })]     // K = 1: N defaults to 1
    [TestCase(3, null, new[] { 1, 2 })]
    public void TheDefaultsTuneTheTwoBlocksEndingAtTheHeadLayer(int? k, int? n, int[] trainedBlocks)
    {
        var folder = FourBlocks();
        var model = SequenceClassifier.FromFolder(folder, 3, numLabels: 2);
        var settings = k is null ? null : new SelectOptions { HeadLayer = k, TuneLayers = n };
        PeftSetup.Apply(model, new PeftOptions { Method = "select", Settings = settings }, folder.Path);
        var blocks = model.NamedParameters().Where(p => p.Param.RequiresGrad).Select(p => SelectMethod.BlockOf(p.Name)).OfType<int>().Distinct().Order();
        Assert.That(blocks, Is.EqualTo(trainedBlocks));
        Assert.That(model.Hooks.BlockLimit, Is.EqualTo(k ?? 4));
    }

    private static float[] Logits(SequenceClassifier model, TextTokenizer tokenizer)
    {
        var encoded = Batches.Encode(DemoModel.Data(6, 8, "some").Examples, tokenizer, 32);
        var batch = Batches.Collate(encoded, Enumerable.Range(0, encoded.Count).ToArray(), tokenizer.PadId);
        model.Eval();
        using var noGrad = Tape.NoGrad();
        return model.Forward(batch.Ids, batch.Mask, batch.Types).Logits.ToFloatArray();
    }

    private static void Randomise(SequenceClassifier model, Func<string, bool> which)
    {
        var rng = new Random(1);
        foreach (var (_, p) in model.NamedParameters().Where(p => which(p.Name)))
            Backend.Backends.Copy(Tensor.Randn(p.ShapeArray, rng, p.DType, 0.5), p);
    }

    [Test]
    public void TheBlocksAboveTheHeadLayerNeverRun()
    {
        var folder = FourBlocks();
        var tokenizer = TextTokenizer.FromFolder(folder);
        var model = SequenceClassifier.FromFolder(folder, 3, numLabels: 2);
        var full = Logits(model, tokenizer);
        PeftSetup.Apply(model, Select(2, 1), folder.Path);
        var selected = Logits(model, tokenizer);
        Assert.That(selected, Is.Not.EqualTo(full), "the head reads block 2, not block 4");
        Randomise(model, n => n.StartsWith("bert.encoder.layer.2.", StringComparison.Ordinal) || n.StartsWith("bert.encoder.layer.3.", StringComparison.Ordinal));
        Assert.That(Logits(model, tokenizer), Is.EqualTo(selected), "blocks 3 and 4 do not run");
        Randomise(model, n => n.StartsWith("bert.encoder.layer.1.", StringComparison.Ordinal));
        Assert.That(Logits(model, tokenizer), Is.Not.EqualTo(selected), "block 2 does");
    }

    [Test]
    public void OnARobertaModelTheTwoLayerHeadTrainsWithTheTunedBlock()
    {
        var folder = HfModelFolder.Open(Path.Combine(TestContext.CurrentContext.TestDirectory, "Fixtures", "bert_tiny", "roberta"));
        var model = SequenceClassifier.FromFolder(folder, 3, numLabels: 2);
        PeftSetup.Apply(model, Select(1, 1), folder.Path);
        var trained = model.NamedParameters().Where(p => p.Param.RequiresGrad).Select(p => p.Name).ToList();
        Assert.That(trained.Where(n => !n.StartsWith("roberta.encoder.layer.0.", StringComparison.Ordinal) && !n.StartsWith("roberta.embeddings.", StringComparison.Ordinal)),
            Is.EquivalentTo(new[] { "classifier.dense.weight", "classifier.dense.bias", "classifier.out_proj.weight", "classifier.out_proj.bias" }));
        Assert.That(trained, Has.None.StartsWith("roberta.encoder.layer.1."));
        Assert.That(trained.Count(n => n.StartsWith("roberta.embeddings.", StringComparison.Ordinal)), Is.EqualTo(5), "N = K: words, positions, token types, LayerNorm weight and bias");
    }

    [Test]
    public void OnALlamaModelTheFinalNormAndTheScoreHeadTrainWithTheTunedBlock()
    {
        var folder = HfModelFolder.Open(Llama.LlamaReferenceTests.Folder("llama"));
        var model = SequenceClassifier.FromFolder(folder, 3);
        var ids = Tensor.FromArray(new[] { 1, 9, 14, 33, 50, 1, 9, 14, 0, 0 }, 2, 5);
        var mask = Tensor.FromArray(new[] { 1, 1, 1, 1, 1, 1, 1, 1, 0, 0 }, 2, 5);
        float[] Run()
        {
            model.Eval();
            using var noGrad = Tape.NoGrad();
            return model.Forward(ids, mask).Logits.ToFloatArray();
        }
        PeftSetup.Apply(model, Select(1, 1), folder.Path);
        var trained = model.NamedParameters().Where(p => p.Param.RequiresGrad).Select(p => p.Name).ToList();
        Assert.That(trained.Where(n => !n.StartsWith("model.layers.0.", StringComparison.Ordinal)),
            Is.EquivalentTo(new[] { "model.embed_tokens.weight", "model.norm.weight", "score.weight" }), "N = K = 1: the embeddings train too");
        Assert.That(trained.Count(n => n.StartsWith("model.layers.0.", StringComparison.Ordinal)), Is.EqualTo(9), "7 projections and 2 norms");
        var logits = Run();
        Randomise(model, n => n.StartsWith("model.layers.1.", StringComparison.Ordinal));
        Assert.That(Run(), Is.EqualTo(logits), "block 2 does not run");
    }

    // ------------------------------------------------------------------ learning

    private PeftTests.TunedBackbone? tuned;
    [OneTimeTearDown] public void DisposeTunedBackbone() => tuned?.Dispose();
    private PeftTests.TunedBackbone Tuned() => tuned ??= PeftTests.TuneBackbone();

    private static readonly List<Models.Data.Example> DownstreamTrain = PeftTests.Flipped(320, 5), DownstreamHeldOut = PeftTests.Flipped(400, 6);

    // Measured (train loss in evaluation mode before → after, held-out accuracy on 400 sentences):
    //   K 2, N 1             lr 1e-2,  60 steps: 0.892 → 0.036, 99.8%
    //   K 2, N 0, depthwise  lr 1e-2,  60 steps: 0.847 → 0.017, 99.8%
    //   K 1, N 1             lr 3e-3, 200 steps: 0.722 → 0.013, 100%
    // Block 2 dropped, block 1 and the embeddings must take over its work: slower (lr 1e-2: 60 steps
    // 0.396, 78.7%; 200 steps 0.418, 85.5%; lr 3e-3, 400 steps: 0.007, 100%). ν agrees: on this
    // backbone block 1's is 0.76, block 2's 0.008 (OnTheTunedBackbone… below).
    [TestCase(2, 1, null, 1e-2, 60)]
    [TestCase(2, 0, "depthwise", 1e-2, 60)]
    [TestCase(1, 1, null, 3e-3, 200)]
    public void ItLearnsARelatedTaskOnATunedBackbone(int k, int n, string? pooling, double lr, int steps)
    {
        var backbone = Tuned();
        var model = SequenceClassifier.FromFolder(backbone.Folder, 3, numLabels: 2);
        Assert.That(model.HeadInitialisedRandomly);
        var peft = Select(k, n, pooling);
        PeftSetup.Apply(model, peft, backbone.Folder.Path, backbone.Tokenizer, 3);
        double before = PeftTests.Loss(model, DownstreamTrain, backbone.Tokenizer);
        var trainer = new Trainer(model, backbone.Folder, backbone.Tokenizer, new TrainOptions
        {
            MaxSteps = steps, BatchSize = 16, LearningRate = lr, MaxLength = 32, Seed = 3, WarmupRatio = 0, LogEvery = 1000, Peft = peft,
        }, DemoModel.LabelNames, regression: false);
        trainer.Train(DownstreamTrain, null);
        double after = PeftTests.Loss(model, DownstreamTrain, backbone.Tokenizer);
        double accuracy = trainer.Evaluate(DownstreamHeldOut)["accuracy"];
        TestContext.Out.WriteLine($"select K={k} N={n} {pooling}: loss {before:F3} → {after:F3}, held-out accuracy {accuracy:P1}");
        Assert.That(before, Is.GreaterThan(0.45), "a fresh head starts near chance");
        Assert.That(after, Is.LessThan(0.2), $"training loss {before:F3} → {after:F3}");
        Assert.That(accuracy, Is.GreaterThanOrEqualTo(0.95), $"held-out accuracy {accuracy:P1} (loss {before:F3} → {after:F3})");
    }

    [Test]
    public void OnTheTunedBackboneTheBlocksSeparateTheTaskBetterThanTheEmbeddings()
    {
        // The demo task needs word order, so the bag of embeddings cannot separate it; the tuned
        // blocks do: ν falls from the embeddings to the last block.
        var backbone = Tuned();
        var model = SequenceClassifier.FromFolder(backbone.Folder, 3, numLabels: 2);
        var nu = Variability.Analyze(model, backbone.Tokenizer, DemoModel.Data(400, 12, "held out"), new VariabilityOptions()).Nu;
        TestContext.Out.WriteLine($"ν on the tuned backbone: {string.Join(", ", nu.Select(v => v.ToString("G4")))}");
        Assert.That(nu[2], Is.LessThan(nu[0] / 2));
    }

    // ------------------------------------------------------------------ the automatic rule

    private string NuFile(params double[] nu)
    {
        var path = temp.File($"nu-{Guid.NewGuid():N}.json");
        File.WriteAllText(path, JsonSerializer.Serialize(new { nu }));
        return path;
    }

    [TestCase(0.05, 2)]
    [TestCase(0.01, 3)]
    public void AutoTakesTheFirstBlockWithinTheToleranceOfTheLowestNu(double tolerance, int expected)
    {
        var folder = FourBlocks();
        var model = SequenceClassifier.FromFolder(folder, 3, numLabels: 2);
        var file = NuFile(40, 3, 1.03, 1.0, 1.2);
        PeftSetup.Apply(model, new PeftOptions
        {
            Method = "select", Settings = new SelectOptions { Auto = true, VariabilityFile = file, Tolerance = tolerance, TuneLayers = 1 },
        }, folder.Path);
        Assert.That(model.Hooks.BlockLimit, Is.EqualTo(expected));
        var trainedBlocks = model.NamedParameters().Where(p => p.Param.RequiresGrad).Select(p => SelectMethod.BlockOf(p.Name)).OfType<int>().Distinct();
        Assert.That(trainedBlocks, Is.EqualTo(new[] { expected - 1 }), "block K (0-based K − 1) alone");
        var section = model.Peft!.Method.ConfigSection()!;
        Assert.That(section["head_layer"]!.GetValue<int>(), Is.EqualTo(expected));
        Assert.That(section["chosen_by"]!["tolerance"]!.GetValue<double>(), Is.EqualTo(tolerance));
    }

    [Test]
    public void OnTheTunedBackboneAutoChoosesTheBlockWhereNuStopsFalling()
    {
        var backbone = Tuned();
        var model = SequenceClassifier.FromFolder(backbone.Folder, 3, numLabels: 2);
        var train = new Models.Data.Dataset("downstream", DownstreamTrain, new Models.Data.LabelMap(DemoModel.LabelNames), false, 0);
        var nu = Variability.Analyze(model, backbone.Tokenizer, train, new VariabilityOptions()).Nu;
        PeftSetup.Apply(model, new PeftOptions { Method = "select", Settings = new SelectOptions { Auto = true, VariabilityFile = NuFile(nu), TuneLayers = 1 } },
            backbone.Folder.Path);
        Assert.That(model.Hooks.BlockLimit, Is.EqualTo(Variability.AutoHeadLayer(nu)));
        Assert.That(model.Hooks.BlockLimit, Is.EqualTo(2), $"ν {string.Join(", ", nu)}: block 2 separates the task far better");
    }

    // ------------------------------------------------------------------ saving, loading, the CLI

    [Test]
    public void AFullCheckpointWithDepthwisePoolingOverAllBlocksCannotTakeALowerHeadLayer()
    {
        var folder = FourBlocks();
        var model = SequenceClassifier.FromFolder(folder, 3, numLabels: 2);
        PeftSetup.Apply(model, new PeftOptions { Pooling = "depthwise" }, folder.Path);
        var dir = temp.File("full");
        AtomicFolder.Write(dir, tmp => model.SaveInto(tmp, folder, DemoModel.LabelNames));
        var reloaded = SequenceClassifier.FromFolder(HfModelFolder.Open(dir));
        var e = Assert.Throws<EngineException>(() => PeftSetup.Apply(reloaded, Select(2, 1), dir))!;
        Assert.That(e.Message, Does.Contain("depth-wise pooling mixes 4 layers"));
        PeftSetup.Apply(SequenceClassifier.FromFolder(HfModelFolder.Open(dir)), Select(4, 1), dir); // the same blocks: fine
    }

    [Test]
    public void ASavedModelReloadsWithItsHeadLayerAndTheSameLogits()
    {
        var folder = FourBlocks();
        var tokenizer = TextTokenizer.FromFolder(folder);
        var model = SequenceClassifier.FromFolder(folder, 3, numLabels: 2);
        PeftSetup.Apply(model, Select(3, 1), folder.Path);
        var outDir = temp.File("run");
        new Trainer(model, folder, tokenizer, new TrainOptions
        {
            MaxSteps = 3, BatchSize = 16, LearningRate = 1e-2, MaxLength = 32, Seed = 3, WarmupRatio = 0, LogEvery = 100, OutDir = outDir, Peft = Select(3, 1),
        }, DemoModel.LabelNames, regression: false).Train(DemoModel.Data(48, 5, "train").Examples, null);
        var checkpoint = HfModelFolder.Open(Path.Combine(outDir, Trainer.LastCheckpoint));
        var reloaded = SequenceClassifier.FromFolder(checkpoint);
        Assert.That(reloaded.HeadInitialisedRandomly, Is.False);
        Assert.That(reloaded.Hooks.BlockLimit, Is.EqualTo(3));
        Assert.That(Logits(reloaded, tokenizer), Is.EqualTo(Logits(model, tokenizer)));
    }

    [Test]
    public void TheCommandsTrainEvaluateAndPredict()
    {
        var model = DemoModel.CreateFolder(temp.File("model"), 1, hidden: 32).Path;
        File.WriteAllLines(temp.File("train.tsv"), new[] { "sentence\tlabel" }.Concat(NegationTask.Make(64, 1).Select(e => $"{e.Text}\t{e.Label}")));
        var run = temp.File("run");
        var r = EngineProcess.Run("train", "--model", model, "--train", temp.File("train.tsv"), "--task", "sst2", "--method", "select",
            "--head-layer", "1", "--tune-layers", "0", "--steps", "3", "--batch", "16", "--lr", "1e-3", "--out", run);
        Assert.That(r.Exit, Is.EqualTo(0), r.Err);
        Assert.That(r.Out, Does.Contain("block 1 frozen").And.Contain("block 2 dropped"));
        var saved = Path.Combine(run, Trainer.LastCheckpoint);
        r = EngineProcess.Run("eval", "--model", saved, "--data", temp.File("train.tsv"), "--task", "sst2");
        Assert.That(r.Exit, Is.EqualTo(0), r.Err);
        Assert.That(r.Out, Does.Contain("accuracy"));
        r = EngineProcess.Run("predict", "--model", saved, "--data", temp.File("train.tsv"), "--task", "sst2", "--out", temp.File("p.jsonl"));
        Assert.That(r.Exit, Is.EqualTo(0), r.Err);
        Assert.That(File.ReadAllLines(temp.File("p.jsonl")), Has.Length.EqualTo(64));
    }

    [Test]
    public void FreezeEmbeddingsIsKeptInTheSavedModel()
    {
        var model = DemoModel.CreateFolder(temp.File("model"), 1, hidden: 32).Path;
        File.WriteAllLines(temp.File("train.tsv"), new[] { "sentence\tlabel" }.Concat(NegationTask.Make(32, 1).Select(e => $"{e.Text}\t{e.Label}")));
        var run = temp.File("run");
        var r = EngineProcess.Run("train", "--model", model, "--train", temp.File("train.tsv"), "--task", "sst2", "--method", "select",
            "--head-layer", "1", "--tune-layers", "1", "--freeze-embeddings", "--steps", "2", "--batch", "16", "--lr", "1e-3", "--out", run);
        Assert.That(r.Exit, Is.EqualTo(0), r.Err);
        var saved = HfModelFolder.Open(Path.Combine(run, Trainer.LastCheckpoint));
        Assert.That(File.ReadAllText(Path.Combine(saved.Path, "config.json")), Does.Contain("\"freeze_embeddings\": true"));
        // The reloaded model (its method restored from config.json) keeps the choice: the embeddings stay frozen.
        var reloaded = SequenceClassifier.FromFolder(saved);
        Assert.That(reloaded.NamedParameters().Where(p => p.Param.RequiresGrad).Select(p => p.Name), Has.None.Contains("embeddings."));
        Assert.That(reloaded.NamedParameters().Where(p => p.Param.RequiresGrad).Select(p => p.Name), Has.Some.StartsWith("bert.encoder.layer.0."));
    }

    [Test]
    public void BadOptionsAreOneLineBeforeTraining()
    {
        var model = DemoModel.CreateFolder(temp.File("model"), 1, hidden: 32).Path;
        File.WriteAllLines(temp.File("train.tsv"), new[] { "sentence\tlabel" }.Concat(NegationTask.Make(16, 1).Select(e => $"{e.Text}\t{e.Label}")));
        var run = temp.File("run");
        string Fails(params string[] options)
        {
            var line = EngineProcess.AssertUserError(EngineProcess.Run(["train", "--model", model, "--train", temp.File("train.tsv"), "--method", "select", "--steps", "2", "--out", run, .. options]));
            Assert.That(Directory.Exists(run), Is.False, "nothing written");
            return line;
        }
        Assert.That(Fails("--head-layer", "3"), Does.Contain("--head-layer 3 is beyond the model's 2 blocks"));
        Assert.That(Fails("--head-layer", "0"), Does.Contain("--head-layer must be at least 1"));
        Assert.That(Fails("--head-layer", "two"), Does.Contain("--head-layer 'two'"));
        Assert.That(Fails("--head-layer", "1", "--tune-layers", "2"), Does.Contain("--tune-layers 2"));
        Assert.That(Fails("--head-layer", "auto"), Does.Contain("needs --variability"));
        Assert.That(Fails("--head-layer", "auto", "--variability", NuFile(3, 2, 1, 0.5)), Does.Contain("4 ν values, but the model has 2 blocks"));
        Assert.That(Fails("--head-layer", "auto", "--variability", temp.File("none.json")), Does.Contain("none.json"));
        Assert.That(Fails("--head-layer", "1", "--variability", NuFile(3, 2, 1)), Does.Contain("only with --head-layer auto"));
    }
}
