using Engine.Autograd;
using Engine.IO;
using Engine.Models;
using Engine.Models.Demo;
using Engine.Models.Peft;
using Engine.Models.Peft.Lora;
using Engine.Models.Peft.Prefix;
using Engine.Models.Peft.Prompt;
using Engine.Models.Tokenization;
using Engine.Models.Training;
using NUnit.Framework;

namespace Engine.Tests.Peft;

/// <summary>The parameter-efficient methods and depth-wise pooling on the demo's small BERT
/// (width 32, 2 layers) and its synthetic task.</summary>
public partial class PeftTests
{
    private TempFolder temp = null!;
    private HfModelFolder folder = null!;
    private TextTokenizer tokenizer = null!;

    [SetUp]
    public void SetUp()
    {
        temp = new TempFolder();
        folder = DemoModel.CreateFolder(Path.Combine(temp.Path, "init"), 3, hidden: 32);
        tokenizer = TextTokenizer.FromFolder(folder);
    }

    [TearDown] public void TearDown() => temp.Dispose();


    private static readonly Models.Data.Dataset Train = DemoModel.Data(160, 5, "train");

    /// <summary>Methods with small lengths (the demo model has 64 positions).</summary>
    private static PeftOptions Options(string method, string? pooling = null) => new()
    {
        Method = method, Pooling = pooling,
        Settings = method switch
        {
            "prefix" => new PrefixOptions { Length = 4 }, "prompt" => new PromptOptions { Length = 4 },
            "lora" or "dora" => new LoraOptions { Rank = 4, Alpha = 8, Dropout = 0.1 }, _ => null,
        },
    };

    private SequenceClassifier Model(PeftOptions? peft = null, int seed = 3, HfModelFolder? from = null)
    {
        var model = SequenceClassifier.FromFolder(from ?? folder, seed, numLabels: 2);
        if (peft is not null) PeftSetup.Apply(model, peft, folder.Path, tokenizer, seed);
        return model;
    }

    private Trainer TrainerFor(SequenceClassifier model, PeftOptions peft, int steps, double lr, string? outDir = null) =>
        new(model, folder, tokenizer, new TrainOptions
        {
            MaxSteps = steps, BatchSize = 16, LearningRate = lr, MaxLength = 32, Seed = 3, OutDir = outDir, LogEvery = 1,
            WarmupRatio = 0, Peft = peft,
        }, DemoModel.LabelNames, regression: false);

    private TensorBatch Batch(params string[] texts)
    {
        var encoded = Batches.Encode(texts.Select(t => new Models.Data.Example(t, null, 0)), tokenizer, 32);
        return Batches.Collate(encoded, Enumerable.Range(0, texts.Length).ToArray(), tokenizer.PadId);
    }

    private static float[] Logits(SequenceClassifier model, TensorBatch batch)
    {
        model.Eval();
        using var noGrad = Tape.NoGrad();
        return model.Forward(batch.Ids, batch.Mask, batch.Types).Logits.ToFloatArray();
    }

    /// <summary>Mean loss over <paramref name="examples"/> in evaluation mode.</summary>
    internal static double Loss(SequenceClassifier model, IReadOnlyList<Models.Data.Example> examples, TextTokenizer tokenizer)
    {
        bool training = model.Training;
        model.Eval();
        var data = Batches.Encode(examples, tokenizer, 32);
        double sum = 0;
        int count = 0;
        using (Tape.NoGrad())
            foreach (var idx in Batches.Order(data, 32, null, false))
            {
                using var scope = Scope.Begin();
                var b = Batches.Collate(data, idx, tokenizer.PadId);
                sum += model.Loss(model.Forward(b.Ids, b.Mask, b.Types).Logits, b.Labels).Item() * idx.Length;
                count += idx.Length;
            }
        if (training) model.Train();
        return sum / count;
    }

    private static readonly string[] Sentences = ["the food was not good but the staff was great .", "the movie is bad .", "the plot was really dull but the music is fine ."];

    // ------------------------------------------------------------------ what trains

    [TestCase("head", null)]
    [TestCase("lora", null)]
    [TestCase("bitfit", null)]
    [TestCase("prefix", null)]
    [TestCase("prompt", null)]
    [TestCase("head", "depthwise")]
    [TestCase("lora", "depthwise:mean")]
    [TestCase("full", "depthwise:raw:with-embeddings")]
    [TestCase("dora", null)]
    [TestCase("dora", "depthwise")]
    [TestCase("ia3", null)]
    [TestCase("ia3", "depthwise")]
    public void EachMethodTrainsOnlyItsParameters(string method, string? pooling)
    {
        var peft = Options(method, pooling);
        var model = Model(peft);
        var before = model.NamedParameters().ToDictionary(p => p.Name, p => p.Param.ToFloatArray());
        TrainerFor(model, peft, 4, 1e-2).Train(Train.Examples, null);
        var changed = new List<string>();
        foreach (var (name, p) in model.NamedParameters())
        {
            bool same = p.ToFloatArray().SequenceEqual(before[name]);
            if (!model.Peft!.Trains(name)) Assert.That(same, $"{name} is frozen under {method} but changed");
            else if (!same) changed.Add(name);
            Assert.That(p.RequiresGrad, Is.EqualTo(model.Peft.Trains(name)), name);
        }
        Assert.That(changed, Has.Some.StartsWith("classifier."), "the head trains");
        if (pooling is not null) Assert.That(changed, Has.Member(SequencePooling.ParameterName));
        string? own = method switch
        {
            "lora" => ".lora_B.weight", "dora" => ".lora_magnitude_vector", "ia3" => ".ia3_l", "bitfit" => "attention.self.query.bias", "prefix" => "prefix_encoder.", "prompt" => "prompt_encoder.", _ => null,
        };
        if (own is not null) Assert.That(changed, Has.Some.Contains(own), $"the {method} parameters train");
        if (method != "full") Assert.That(model.ParameterCount(trainableOnly: true), Is.LessThan(model.ParameterCount() / 5));
    }

    // ------------------------------------------------------------------ each method learns

    /// <summary>
    /// A backbone with useful features, made once per fixture (on first use): the demo BERT
    /// (width 32, 2 layers, seed 3) fully fine-tuned on the demo task (the polarity of the last
    /// clause) until it solves it, saved as a Hugging Face folder WITHOUT its classifier (like a
    /// pretrained checkpoint such as bert-base-uncased), so every model loaded from it gets a
    /// freshly initialised head. Each training sentence is preceded by 0–4 filler words
    /// ("honestly"), so the backbone reads a sentence at any offset, as a pretrained one does:
    /// prompt tuning shifts the text right by its length, and a backbone that had only seen text
    /// from position 1 fell to 55% accuracy with the text 4 positions later (measured).
    /// </summary>
    internal sealed class TunedBackbone(TempFolder temp, HfModelFolder folder, TextTokenizer tokenizer) : IDisposable
    {
        public HfModelFolder Folder { get; } = folder;
        public TextTokenizer Tokenizer { get; } = tokenizer;
        public void Dispose() => temp.Dispose();
    }

    private TunedBackbone? tuned;

    [OneTimeTearDown] public void DisposeTunedBackbone() => tuned?.Dispose();

    private static string Lead(int fillers) => string.Concat(Enumerable.Repeat("honestly ", fillers));

    private TunedBackbone Tuned() => tuned ??= TuneBackbone();

    internal static TunedBackbone TuneBackbone()
    {
        var temp = new TempFolder();
        var init = DemoModel.CreateFolder(Path.Combine(temp.Path, "init"), 3, hidden: 32);
        var tok = TextTokenizer.FromFolder(init);
        var model = SequenceClassifier.FromFolder(init, 3, numLabels: 2);
        var leads = new Random(11);
        var train = NegationTask.Make(3000, 11).Select(e => e with { Text = Lead(leads.Next(5)) + e.Text }).ToList();
        var held = DemoModel.Data(400, 12, "held out").Examples;
        var shifted = held.Select(e => e with { Text = Lead(4) + e.Text }).ToList();
        // Rounds of 100 steps (batch 32, lr 2e-3) until it solves the task: the escape from the
        // chance plateau comes at a seed-dependent step (measured for this seed: 50.5, 59.3, 97.5,
        // 96.5, 100% after 100…500 steps; demo seeds 1, 2, 4 needed 700, 400, 600), so a fixed
        // count would be too short on some machines or too long on others.
        double accuracy = 0, shiftedAccuracy = 0;
        int steps = 0;
        while (steps < 1200 && (accuracy < 0.98 || shiftedAccuracy < 0.98))
        {
            var trainer = new Trainer(model, init, tok, new TrainOptions
            {
                MaxSteps = 100, BatchSize = 32, LearningRate = 2e-3, Schedule = "constant", WarmupRatio = 0.1, MaxLength = 32, Seed = 3 + steps, LogEvery = 1000,
            }, DemoModel.LabelNames, regression: false);
            trainer.Train(train, null);
            steps += 100;
            accuracy = trainer.Evaluate(held)["accuracy"];
            shiftedAccuracy = trainer.Evaluate(shifted)["accuracy"];
        }
        Assert.That(Math.Min(accuracy, shiftedAccuracy), Is.GreaterThanOrEqualTo(0.98),
            $"the backbone did not solve the demo task in {steps} steps: {accuracy:P1}, {shiftedAccuracy:P1} with the text 4 positions later");
        var dir = Path.Combine(temp.Path, "tuned");
        AtomicFolder.Write(dir, tmp =>
        {
            model.SaveInto(tmp, init);
            SafeTensors.Save(Path.Combine(tmp, SafeTensors.SingleFileName), model.NamedParameters()
                .Where(p => !p.Name.StartsWith("classifier.", StringComparison.Ordinal))
                .Select(p => new KeyValuePair<string, Tensor>(model.CheckpointName(p.Name), p.Param)));
        });
        return new TunedBackbone(temp, HfModelFolder.Open(dir), tok);
    }

    /// <summary>The downstream task: the demo sentences labelled by whether the last clause is
    /// NEGATIVE (the demo's labels flipped). The backbone's features support it; the head starts
    /// from random (the saved backbone has none), so it cannot start solved. Held-out data come
    /// from another seed.</summary>
    internal static List<Models.Data.Example> Flipped(int count, int seed) =>
        DemoModel.Data(count, seed, "negative last clause").Examples.Select(e => e with { Label = 1 - e.Label }).ToList();

    internal static readonly List<Models.Data.Example> DownstreamTrain = Flipped(320, 5), DownstreamHeldOut = Flipped(400, 6);

    [Test]
    public void AFreshHeadOnTheTunedBackboneStartsAtChance()
    {
        // A fresh head (std 0.02) on the tuned backbone's saturated pooled features (tanh, ±1)
        // gives all sentences of a class nearly the same logits, so its accuracy is 0% or 100% by
        // the draw (measured over head seeds 1–8: 100, 100, 0, 0, 0, 0, 0, 100%): accuracy says
        // nothing before training. The loss does: with zero biases, |logit difference| ≤ Σ|w₀ − w₁|,
        // about 0.7 (32 differences of std 0.028), so a fresh head's loss is ln 2 on average and stays
        // above ≈ 0.4. Measured: 0.566, 0.635, 0.893, 0.722, 0.750, 0.717, 0.742, 0.567 (mean 0.699).
        var losses = new List<double>();
        for (int seed = 1; seed <= 8; seed++)
        {
            var model = SequenceClassifier.FromFolder(Tuned().Folder, seed, numLabels: 2);
            Assert.That(model.HeadInitialisedRandomly, "the saved backbone has no classifier");
            losses.Add(Loss(model, DownstreamTrain, Tuned().Tokenizer));
        }
        Assert.That(losses, Has.All.GreaterThan(0.45));
        Assert.That(losses.Average(), Is.EqualTo(Math.Log(2)).Within(0.1));
    }

    // Measured (train loss in evaluation mode before → after; held-out accuracy on 400 sentences;
    // the backbone took 500 steps):
    //   full                  lr 2e-3,  60 steps: 0.893 → 0.050, 100%
    //   head                  lr 1e-2,  60 steps: 0.893 → 0.001, 100%
    //   lora                  lr 1e-2,  60 steps: 0.893 → 0.000, 100%
    //   bitfit                lr 1e-2,  60 steps: 0.893 → 0.000, 100%
    //   prefix                lr 3e-2, 480 steps: 0.775 → 0.005, 99.8%. At lr 1e-1 the case is chaotic:
    //                         120 steps gave 0.007 on one host and 0.355 on another (another summation
    //                         order), 240 steps 0.228 / 86.3% for seed 3 after the GEMM's order changed
    //                         again. Measured at lr 3e-2, 480 steps, seeds 1–5: 0.027, 0.021, 0.005,
    //                         0.025, 0.024, all ≥ 99.3% held out (lr 1e-1, 480: ≤ 0.016; a prefix
    //                         projection of 32 at lr 3e-2 left seeds 3 and 4 at chance)
    //   prompt                lr 1e-2,  60 steps: 0.891 → 0.004, 99.8%
    //   head + depthwise      lr 1e-2,  60 steps: 0.845 → 0.001, 100%
    //   lora + depthwise:mean lr 1e-2,  60 steps: 0.839 → 0.001, 100%
    // With method seeds 1, 2, 4, 5 every case ended ≤ 0.048 and ≥ 99.8%; with backbones from demo
    // seeds 1, 2, 4, ≤ 0.091 and ≥ 99.0%. Prefix tuning needs more steps: its N(0, 1) key/value
    // prefixes first scramble a 32-wide model's attention (60 steps at lr 1e-1: 0.257, 74.8%;
    // 120 steps at lr 1e-2: 0.325, 86.8%; at 3e-2: 0.240, 87.5%; near 75% the one-clause half is
    // right and the rest at chance: word order lost). Thresholds: loss below 0.2 (a fresh head
    // stays above ≈ 0.4, see above) and 95% held out.
    [TestCase("full", null, 2e-3, 60)]
    [TestCase("head", null, 1e-2, 60)]
    [TestCase("lora", null, 1e-2, 60)]
    [TestCase("bitfit", null, 1e-2, 60)]
    [TestCase("prefix", null, 3e-2, 480)]
    [TestCase("prompt", null, 1e-2, 60)]
    [TestCase("head", "depthwise", 1e-2, 60)]
    [TestCase("lora", "depthwise:mean", 1e-2, 60)]
    [TestCase("dora", null, 1e-2, 60)]
    [TestCase("dora", "depthwise", 1e-2, 60)]
    [TestCase("ia3", null, 1e-2, 60)]
    [TestCase("ia3", "depthwise", 1e-2, 60)]
    public void EachMethodLearnsANewHeadOnATunedBackbone(string method, string? pooling, double lr, int steps)
    {
        var (model, before, after, accuracy) = LearnDownstream(Tuned(), Options(method, pooling), lr, steps);
        Assert.That(model.Pooling?.Spec.ToString(), Is.EqualTo(pooling is null ? null : PoolingSpec.Parse(pooling, "cls").ToString()));
        TestContext.Out.WriteLine($"{method} {pooling ?? "(usual pooling)"}, lr {lr}, {steps} steps: loss {before:F3} → {after:F3}, held out {accuracy:P1}");
        Assert.That(before, Is.GreaterThan(0.45), "a fresh head (and fresh method parameters) start near chance");
        Assert.That(after, Is.LessThan(0.2), $"{method}: training loss {before:F3} → {after:F3}");
        Assert.That(accuracy, Is.GreaterThanOrEqualTo(0.95), $"{method}: held-out accuracy {accuracy:P1} (loss {before:F3} → {after:F3})");
    }

    /// <summary>A model from <paramref name="backbone"/> (a fresh head) with <paramref name="peft"/> applied,
    /// trained on the downstream task (batch 16, seed 3, no warmup): the model, its training loss
    /// before and after (evaluation mode), and its held-out accuracy.</summary>
    internal static (SequenceClassifier Model, double Before, double After, double Accuracy) LearnDownstream(TunedBackbone backbone, PeftOptions peft, double lr, int steps, int seed = 3)
    {
        var model = SequenceClassifier.FromFolder(backbone.Folder, seed, numLabels: 2);
        Assert.That(model.HeadInitialisedRandomly);
        PeftSetup.Apply(model, peft, backbone.Folder.Path, backbone.Tokenizer, seed);
        double before = Loss(model, DownstreamTrain, backbone.Tokenizer);
        var trainer = new Trainer(model, backbone.Folder, backbone.Tokenizer, new TrainOptions
        {
            MaxSteps = steps, BatchSize = 16, LearningRate = lr, MaxLength = 32, Seed = seed, WarmupRatio = 0, LogEvery = 1000, Peft = peft,
        }, DemoModel.LabelNames, regression: false);
        trainer.Train(DownstreamTrain, null);
        return (model, before, Loss(model, DownstreamTrain, backbone.Tokenizer), trainer.Evaluate(DownstreamHeldOut)["accuracy"]);
    }

    [Test]
    public void TheParameterTableCountsEveryGroup()
    {
        var model = Model(Options("lora", "depthwise"));
        var table = PeftSetup.ParameterTable(model);
        foreach (var group in new[] { "embeddings", "attention", "MLP", "layer norms", "pooler", "head", "depth-wise pooling", "LoRA adapters", "all" })
            Assert.That(table, Does.Contain(group));
        // LoRA on query and value of 2 layers: 4 adapters of r·(32 + 32) = 256 parameters.
        Assert.That(model.NamedParameters().Where(p => p.Name.Contains("lora_")).Sum(p => p.Param.Numel), Is.EqualTo(4 * 4 * 64));
    }

    // ------------------------------------------------------------------ LoRA

    [Test]
    public void LoraStartsAsTheBaseModelAndTheMergeEqualsTheUnmergedForward()
    {
        var batch = Batch(Sentences);
        var plain = Logits(Model(), batch);
        var model = Model(Options("lora"));
        Assert.That(Logits(model, batch), Is.EqualTo(plain), "B = 0: the adapted model computes the base model");

        var rng = new Random(1);
        foreach (var (name, p) in model.NamedParameters().Where(p => p.Name.EndsWith("lora_B.weight")))
            Backend.Backends.Copy(Tensor.Randn(p.ShapeArray, rng, p.DType, 0.2), p);
        var unmerged = Logits(model, batch);
        Assert.That(unmerged, Is.Not.EqualTo(plain));
        PeftSetup.Merge(model);
        Assert.That(Logits(model, batch), Is.EqualTo(unmerged).Within(1e-5));

        // A merged save is a plain model folder.
        var dir = Path.Combine(temp.Path, "merged");
        AtomicFolder.Write(dir, tmp => model.SaveInto(tmp, folder, DemoModel.LabelNames));
        using (var weights = SafeTensors.Open(Path.Combine(dir, SafeTensors.SingleFileName)))
            Assert.That(weights.Names, Has.None.Contains("lora_"));
        Assert.That(File.Exists(Path.Combine(dir, AdapterFiles.ConfigFile)), Is.False);
        var reloaded = SequenceClassifier.FromFolder(HfModelFolder.Open(dir));
        Assert.That(Logits(reloaded, batch), Is.EqualTo(unmerged).Within(1e-5));
    }

    [Test]
    public void ALoraAdapterSavesInPeftsFormatAndLoadsBackWithIdenticalLogits()
    {
        var peft = Options("lora");
        var model = Model(peft);
        var outDir = Path.Combine(temp.Path, "run");
        TrainerFor(model, peft, 3, 1e-2, outDir).Train(Train.Examples, null);
        var batch = Batch(Sentences);
        var trained = Logits(model, batch);

        var checkpoint = Path.Combine(outDir, Trainer.LastCheckpoint);
        var config = System.Text.Json.Nodes.JsonNode.Parse(File.ReadAllText(Path.Combine(checkpoint, AdapterFiles.ConfigFile)))!;
        Assert.That(config["peft_type"]!.GetValue<string>(), Is.EqualTo("LORA"));
        Assert.That(config["task_type"]!.GetValue<string>(), Is.EqualTo("SEQ_CLS"));
        Assert.That(config["r"]!.GetValue<int>(), Is.EqualTo(4));
        Assert.That(config["lora_alpha"]!.GetValue<double>(), Is.EqualTo(8));
        Assert.That(config["target_modules"]!.AsArray().Select(n => n!.GetValue<string>()), Is.EquivalentTo(new[] { "query", "value" }));
        Assert.That(config["modules_to_save"]!.AsArray().Select(n => n!.GetValue<string>()), Is.EqualTo(new[] { "classifier", "score" }));
        using (var weights = SafeTensors.Open(Path.Combine(checkpoint, AdapterFiles.WeightsFile)))
        {
            Assert.That(weights.Info("base_model.model.bert.encoder.layer.0.attention.self.query.lora_A.weight").Shape, Is.EqualTo(new[] { 4, 32 }));
            Assert.That(weights.Info("base_model.model.bert.encoder.layer.1.attention.self.value.lora_B.weight").Shape, Is.EqualTo(new[] { 32, 4 }));
            Assert.That(weights.Names, Has.Member("base_model.model.classifier.weight").And.Member("base_model.model.classifier.bias"));
            Assert.That(weights.Names, Has.Count.EqualTo(4 * 2 + 2));
        }

        // The adapter onto the base folder (the path --adapter takes).
        var base1 = SequenceClassifier.FromFolder(folder, 7, numLabels: 2);
        AdapterFiles.Load(base1, checkpoint);
        Assert.That(Logits(base1, batch), Is.EqualTo(trained));
        // The full checkpoint folder (base weights + adapters, config "engine_peft").
        var reloaded = SequenceClassifier.FromFolder(HfModelFolder.Open(checkpoint));
        Assert.That(reloaded.Peft!.Options.Method, Is.EqualTo("lora"));
        Assert.That(Logits(reloaded, batch), Is.EqualTo(trained));
        // The TextClassifier path (eval/predict --adapter).
        var classifier = TextClassifier.Load(folder.Path);
        classifier.LoadAdapter(checkpoint);
        Assert.That(Logits(classifier.Model!, batch), Is.EqualTo(trained));
    }

    [Test]
    public void PeftKeysWithTheAdapterNameOrModulesToSaveAlsoLoad()
    {
        Assert.That(AdapterFiles.ModelName("base_model.model.classifier.modules_to_save.default.weight"), Is.EqualTo("classifier.weight"));
        Assert.That(AdapterFiles.ModelName("base_model.model.bert.encoder.layer.0.attention.self.query.lora_A.default.weight"),
            Is.EqualTo("bert.encoder.layer.0.attention.self.query.lora_A.weight"));
        Assert.That(AdapterFiles.ModelName("base_model.model.classifier.weight"), Is.EqualTo("classifier.weight"));
    }

    [Test]
    public void LoraTargetsMatchByNameAllLinearOrRegex()
    {
        int Count(string? targets)
        {
            var m = Model(Options("lora") with { Settings = new LoraOptions { Rank = 2, Targets = targets } });
            return LoraMethod.Adapters(m).Count;
        }
        Assert.That(Count(null), Is.EqualTo(4));
        Assert.That(Count("query,key,value"), Is.EqualTo(6));
        Assert.That(Count("all-linear"), Is.EqualTo(2 * 6 + 1), "6 per block and the pooler");
        Assert.That(Count(@"re:.*layer\.1\.attention\.self\.(query|value)"), Is.EqualTo(2));
        var e = Assert.Throws<EngineException>(() => Count("q_proj"));
        Assert.That(e!.Message, Does.Contain("match no linear layer").And.Contain("query"));
    }

    [Test]
    public void RsLoraScalesByTheRootOfTheRank()
    {
        Assert.That(new LoraOptions { Rank = 16, Alpha = 16 }.Scale, Is.EqualTo(1.0));
        Assert.That(new LoraOptions { Rank = 16, Alpha = 16, UseRsLora = true }.Scale, Is.EqualTo(4.0));
    }

    // ------------------------------------------------------------------ prefix and prompt

    [TestCase("prefix", null)]
    [TestCase("prompt", null)]
    [TestCase("prefix", "depthwise:mean")]
    [TestCase("prompt", "last")]
    [TestCase("full", "depthwise:last:with-embeddings")]
    public void PaddedRowsGiveTheLogitsOfTheUnpaddedRows(string method, string? pooling)
    {
        var model = Model(Options(method, pooling) with { Settings = method == "prefix" ? new PrefixOptions { Length = 4, Projection = 16 } : Options(method).Settings });
        var batch = Logits(model, Batch(Sentences));
        for (int i = 0; i < Sentences.Length; i++)
        {
            var single = Logits(model, Batch(Sentences[i]));
            Assert.That(batch.Skip(2 * i).Take(2), Is.EqualTo(single).Within(1e-5), Sentences[i]);
        }
    }

    [Test]
    public void APromptInitialisedFromATextCopiesItsTokenEmbeddings()
    {
        var model = Model(Options("prompt") with { Settings = new PromptOptions { Length = 4, InitText = "good bad" } });
        var words = model.WordEmbeddings.ToFloatArray();
        var prompt = model.NamedParameters().Single(p => p.Name == "prompt_encoder.embedding.weight").Param.ToFloatArray();
        var ids = tokenizer.EncodeWithoutSpecialTokens("good bad");
        for (int i = 0; i < 4; i++)
            Assert.That(prompt.Skip(i * 32).Take(32), Is.EqualTo(words.Skip(ids[i % 2] * 32).Take(32)));
    }

    [TestCase("prefix")]
    [TestCase("prompt")]
    [TestCase("bitfit")]
    public void ACheckpointReloadsWithItsMethodAndIdenticalLogits(string method)
    {
        var peft = Options(method, "depthwise");
        var model = Model(peft);
        var outDir = Path.Combine(temp.Path, "run");
        TrainerFor(model, peft, 3, 1e-2, outDir).Train(Train.Examples, null);
        var batch = Batch(Sentences);
        var reloaded = SequenceClassifier.FromFolder(HfModelFolder.Open(Path.Combine(outDir, Trainer.LastCheckpoint)));
        Assert.That(reloaded.Peft!.Options.Method, Is.EqualTo(method));
        Assert.That(Logits(reloaded, batch), Is.EqualTo(Logits(model, batch)));
    }

    // ------------------------------------------------------------------ depth-wise pooling

    [Test]
    public void DepthwisePoolingAtZeroIsThePlainAverageOfTheLayers()
    {
        var rng = new Random(4);
        var states = Enumerable.Range(0, 4).Select(_ => Tensor.Randn([2, 5, 3], rng, DType.F64)).ToList();
        var mask = Tensor.FromArray([1, 1, 1, 0, 0, 1, 1, 1, 1, 1], 2, 5);
        foreach (var within in new[] { "cls", "mean", "last" })
        {
            var pooling = new SequencePooling(PoolingSpec.Parse("depthwise:" + within, "cls"), 3, DType.F64);
            Assert.That(pooling.LayerWeights(), Is.EqualTo(new[] { 1.0 / 3, 1.0 / 3, 1.0 / 3 }).Within(1e-15));
            var mixed = pooling.Pool(states, states[3], mask).ToDoubleArray();
            var single = new SequencePooling(PoolingSpec.Parse(within, "cls"), 3, DType.F64);
            var average = new double[6];
            for (int l = 1; l <= 3; l++)
            {
                var v = single.Pool(states, states[l], mask).ToDoubleArray();
                for (int i = 0; i < 6; i++) average[i] += v[i] / 3;
            }
            Assert.That(mixed, Is.EqualTo(average).Within(1e-12), within);
        }
        // Hand-checked within-layer pooling of layer 1, row 0 (3 tokens of 5).
        var h = states[1].ToDoubleArray();
        var mean = new SequencePooling(PoolingSpec.Parse("mean", "cls"), 3, DType.F64).Pool(states, states[1], mask).ToDoubleArray();
        var last = new SequencePooling(PoolingSpec.Parse("last", "cls"), 3, DType.F64).Pool(states, states[1], mask).ToDoubleArray();
        for (int d = 0; d < 3; d++)
        {
            Assert.That(mean[d], Is.EqualTo((h[d] + h[3 + d] + h[6 + d]) / 3).Within(1e-12));
            Assert.That(last[d], Is.EqualTo(h[6 + d]));
            Assert.That(last[3 + d], Is.EqualTo(h[15 + 12 + d]), "row 1: last of 5 tokens");
        }
    }

    [Test]
    public void RawDepthwiseWeightsStartAtOneOverLAndWithEmbeddingsAddsLayerZero()
    {
        var pooling = new SequencePooling(PoolingSpec.Parse("depthwise:raw:with-embeddings", "cls"), 4);
        Assert.That(pooling.LayerWeights(), Is.EqualTo(Enumerable.Repeat(0.2, 5).ToArray()).Within(1e-7));
        Assert.That(pooling.LayerLabels, Is.EqualTo(new[] { "emb", "1", "2", "3", "4" }));
        Assert.Throws<EngineException>(() => PoolingSpec.Parse("depthwise:sum", "cls"));
        Assert.That(PoolingSpec.Parse("depthwise", "last").ToString(), Is.EqualTo("depthwise:last"));
    }

    [Test]
    public void ThePoolingAndHeadGradientsMatchFiniteDifferences()
    {
        // Depth-wise pooling composes existing ops (gather/matmul, softmax, weighted sum), each
        // gradient-checked in the catalog; this checks the composition end to end in float64.
        var rng = new Random(9);
        var states = Enumerable.Range(0, 3).Select(_ => Tensor.Randn([2, 4, 3], rng, DType.F64)).ToList();
        var mask = Tensor.FromArray([1, 1, 0, 0, 1, 1, 1, 1], 2, 4);
        var pooling = new SequencePooling(PoolingSpec.Parse("depthwise:mean:with-embeddings", "cls"), 2, DType.F64);
        Backend.Backends.Copy(Tensor.FromArray(new[] { 0.3, -0.2, 0.5 }, 3), pooling.Weights!);
        var w = Tensor.Parameter(Tensor.Randn([2, 3], rng, DType.F64));
        double F()
        {
            var z = pooling.Pool(states, states[2], mask);
            return Ops.Sum(Ops.Sum(Ops.Mul(Ops.Tanh(Ops.Linear(z, w)), Ops.Tanh(Ops.Linear(z, w))))).Item();
        }
        pooling.Weights!.Grad = null;
        var zz = pooling.Pool(states, states[2], mask);
        var y = Ops.Linear(zz, w);
        Ops.Sum(Ops.Sum(Ops.Mul(Ops.Tanh(y), Ops.Tanh(y)))).Backward();
        var grad = pooling.Weights!.Grad!.ToDoubleArray();
        var a = pooling.Weights!.Span<double>();
        for (int i = 0; i < 3; i++)
        {
            double keep = a[i], eps = 1e-6;
            a[i] = keep + eps; double up = F();
            a[i] = keep - eps; double down = F();
            a[i] = keep;
            Assert.That(grad[i], Is.EqualTo((up - down) / (2 * eps)).Within(1e-7), $"d/da[{i}]");
        }
    }

    [Test]
    public void ACheckpointWithDepthwiseWeightsSavesThemAndReloadsWithIdenticalLogits()
    {
        var peft = Options("full", "depthwise");
        var model = Model(peft);
        var outDir = Path.Combine(temp.Path, "run");
        TrainerFor(model, peft, 3, 1e-2, outDir).Train(Train.Examples, null);
        var checkpoint = Path.Combine(outDir, Trainer.LastCheckpoint);
        using (var weights = SafeTensors.Open(Path.Combine(checkpoint, SafeTensors.SingleFileName)))
            Assert.That(weights.Info(SequencePooling.ParameterName).Shape, Is.EqualTo(new[] { 2 }));
        var reloaded = SequenceClassifier.FromFolder(HfModelFolder.Open(checkpoint));
        Assert.That(reloaded.Pooling!.Spec.ToString(), Is.EqualTo("depthwise:cls"));
        Assert.That(reloaded.Pooling.LayerWeights(), Is.EqualTo(model.Pooling!.LayerWeights()));
        var batch = Batch(Sentences);
        Assert.That(Logits(reloaded, batch), Is.EqualTo(Logits(model, batch)));
    }

    [Test]
    public void AskingForAnotherMethodOnAPeftModelIsAnError()
    {
        var model = Model(Options("lora"));
        PeftSetup.Apply(model, new PeftOptions()); // the defaults keep what is there
        Assert.That(model.Peft!.Options.Method, Is.EqualTo("lora"));
        var e = Assert.Throws<EngineException>(() => PeftSetup.Apply(model, Options("prefix")));
        Assert.That(e!.Message, Does.Contain("already has method lora"));
    }

    // ------------------------------------------------------------------ the registry and the hooks

    [Test]
    public void AnUnknownMethodOrOptionsOfAnotherMethodAreAnError()
    {
        var e = Assert.Throws<EngineException>(() => new PeftOptions { Method = "prefix", Settings = new LoraOptions() }.Validate());
        Assert.That(e!.Message, Does.Contain("LoraOptions belong to method lora, not to method prefix"));
        e = Assert.Throws<EngineException>(() => new PeftOptions { Method = "dorx" }.Validate());
        Assert.That(e!.Message, Does.Contain("unknown method 'dorx'").And.Contain("lora"));
        e = Assert.Throws<EngineException>(() => PeftState.FromConfig(System.Text.Json.Nodes.JsonNode.Parse("{\"method\":\"dorx\"}")!, "config.json"));
        Assert.That(e!.Message, Does.Contain("config.json").And.Contain("'dorx'"));
    }

    [Test]
    public void TheSavedMethodSectionKeepsItsFormat()
    {
        // config.json's "engine_peft" exactly as the engine wrote it before the method registry, so
        // checkpoints written then still load.
        var expected = new Dictionary<string, string>
        {
            ["lora"] = "{\"r\":4,\"lora_alpha\":8,\"lora_dropout\":0.1,\"targets\":\"query,value\",\"use_rslora\":false,\"merged\":false}",
            ["prefix"] = "{\"length\":4,\"projection\":null}",
            ["prompt"] = "{\"length\":4}",
        };
        foreach (var (method, section) in expected)
        {
            var config = Model(Options(method, "depthwise")).Peft!.ToConfig();
            Assert.That(config.Select(kv => kv.Key), Is.EqualTo(new[] { "method", "pooling", "base_model_name_or_path", method }));
            Assert.That(config["method"]!.GetValue<string>(), Is.EqualTo(method));
            Assert.That(config["pooling"]!.GetValue<string>(), Is.EqualTo("depthwise:cls"));
            Assert.That(config[method]!.ToJsonString(), Is.EqualTo(section));
        }
        Assert.That(Model(Options("bitfit")).Peft!.ToConfig().Select(kv => kv.Key), Is.EqualTo(new[] { "method", "pooling", "base_model_name_or_path" }));
        var (options, _, _) = PeftState.FromConfig(System.Text.Json.Nodes.JsonNode.Parse("{\"method\":\"lora\",\"pooling\":null,\"lora\":" + expected["lora"] + "}")!, "config.json");
        Assert.That(options.Settings, Is.EqualTo(new LoraOptions { Rank = 4, Alpha = 8, Dropout = 0.1, Targets = "query,value" }));
    }

    [Test]
    public void ABlockLimitStopsAfterBlockNAndAHeadHookReplacesTheHead()
    {
        var model = Model();
        var batch = Batch(Sentences);
        model.Eval();
        using var noGrad = Tape.NoGrad();
        var full = model.Forward(batch.Ids, batch.Mask, batch.Types);
        model.Hooks.BlockLimit = 1;
        var cut = model.Forward(batch.Ids, batch.Mask, batch.Types);
        Assert.That(cut.HiddenStates, Has.Count.EqualTo(2));
        Assert.That(cut.LastHiddenState.ToFloatArray(), Is.EqualTo(full.HiddenStates[1].ToFloatArray()));
        Assert.That(cut.Logits.ToFloatArray(), Is.Not.EqualTo(full.Logits.ToFloatArray()));
        // A replaced head reads the family's usual vector (h[CLS] of the last block run).
        model.Hooks.Head = z => Ops.Slice(z, 1, 0, 3);
        var headed = model.Forward(batch.Ids, batch.Mask, batch.Types).Logits;
        var cls = Models.Bert.BertModel.FirstToken(cut.LastHiddenState).ToFloatArray();
        Assert.That(headed.ShapeArray, Is.EqualTo(new[] { 3, 3 }));
        Assert.That(headed.ToFloatArray(), Is.EqualTo(new[] { 0, 1, 2, 32, 33, 34, 64, 65, 66 }.Select(i => cls[i]).ToArray()));
    }

    [Test]
    public void TheTrainerRunsTheMethodThePipelineApplied()
    {
        // The trainer only runs the loop: asked for a method the model does not have, it stops
        // with one line instead of silently training everything.
        var plain = Model();
        var e = Assert.Throws<EngineException>(() => TrainerFor(plain, Options("lora"), 1, 1e-2).Train(Train.Examples, null));
        Assert.That(e!.Message, Does.Contain("ask for method lora").And.Contain("has none"));
        var run = new TrainingPipeline(folder, tokenizer, plain, new TrainOptions { MaxSteps = 1, BatchSize = 16, MaxLength = 32, Peft = Options("lora") },
            DemoModel.LabelNames, regression: false);
        Assert.That(plain.Peft!.Options.Method, Is.EqualTo("lora"), "the pipeline applied it");
        Assert.That(run.Train(Train.Examples, null).Steps, Is.EqualTo(1));
    }
}
