using Engine.Models;
using Engine.Models.Demo;
using Engine.Models.Peft;
using Engine.Models.Peft.Ehft;
using Engine.Models.Peft.Lora;
using Engine.Models.Peft.Prefix;
using Engine.Models.Training;
using NUnit.Framework;

namespace Engine.Tests.Peft;

/// <summary>EH-FT (--method ehft): two stages in one run, on the demo BERT (width 32, 2 blocks) and the tiny Llama.</summary>
public class EhftTests
{
    private TempFolder temp = null!;

    [SetUp] public void SetUp() => temp = new TempFolder();
    [TearDown] public void TearDown() => temp.Dispose();

    private static PeftOptions Options(string stage1, double ratio = 0.5, bool reserve = false, string? pooling = null) => new()
    {
        Method = "ehft", Pooling = pooling,
        Settings = new EhftOptions
        {
            Stage1 = stage1, Stage1Ratio = ratio, Reserve = reserve, HeadHidden = 16, Stage1LearningRate = 1e-2,
            Stage1Settings = stage1 switch { "lora" => new LoraOptions { Rank = 4, Alpha = 8 }, "prefix" => new PrefixOptions { Length = 3 }, _ => null },
        },
    };

    private static readonly string[] Head = ["ehft_head.dense.weight", "ehft_head.dense.bias", "ehft_head.out_proj.weight", "ehft_head.out_proj.bias"];

    /// <summary>Trains 6 steps (3 per stage); returns the trained parameters (names → count) in each stage.</summary>
    private static (Dictionary<string, long> Stage1, Dictionary<string, long> Stage2, TrainingPipeline Run) TrainedPerStage(HfModelFolder folder, PeftOptions peft)
    {
        var run = MethodChecks.Pipeline(folder, peft, null, 6);
        Dictionary<string, long> Trained() => run.Model.NamedParameters().Where(p => p.Param.RequiresGrad).ToDictionary(p => p.Name, p => p.Param.Numel);
        var stage1 = Trained();
        Dictionary<string, long>? stage2 = null;
        run.Train(DemoModel.Data(48, 5, "train").Examples, null, e => { if (e.Note?.StartsWith("stage 2") == true) stage2 = Trained(); });
        Assert.That(stage2, Is.Not.Null, "the trainer entered stage 2");
        return (stage1, stage2!, run);
    }

    [Test]
    public void EachStageTrainsExactlyItsParameters()
    {
        var folder = MethodChecks.Bert(temp);
        var plain = SequenceClassifier.FromFolder(folder, 3, numLabels: 2).NamedParameters().ToDictionary(p => p.Name, p => p.Param.Numel);
        var (stage1, stage2, run) = TrainedPerStage(folder, Options("lora"));
        var lora = new[] { 0, 1 }.SelectMany(l => new[] { "query", "value" }.SelectMany(m => new[] { "A", "B" }.Select(ab => $"bert.encoder.layer.{l}.attention.self.{m}.lora_{ab}.weight")));
        Assert.That(stage1.Keys, Is.EquivalentTo(Head.Concat(lora)));
        // Head 32 → 16 → 2: 32·16 + 16 + 16·2 + 2; LoRA r 4 on 32 → 32: 4 adapters of 4·32 + 32·4.
        Assert.That(stage1.Values.Sum(), Is.EqualTo(32 * 16 + 16 + 16 * 2 + 2 + 4 * (4 * 32 + 32 * 4)));
        // Stage 2: every backbone parameter but BERT's pooler and the family's classifier (the MLP head replaces both), and the head; LoRA gone.
        var backbone = plain.Where(p => !p.Key.StartsWith("bert.pooler.") && !p.Key.StartsWith("classifier.")).ToDictionary();
        Assert.That(stage2.Keys, Is.EquivalentTo(backbone.Keys.Concat(Head)));
        Assert.That(stage2.Values.Sum(), Is.EqualTo(backbone.Values.Sum() + 32 * 16 + 16 + 16 * 2 + 2));
        Assert.That(run.Model.NamedParameters().Select(p => p.Name), Has.None.Contains("lora_"), "the LoRA parameters were dropped");

        var (_, reserved, _) = TrainedPerStage(folder, Options("lora", reserve: true));
        Assert.That(reserved.Keys, Is.EquivalentTo(backbone.Keys.Concat(Head).Concat(lora)), "--ehft-reserve keeps and trains them");
        var (prefix1, prefix2, _) = TrainedPerStage(folder, Options("prefix", pooling: "depthwise"));
        Assert.That(prefix1.Keys, Is.EquivalentTo(Head.Append(PrefixEncoder.ModuleName + ".embedding.weight").Append(SequencePooling.ParameterName)));
        Assert.That(prefix2.Keys, Is.EquivalentTo(backbone.Keys.Concat(Head).Append(SequencePooling.ParameterName)));
    }

    [TestCase("bitfit")]
    [TestCase("lora")]
    [TestCase("prefix")]
    public void StageTwoStartsFromTheLoadedBackboneWithTheStageOneHead(string stage1)
    {
        var folder = MethodChecks.Bert(temp);
        var loaded = SequenceClassifier.FromFolder(folder, 3, numLabels: 2).NamedParameters().ToDictionary(p => p.Name, p => p.Param.ToFloatArray());
        var run = MethodChecks.Pipeline(folder, Options(stage1), null, 6);
        Dictionary<string, float[]>? headAfterStage1 = null, atStage2 = null;
        run.Train(DemoModel.Data(48, 5, "train").Examples, null, e =>
        {
            var now = run.Model.NamedParameters().ToDictionary(p => p.Name, p => p.Param.ToFloatArray());
            if (e.Step == 3 && e.Loss is not null) headAfterStage1 = now;
            if (e.Note?.StartsWith("stage 2") == true) atStage2 = now;
        });
        Assert.That(headAfterStage1, Is.Not.Null);
        Assert.That(atStage2, Is.Not.Null);
        int backbone = 0;
        foreach (var (name, value) in atStage2!)
            if (name.StartsWith("ehft_head.")) Assert.That(value, Is.EqualTo(headAfterStage1![name]), $"{name}: the stage-1 head");
            else { Assert.That(value, Is.EqualTo(loaded[name]), $"{name}: the loaded weights, bit for bit"); backbone++; }
        Assert.That(backbone, Is.EqualTo(loaded.Count), "no stage-1 parameter left");
        if (stage1 == "bitfit")
            Assert.That(headAfterStage1!.Where(p => p.Key.EndsWith(".bias") && !p.Key.StartsWith("ehft_")).Any(p => !p.Value.SequenceEqual(loaded[p.Key])), "stage 1 had moved the biases");
    }

    // Stage boundary at 3 of 6 steps (the step-3 checkpoint is stage 1's last), at 2 (the
    // checkpoint is in stage 2), at 5 (the checkpoint is inside stage 1).
    [TestCase("bitfit", 0.5)]
    [TestCase("lora", 0.34)]
    [TestCase("prefix", 0.84)]
    public void AResumedRunContinuesExactlyInEitherStage(string stage1, double ratio) =>
        MethodChecks.ResumeContinuesExactly(MethodChecks.Bert(temp), Options(stage1, ratio), temp);

    [Test]
    public void OnLlamaTheHeadReadsTheLastTokenAndBothStagesRun()
    {
        var folder = MethodChecks.Llama(temp);
        var (stage1, stage2, _) = TrainedPerStage(folder, Options("lora"));
        Assert.That(stage1.Keys.Where(k => !k.StartsWith("ehft_head.")), Has.All.Contains(".lora_"));
        Assert.That(stage2.Keys, Has.None.StartWith("score.").And.None.Contains("lora_"));
        Assert.That(stage2.Keys, Has.Member("model.layers.1.mlp.down_proj.weight"));
        MethodChecks.ResumeContinuesExactly(folder, Options("lora"), temp);
    }

    [TestCase("bitfit")]
    [TestCase("lora")]
    public void BothStagesOnTheMirrorDeviceFollowTheCpuRunBitForBit(string stage1)
    {
        // The mirror device runs the CPU's kernels behind a device boundary: the same numbers, and
        // any host access to device memory throws (the boundary's copies back are device copies).
        var device = Engine.Tests.Devices.MirrorBackend.Install();
        var folder = MethodChecks.Bert(temp);
        TrainingPipeline Run(Device? on) => new(folder, Models.Tokenization.TextTokenizer.FromFolder(folder), SequenceClassifier.FromFolder(folder, 3, numLabels: 2),
            new TrainOptions { MaxSteps = 6, BatchSize = 8, LearningRate = 1e-2, MaxLength = 32, Seed = 3, LogEvery = 1, WarmupRatio = 0, Peft = Options(stage1, pooling: "depthwise"), Device = on },
            DemoModel.LabelNames, regression: false);
        var data = DemoModel.Data(48, 5, "train").Examples;
        var cpu = Run(null);
        var cpuResult = cpu.Train(data, null);
        var mirror = Run(device);
        var mirrorResult = mirror.Train(data, null);
        Assert.That(mirror.Model.Peft!.Method.Stage, Is.EqualTo(1));
        Assert.That(mirrorResult.Losses, Is.EqualTo(cpuResult.Losses));
        foreach (var ((name, p), (_, q)) in cpu.Model.NamedParameters().Zip(mirror.Model.NamedParameters()))
        {
            Assert.That(q.Device, Is.EqualTo(device), name);
            Assert.That(q.ToFloatArray(), Is.EqualTo(p.ToFloatArray()), name);
        }
    }

    [Test]
    public void TheCliRunsBothStagesMarksTheBoundaryAndTheModelEvaluates()
    {
        var model = MethodChecks.Bert(temp).Path;
        File.WriteAllLines(temp.File("train.tsv"), new[] { "sentence\tlabel" }.Concat(NegationTask.Make(32, 1).Select(e => $"{e.Text}\t{e.Label}")));
        var run = temp.File("run");
        var r = EngineProcess.Run("train", "--model", model, "--train", temp.File("train.tsv"), "--eval", temp.File("train.tsv"), "--task", "sst2",
            "--steps", "6", "--batch", "8", "--lr", "1e-3", "--out", run, "--method", "ehft", "--ehft-stage1", "bitfit", "--ehft-stage1-ratio", "0.5",
            "--ehft-head-hidden", "16", "--pooling", "depthwise");
        Assert.That(r.Exit, Is.EqualTo(0), r.Err);
        Assert.That(r.Out, Does.Contain("EH-FT head").And.Contain("stage 2"));
        var stageLines = File.ReadAllLines(Path.Combine(run, Trainer.MetricsFile)).Where(l => l.Contains("\"stage\"")).ToList();
        Assert.That(stageLines, Has.Count.EqualTo(1));
        Assert.That(stageLines[0], Does.Contain("\"step\":3").And.Contain("\"stage\":2"));
        Assert.That(File.Exists(Path.Combine(run, "loss.png")));
        r = EngineProcess.Run("eval", "--model", Path.Combine(run, Trainer.LastCheckpoint), "--data", temp.File("train.tsv"), "--task", "sst2");
        Assert.That(r.Exit, Is.EqualTo(0), r.Err);
        r = EngineProcess.Run("predict", "--model", Path.Combine(run, Trainer.LastCheckpoint), "--data", temp.File("train.tsv"), "--task", "sst2", "--out", temp.File("p.jsonl"));
        Assert.That(r.Exit, Is.EqualTo(0), r.Err);

        string[] Train(params string[] more) => ["train", "--model", model, "--train", temp.File("train.tsv"), "--task", "sst2", "--steps", "4", "--out", temp.File("bad"), .. more];
        var line = EngineProcess.AssertUserError(EngineProcess.Run(Train("--method", "ehft", "--ehft-stage1", "prompt")));
        Assert.That(line, Does.Contain("--ehft-stage1 'prompt'"));
        line = EngineProcess.AssertUserError(EngineProcess.Run(Train("--method", "ehft", "--ehft-stage1", "bitfit", "--lora-r", "4")));
        Assert.That(line, Does.Contain("--lora-r is not an option of the EH-FT stage-1 method bitfit"));
        line = EngineProcess.AssertUserError(EngineProcess.Run(Train("--method", "ehft", "--ehft-stage1-epochs", "1", "--ehft-stage1-ratio", "0.2")));
        Assert.That(line, Does.Contain("not both"));
        Assert.That(Directory.Exists(temp.File("bad")), Is.False);
    }

    [Test]
    public void ASavedModelTrainsFurtherInItsLastStage()
    {
        var folder = MethodChecks.Bert(temp);
        var outDir = Path.Combine(temp.Path, "first");
        MethodChecks.Pipeline(folder, Options("lora"), outDir, 4).Train(DemoModel.Data(32, 5, "train").Examples, null);
        var again = MethodChecks.Pipeline(HfModelFolder.Open(Path.Combine(outDir, Trainer.LastCheckpoint)), new PeftOptions(), Path.Combine(temp.Path, "again"), 3);
        Assert.That(again.Model.Peft!.Method.Stage, Is.EqualTo(1), "reloaded in stage 2");
        var before = again.Model.NamedParameters().ToDictionary(p => p.Name, p => p.Param.ToFloatArray());
        var notes = new List<string>();
        var result = again.Train(DemoModel.Data(32, 5, "train").Examples, null, e => { if (e.Note is not null) notes.Add(e.Note); });
        Assert.That(result.Steps, Is.EqualTo(3));
        Assert.That(notes, Is.Empty, "no boundary: the run is all stage 2");
        Assert.That(result.Losses, Has.All.Matches<double>(double.IsFinite));
        Assert.That(again.Model.NamedParameters().Where(p => !p.Param.ToFloatArray().SequenceEqual(before[p.Name])).Select(p => p.Name),
            Has.Member("bert.embeddings.word_embeddings.weight").And.Member("ehft_head.dense.weight"), "it trains as stage 2 does");
    }

    [TestCase("lora", null)]
    [TestCase("bitfit", "depthwise")]
    public void EhftLearnsANewTaskOnATunedBackbone(string stage1, string? pooling)
    {
        using var backbone = PeftTests.TuneBackbone();
        var peft = Options(stage1, 0.5, pooling: pooling);
        var (model, before, after, accuracy) = PeftTests.LearnDownstream(backbone, peft, 2e-3, 80);
        TestContext.Out.WriteLine($"ehft {stage1} {pooling ?? "(usual pooling)"}: loss {before:F3} → {after:F3}, held out {accuracy:P1}");
        Assert.That(model.Peft!.Method.Stage, Is.EqualTo(1), "it ended in stage 2");
        Assert.That(after, Is.LessThan(0.2));
        Assert.That(accuracy, Is.GreaterThanOrEqualTo(0.95));
    }
}
