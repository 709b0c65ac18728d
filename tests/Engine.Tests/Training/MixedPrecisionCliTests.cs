using System.Text.Json;
using Engine.Models.Demo;
using Engine.Models.Training;
using NUnit.Framework;

namespace Engine.Tests;

/// <summary>`--dtype f32|bf16` on `engine train` and `engine bench step`, as a user runs them.</summary>
public class MixedPrecisionCliTests
{
    private TempFolder temp = null!;
    private string model = null!;

    [SetUp]
    public void SetUp()
    {
        temp = new TempFolder();
        model = DemoModel.CreateFolder(Path.Combine(temp.Path, "model"), seed: 1, hidden: 32).Path;
        File.WriteAllLines(temp.File("train.tsv"), new[] { "sentence\tlabel" }.Concat(NegationTask.Make(32, 1).Select(e => $"{e.Text}\t{e.Label}")));
    }

    [TearDown] public void TearDown() => temp.Dispose();

    private (int Exit, string Out, string Err) Train(string run, params string[] extra) =>
        EngineProcess.Run(["train", "--model", model, "--train", temp.File("train.tsv"), "--task", "sst2",
            "--steps", "3", "--batch", "16", "--lr", "1e-3", "--log-every", "1", "--out", temp.File(run), .. extra]);

    private double[] Losses(string run) =>
        File.ReadAllLines(Path.Combine(temp.File(run), Trainer.MetricsFile)).Select(l => JsonDocument.Parse(l).RootElement)
            .Where(e => e.TryGetProperty("loss", out _)).Select(e => e.GetProperty("loss").GetDouble()).ToArray();

    [Test]
    public void TrainWithDtypeBf16RunsAndDiffersFromF32()
    {
        var r = Train("bf16", "--dtype", "bf16");
        Assert.That(r.Exit, Is.EqualTo(0), r.Err);
        Assert.That(r.Out, Does.Contain("done: 3 steps"));
        r = Train("f32", "--dtype", "f32");
        Assert.That(r.Exit, Is.EqualTo(0), r.Err);
        var (bf16, f32) = (Losses("bf16"), Losses("f32"));
        Assert.That(bf16, Has.Length.EqualTo(3));
        Assert.That(bf16, Is.Not.EqualTo(f32), "--dtype bf16 changes the GEMMs");
        Assert.That(bf16[0], Is.EqualTo(f32[0]).Within(1e-2), "by rounding only");
    }

    [Test]
    public void AnUnknownDtypeIsAOneLineError()
    {
        var line = EngineProcess.AssertUserError(Train("f16", "--dtype", "f16"));
        Assert.That(line, Does.Contain("f32 or bf16").And.Contain("'f16'"));
        Assert.That(Directory.Exists(temp.File("f16")), Is.False, "nothing is written before the options are checked");
        line = EngineProcess.AssertUserError(EngineProcess.Run("bench", "step", "--model", model, "--dtype", "f16"));
        Assert.That(line, Does.Contain("--dtype must be f32 or bf16"));
    }

    [Test]
    public void BenchStepTakesTheDtype()
    {
        var r = EngineProcess.Run("bench", "step", "--model", model, "--batch", "4", "--len", "8", "--iters", "1", "--dtype", "bf16");
        Assert.That(r.Exit, Is.EqualTo(0), r.Err);
        Assert.That(r.Out, Does.Contain("GEMMs bf16").And.Contain("tokens/s"));
    }
}
