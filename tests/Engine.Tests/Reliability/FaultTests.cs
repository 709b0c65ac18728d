using System.Diagnostics;
using System.Text.Json.Nodes;
using Engine.IO;
using Engine.Models;
using Engine.Models.Training;
using NUnit.Framework;

namespace Engine.Tests.Reliability;

/// <summary>
/// The trainer's faults through `engine train` (README, "Reliability"): an existing run folder,
/// non-finite steps, anomaly detection, a write failure, a run that cannot fit in memory; and
/// model folders whose parts do not belong together, each one clear line before training.
/// </summary>
public class FaultTests
{
    private DemoRunFolder temp = null!;
    private string model = null!;

    [SetUp]
    public void SetUp()
    {
        temp = new DemoRunFolder();
        model = temp.Model;
        temp.Tsv("train.tsv", 32, 1);
    }

    [TearDown] public void TearDown() => temp.Dispose();

    /// <summary>engine train with defaults (--batch 8 --steps 2 --lr 1e-3) that <paramref name="extra"/> may override.</summary>
    private string[] Train(string modelDir, string outDir, params string[] extra)
    {
        string[][] defaults = [["--batch", "8"], ["--steps", "2"], ["--lr", "1e-3"]];
        return ["train", "--model", modelDir, "--train", temp.File("train.tsv"), "--task", "sst2", "--out", outDir,
            .. defaults.Where(d => !extra.Contains(d[0])).SelectMany(d => d), .. extra];
    }

    /// <summary>A copy of the demo model with some tensors rewritten.</summary>
    private string ModelWith(string name, Action<Dictionary<string, Tensor>> change, Action<JsonObject>? config = null)
    {
        var dir = temp.File(name);
        Directory.CreateDirectory(dir);
        foreach (var f in Directory.GetFiles(model)) File.Copy(f, Path.Combine(dir, Path.GetFileName(f)));
        var tensors = SafeTensors.Load(Path.Combine(model, SafeTensors.SingleFileName));
        change(tensors);
        SafeTensors.Save(Path.Combine(dir, SafeTensors.SingleFileName), tensors);
        if (config is not null)
        {
            var c = JsonNode.Parse(File.ReadAllText(Path.Combine(dir, "config.json")))!.AsObject();
            config(c);
            File.WriteAllText(Path.Combine(dir, "config.json"), c.ToJsonString());
        }
        return dir;
    }

    private static void Fill(Tensor t, float value) => t.Span<float>().Fill(value);

    [Test]
    public void AnExistingRunIsReplacedOnlyWithOverwrite()
    {
        var run = temp.File("run");
        Assert.That(EngineProcess.Run(Train(model, run)).Exit, Is.EqualTo(0));
        var stamp = File.ReadAllBytes(Path.Combine(run, Trainer.LastCheckpoint, SafeTensors.SingleFileName));
        var line = EngineProcess.AssertUserError(EngineProcess.Run(Train(model, run, "--seed", "7")));
        Assert.That(line, Does.Contain("already holds a run").And.Contain("--overwrite").And.Contain("--resume"));
        Assert.That(File.ReadAllBytes(Path.Combine(run, Trainer.LastCheckpoint, SafeTensors.SingleFileName)), Is.EqualTo(stamp), "untouched");

        var r = EngineProcess.Run(Train(model, run, "--seed", "7", "--overwrite", "--log-every", "1"));
        Assert.That(r.Exit, Is.EqualTo(0), r.Err);
        Assert.That(File.ReadAllLines(Path.Combine(run, Trainer.MetricsFile)).Count(l => l.Contains("\"loss\"")), Is.EqualTo(2), "the old run's log is gone");
        Assert.That(File.ReadAllBytes(Path.Combine(run, Trainer.LastCheckpoint, SafeTensors.SingleFileName)), Is.Not.EqualTo(stamp));
    }

    [Test]
    public void NonFiniteStepsAreSkippedUpToTheLimitThenTheRunStops()
    {
        var broken = ModelWith("nan", t => Fill(t["classifier.weight"], float.NaN));
        var run = temp.File("run");
        var line = EngineProcess.AssertUserError(EngineProcess.Run(Train(broken, run, "--steps", "5", "--skip-nonfinite", "2", "--log-every", "1")));
        Assert.That(line, Does.Contain("the loss is NaN at step 3").And.Contain("not applied").And.Contain("2 such steps were skipped"));
        var log = File.ReadAllLines(Path.Combine(run, Trainer.MetricsFile));
        Assert.That(log.Count(l => l.Contains("\"skipped\"")), Is.EqualTo(2), string.Join("\n", log));

        line = EngineProcess.AssertUserError(EngineProcess.Run(Train(broken, temp.File("run2"))));
        Assert.That(line, Does.Contain("at step 1").And.Contain("--skip-nonfinite").And.Contain("--detect-anomaly"));
    }

    [Test]
    public void DetectAnomalyNamesTheFirstOpWhoseOutputWentNonFinite()
    {
        // Infinity in the first layer's intermediate bias: the first non-finite output is that
        // linear layer's (the matmul before it is finite); everything after it is NaN or inf too.
        var broken = ModelWith("inf", t => Fill(t["bert.encoder.layer.0.intermediate.dense.bias"], float.PositiveInfinity));
        var line = EngineProcess.AssertUserError(EngineProcess.Run(Train(broken, temp.File("run"), "--detect-anomaly")));
        Assert.That(line, Does.StartWith("engine: anomaly: the forward of op '"));
        Assert.That(line, Does.Contain("[8, ").And.Contain(", 64]"), "the intermediate layer's output [B, T, 2 * hidden]");
        TestContext.Out.WriteLine(line);
        var without = EngineProcess.AssertUserError(EngineProcess.Run(Train(broken, temp.File("run2"))));
        Assert.That(without, Does.Not.StartWith("engine: anomaly").And.Contain("NaN"));
    }

    [Test]
    public void AFailedCheckpointWriteStopsWithOneLineAndKeepsThePreviousCheckpoint()
    {
        var run = temp.File("run");
        Assert.That(EngineProcess.Run(Train(model, run, "--eval-every", "1")).Exit, Is.EqualTo(0));
        var last = Path.Combine(run, Trainer.LastCheckpoint);
        var before = Directory.GetFiles(last).ToDictionary(f => Path.GetFileName(f), File.ReadAllBytes);
        long biggest = before.Values.Max(b => b.LongLength);

        // Resume for two more steps with a file-size limit below the checkpoint's largest file.
        // (.NET's W^X double mapping uses a memfd that the limit would also cap: switched off.)
        var engine = EngineProcess.StartInfo(Train(model, run, "--steps", "4", "--eval-every", "1", "--resume", last));
        var psi = new ProcessStartInfo("bash") { RedirectStandardOutput = true, RedirectStandardError = true };
        psi.ArgumentList.Add("-c");
        psi.ArgumentList.Add($"ulimit -f {biggest / 1024 / 2} && exec \"$0\" \"$@\"");
        psi.ArgumentList.Add(engine.FileName);
        foreach (var a in engine.ArgumentList) psi.ArgumentList.Add(a);
        psi.Environment["DOTNET_EnableWriteXorExecute"] = "0";
        var line = EngineProcess.AssertUserError(EngineProcess.Run(psi));
        Assert.That(line, Does.Contain("could not write").And.Contain("at step 3").And.Contain("previous checkpoint is intact"));
        Assert.That(Directory.GetFiles(last).ToDictionary(f => Path.GetFileName(f), File.ReadAllBytes), Is.EqualTo(before), "the step-2 checkpoint, byte for byte");
        Assert.That(Directory.GetDirectories(run).Select(Path.GetFileName), Is.EqualTo(new[] { Trainer.LastCheckpoint }), "no half-written folder");

        var r = EngineProcess.Run(Train(model, run, "--steps", "4", "--eval-every", "1", "--resume", last));
        Assert.That(r.Exit, Is.EqualTo(0), "and it resumes once there is room: " + r.Err);
    }

    [Test]
    public void ARunThatCannotFitIsRefusedBeforeItStarts()
    {
        var run = temp.File("run");
        var line = EngineProcess.AssertUserError(EngineProcess.Run(Train(model, run, "--memory-budget", "0.004", "--batch", "32", "--max-len", "64")));
        Assert.That(line, Does.Contain("a step needs about").And.Contain("activations").And.Contain("batch 32").And.Contain("--batch").And.Contain("--grad-accum"));
        Assert.That(Directory.Exists(Path.Combine(run, Trainer.LastCheckpoint)), Is.False);
        line = EngineProcess.AssertUserError(EngineProcess.Run(Train(model, run, "--memory-budget", "0.0001")));
        Assert.That(line, Does.Contain("alone do not fit").And.Contain("--method lora"));
    }

    [Test]
    public void TheEstimateGrowsWithBatchAndLengthAsItsFormulaSays()
    {
        var folder = HfModelFolder.Open(model);
        var net = SequenceClassifier.FromFolder(folder);
        var a = MemoryEstimate.ForRun(net, folder, new TrainOptions { BatchSize = 8 }, 32);
        var b = MemoryEstimate.ForRun(net, folder, new TrainOptions { BatchSize = 16 }, 32);
        var c = MemoryEstimate.ForRun(net, folder, new TrainOptions { BatchSize = 8, MaxLength = 16 }, 32);
        Assert.That(b.Activations, Is.EqualTo(2 * a.Activations).Within(2));
        Assert.That(c.Length, Is.EqualTo(16));
        Assert.That(c.Activations, Is.LessThan(a.Activations / 2 + 1));
        Assert.That(a.Parameters, Is.EqualTo(4 * net.ParameterCount()));
        Assert.That(a.OptimizerState, Is.EqualTo(2 * a.Gradients));
    }

    // ---- model folders whose parts do not belong together: one line, before training ----

    private string FolderError(string dir)
    {
        var line = EngineProcess.AssertUserError(EngineProcess.Run(Train(dir, temp.File("out-" + Path.GetFileName(dir)))));
        Assert.That(Directory.Exists(temp.File("out-" + Path.GetFileName(dir))), Is.False, "nothing written");
        return line;
    }

    [Test]
    public void ConfigSizesThatTheWeightsDoNotHave()
    {
        Assert.That(FolderError(ModelWith("wide", _ => { }, c => c["intermediate_size"] = 4096)),
            Does.Contain("config.json").And.Contain("describes a model of at least").And.Contain("intermediate_size 4096"));
        Assert.That(FolderError(ModelWith("narrow", _ => { }, c => c["intermediate_size"] = 32)),
            Does.Contain("intermediate.dense.weight is [64, 32], expected [32, 32]"));
    }

    [Test]
    public void MissingExtraAndMistypedTensors()
    {
        Assert.That(FolderError(ModelWith("missing", t => t.Remove("bert.encoder.layer.1.output.dense.weight"))),
            Does.Contain("bert.encoder.layer.1.output.dense.weight"));
        Assert.That(FolderError(ModelWith("extra", t => t["bert.encoder.layer.9.output.dense.weight"] = Tensor.Zeros([4, 4]))),
            Does.Contain("bert.encoder.layer.9.output.dense.weight"));
        Assert.That(FolderError(ModelWith("ints", t => t["bert.pooler.dense.bias"] = Tensor.FromArray(new int[32], 32))),
            Does.Contain("bert.pooler.dense.bias").And.Contain("I32").And.Contain("floating-point"));
    }

    [Test]
    public void ATokenizerLargerThanTheEmbeddings()
    {
        var dir = ModelWith("vocab", _ => { });
        File.AppendAllLines(Path.Combine(dir, "vocab.txt"), Enumerable.Range(0, 5).Select(i => $"extra{i}"));
        Assert.That(FolderError(dir), Does.Contain("vocab.txt").And.Contain("the tokenizer has").And.Contain("embeddings have").And.Contain("out of range"));
    }

    [Test]
    public void DataLabelsMissingFromTheModelsLabels()
    {
        var run = temp.File("run");
        Assert.That(EngineProcess.Run(Train(model, run)).Exit, Is.EqualTo(0));
        File.WriteAllLines(temp.File("other.tsv"), ["sentence\tlabel", "good food\tpositive", "bad food\tneutral"]);
        var line = EngineProcess.AssertUserError(EngineProcess.Run("eval", "--model", Path.Combine(run, Trainer.LastCheckpoint), "--data", temp.File("other.tsv")));
        Assert.That(line, Does.Contain("other.tsv:3").And.Contain("neutral"));
        line = EngineProcess.AssertUserError(EngineProcess.Run("train", "--model", model, "--train", temp.File("other.tsv"), "--steps", "1",
            "--resume", Path.Combine(run, Trainer.LastCheckpoint), "--out", run));
        Assert.That(line, Does.Contain("other.tsv:3").And.Contain("neutral"));
    }
}
