using Engine.Models;
using Engine.Models.Demo;
using Engine.Models.Peft;
using Engine.Models.Peft.Lora;
using Engine.Models.Peft.Spafit;
using Engine.Models.Training;
using NUnit.Framework;

namespace Engine.Tests.Peft;

/// <summary>SPAFIT (--method spafit) on the demo BERT (3 blocks, so every stratum has one) and the tiny Llama.</summary>
public class SpafitTests
{
    private TempFolder temp = null!;

    [SetUp] public void SetUp() => temp = new TempFolder();
    [TearDown] public void TearDown() => temp.Dispose();

    private static PeftOptions Options(int? n1 = null, int? n2 = null, string? pooling = null) =>
        new() { Method = "spafit", Pooling = pooling, Settings = new SpafitOptions { N1 = n1, N2 = n2 } };

    private HfModelFolder Bert3() => DemoModel.CreateFolder(Path.Combine(temp.Path, "bert3"), 3, hidden: 32, layers: 3);

    /// <summary>Trains four steps; asserts RequiresGrad follows the method, frozen parameters did not
    /// change, and returns the trained parameters' names and count.</summary>
    private static (List<string> Trained, long Count, List<string> Changed) TrainFour(HfModelFolder folder, PeftOptions peft, TempFolder temp)
    {
        var run = MethodChecks.Pipeline(folder, peft, null, 4);
        var before = run.Model.NamedParameters().ToDictionary(p => p.Name, p => p.Param.ToFloatArray());
        run.Train(DemoModel.Data(64, 5, "train").Examples, null);
        var changed = new List<string>();
        foreach (var (name, p) in run.Model.NamedParameters())
        {
            Assert.That(p.RequiresGrad, Is.EqualTo(run.Model.Peft!.Trains(name)), name);
            bool same = p.ToFloatArray().SequenceEqual(before[name]);
            if (!p.RequiresGrad) Assert.That(same, $"{name} is frozen but changed");
            else if (!same) changed.Add(name);
        }
        var trained = run.Model.NamedParameters().Where(p => p.Param.RequiresGrad).ToList();
        return (trained.Select(p => p.Name).ToList(), trained.Sum(p => p.Param.Numel), changed);
    }

    private static IEnumerable<string> BertBiases(int block)
    {
        var l = $"bert.encoder.layer.{block}.";
        return new[] { "attention.self.query.bias", "attention.self.key.bias", "attention.self.value.bias", "attention.output.dense.bias",
            "attention.output.LayerNorm.bias", "intermediate.dense.bias", "output.dense.bias", "output.LayerNorm.bias" }.Select(n => l + n);
    }

    [Test]
    public void EachStratumTrainsExactlyItsParameters()
    {
        // 3 blocks: N1 = 1, N2 = 2 by default. Block 1 frozen, block 2 its 8 biases, block 3 its
        // biases and LoRA (r 8) on query and value, plus the classifier.
        var (trained, count, changed) = TrainFour(Bert3(), Options(), temp);
        var lora = new[] { "query", "value" }.SelectMany(m => new[] { "A", "B" }.Select(ab => $"bert.encoder.layer.2.attention.self.{m}.lora_{ab}.weight"));
        var expected = BertBiases(1).Concat(BertBiases(2)).Concat(lora).Concat(["classifier.weight", "classifier.bias"]);
        Assert.That(trained, Is.EquivalentTo(expected));
        // Biases: 7 of width 32 and the intermediate's 64, per block; LoRA: 2 × (8·32 + 32·8); head 32·2 + 2.
        Assert.That(count, Is.EqualTo(2 * (7 * 32 + 64) + 2 * (8 * 32 + 32 * 8) + 66));
        Assert.That(changed, Has.Some.StartsWith("bert.encoder.layer.1.").And.Some.Contains("lora_B").And.Some.StartsWith("bert.encoder.layer.2.").And.Some.StartsWith("classifier."));
    }

    [Test]
    public void ThresholdsMoveTheStrata()
    {
        // N1 = 0, N2 = 3: BitFit everywhere, no LoRA. N1 = N2 = 0: LoRA and biases on every block.
        var (bitfitOnly, _, _) = TrainFour(Bert3(), Options(0, 3), temp);
        Assert.That(bitfitOnly, Is.EquivalentTo(Enumerable.Range(0, 3).SelectMany(BertBiases).Concat(["classifier.weight", "classifier.bias"])));
        var (loraAll, _, _) = TrainFour(Bert3(), Options(0, 0, "depthwise"), temp);
        Assert.That(loraAll.Count(n => n.Contains(".lora_")), Is.EqualTo(3 * 4));
        Assert.That(loraAll, Has.Member(SequencePooling.ParameterName));
        var (frozen, _, _) = TrainFour(Bert3(), Options(3, 3), temp);
        Assert.That(frozen, Is.EquivalentTo(new[] { "classifier.weight", "classifier.bias" }), "every block frozen: the head alone");
    }

    [Test]
    public void OnLlamaTheTopStratumGetsLoraOnItsQueryAndValue()
    {
        // The tiny Llama has 2 blocks and no biases: N1 = 0, N2 = 1, so LoRA on block 2's q_proj and v_proj.
        var (trained, count, _) = TrainFour(MethodChecks.Llama(temp), Options(), temp);
        var lora = new[] { "q_proj", "v_proj" }.SelectMany(m => new[] { "A", "B" }.Select(ab => $"model.layers.1.self_attn.{m}.lora_{ab}.weight"));
        Assert.That(trained, Is.EquivalentTo(lora.Append("score.weight")));
        // q_proj 32 → 32, v_proj 32 → 16 (2 kv heads of 8): 8·32 + 32·8 + 8·32 + 16·8, score 2·32.
        Assert.That(count, Is.EqualTo(8 * 32 + 32 * 8 + 8 * 32 + 16 * 8 + 2 * 32));
    }

    [Test]
    public void TheParameterTableHasARowPerStratum()
    {
        var model = SequenceClassifier.FromFolder(Bert3(), 3, numLabels: 2);
        PeftSetup.Apply(model, Options(), seed: 3);
        var table = PeftSetup.ParameterTable(model);
        TestContext.Out.WriteLine(table);
        var rows = table.Split('\n').ToDictionary(l => l.Trim().Split("  ")[0], l => l);
        Assert.That(rows.Keys, Has.Member("blocks 1–1 frozen").And.Member("blocks 2–2 BitFit").And.Member("blocks 3–3 LoRA"));
        long Trained(string row) => long.Parse(rows[row].Trim()[row.Length..].Trim().Split(' ', StringSplitOptions.RemoveEmptyEntries)[0].Replace(",", ""));
        Assert.That(Trained("blocks 1–1 frozen"), Is.Zero);
        Assert.That(Trained("blocks 2–2 BitFit"), Is.EqualTo(7 * 32 + 64));
        Assert.That(Trained("blocks 3–3 LoRA"), Is.EqualTo(7 * 32 + 64 + 2 * (8 * 32 + 32 * 8)));
    }

    [Test]
    public void ThresholdsOutOfOrderOrBeyondTheDepthAreErrors()
    {
        var model = SequenceClassifier.FromFolder(Bert3(), 3, numLabels: 2);
        Assert.That(Assert.Throws<EngineException>(() => PeftSetup.Apply(model, Options(2, 1)))!.Message, Does.Contain("--n1 2 is above --n2 1"));
        Assert.That(Assert.Throws<EngineException>(() => PeftSetup.Apply(model, Options(1, 4)))!.Message, Does.Contain("--n2 4 is beyond the model's depth (3 blocks)"));
        Assert.That(Assert.Throws<EngineException>(() => PeftSetup.Apply(model, Options(3)))!.Message, Does.Contain("N1 3 is above N2 2"));
        Assert.That(model.Peft, Is.Null, "nothing installed");
    }

    [Test]
    public void TheCliRefusesBadThresholdsInOneLine()
    {
        var model = Bert3().Path;
        File.WriteAllLines(temp.File("train.tsv"), new[] { "sentence\tlabel" }.Concat(NegationTask.Make(16, 1).Select(e => $"{e.Text}\t{e.Label}")));
        string[] Train(params string[] more) => ["train", "--model", model, "--train", temp.File("train.tsv"), "--task", "sst2", "--steps", "1", "--out", temp.File("run"), .. more];
        var line = EngineProcess.AssertUserError(EngineProcess.Run(Train("--method", "spafit", "--n1", "2", "--n2", "1")));
        Assert.That(line, Does.Contain("--n1 2 is above --n2 1"));
        line = EngineProcess.AssertUserError(EngineProcess.Run(Train("--method", "spafit", "--n2", "7")));
        Assert.That(line, Does.Contain("beyond the model's depth"));
        Assert.That(Directory.Exists(temp.File("run")), Is.False, "nothing written");
        var r = EngineProcess.Run(Train("--method", "spafit", "--n1", "1", "--lora-r", "4"));
        Assert.That(r.Exit, Is.EqualTo(0), r.Err);
        Assert.That(r.Out, Does.Contain("blocks 3–3 LoRA"), "the strata are printed before training");
    }

    [TestCase("bert")]
    [TestCase("llama")]
    public void ACheckpointReloadsWithIdenticalLogitsAndResumesExactly(string family)
    {
        var folder = family == "bert" ? MethodChecks.Bert(temp) : MethodChecks.Llama(temp);
        var peft = Options(pooling: family == "bert" ? "depthwise" : null) with { Settings = new SpafitOptions { Lora = new LoraOptions { Rank = 4, Alpha = 8 } } };
        var outDir = Path.Combine(temp.Path, "run");
        var run = MethodChecks.Pipeline(folder, peft, outDir, 3);
        run.Train(DemoModel.Data(32, 5, "train").Examples, null);
        var trained = MethodChecks.Logits(run.Model, folder, MethodChecks.Sentences);
        var checkpoint = Path.Combine(outDir, Trainer.LastCheckpoint);
        Assert.That(AdapterFiles.IsAdapterFolder(checkpoint), Is.False, "no PEFT adapter files: PEFT cannot hold per-layer biases");
        var reloaded = SequenceClassifier.FromFolder(HfModelFolder.Open(checkpoint));
        Assert.That(reloaded.Peft!.Options.SettingsAs<SpafitOptions>(), Is.EqualTo(new SpafitOptions { N1 = 0, N2 = 1, Lora = new LoraOptions { Rank = 4, Alpha = 8, Targets = family == "bert" ? "query,value" : "q_proj,v_proj" } }));
        Assert.That(MethodChecks.Logits(reloaded, folder, MethodChecks.Sentences), Is.EqualTo(trained));
        MethodChecks.ResumeContinuesExactly(folder, peft, temp);
    }

    // Measured (train loss in evaluation mode before → after, held-out accuracy, 400 sentences):
    // see docs/methods.md, SPAFIT.
    [TestCase(null)]
    [TestCase("depthwise")]
    public void SpafitLearnsANewTaskOnATunedBackbone(string? pooling)
    {
        using var backbone = PeftTests.TuneBackbone();
        var peft = Options(pooling: pooling) with { Settings = new SpafitOptions { Lora = new LoraOptions { Rank = 4, Alpha = 8 } } };
        var (_, before, after, accuracy) = PeftTests.LearnDownstream(backbone, peft, 1e-2, 60);
        TestContext.Out.WriteLine($"spafit {pooling ?? "(usual pooling)"}: loss {before:F3} → {after:F3}, held out {accuracy:P1}");
        Assert.That(before, Is.GreaterThan(0.45));
        Assert.That(after, Is.LessThan(0.2));
        Assert.That(accuracy, Is.GreaterThanOrEqualTo(0.95));
    }
}
