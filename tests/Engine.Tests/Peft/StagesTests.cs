using System.Text.Json.Nodes;
using Engine.Autograd;
using Engine.Models;
using Engine.Models.Demo;
using Engine.Models.Peft;
using Engine.Models.Training;
using NUnit.Framework;

namespace Engine.Tests.Peft;

/// <summary>A method that trains in stages, defined here and registered from outside the engine:
/// stage 1 trains the biases and the head; stage 2 puts the backbone back to its loaded weights
/// and trains everything, starting from the stage-1 head, with its own learning rate.</summary>
public class StagesTests
{
    private sealed class TwoStages : FineTuningMethod
    {
        public override string Name => "test-two-stages";
        public override string Description => "a test: biases and head, then everything from the reloaded backbone";
        public override MethodOptions Defaults => NoOptions.Instance;

        public override InstalledMethod Install(SequenceClassifier model, MethodOptions options, MethodContext context) =>
            new Installed(model, model.NamedParameters().ToDictionary(p => p.Name, p => p.Param.ToFloatArray()));

        public sealed class Installed(SequenceClassifier model, Dictionary<string, float[]> loaded) : InstalledMethod
        {
            private int stage;
            public Dictionary<string, float[]>? HeadAtStage2, AfterReload;
            public override int Stage => stage;
            public override bool Trains(string name) => stage == 1 || TrainsHeadOrPooling(name) || name.EndsWith(".bias", StringComparison.Ordinal);
            public override IReadOnlyList<TrainingStage> Stages => [new("first", Share: 0.5), new("second", LearningRate: 5e-3)];

            public override void EnterStage(int next)
            {
                HeadAtStage2 = model.NamedParameters().Where(p => SequenceClassifier.IsHead(p.Name)).ToDictionary(p => p.Name, p => p.Param.ToFloatArray());
                using (Tape.NoGrad())
                    foreach (var (name, p) in model.NamedParameters().Where(p => !SequenceClassifier.IsHead(p.Name)))
                        Backend.Backends.Copy(Tensor.FromArray(loaded[name], p.ShapeArray), p);
                AfterReload = model.NamedParameters().ToDictionary(p => p.Name, p => p.Param.ToFloatArray());
                stage = next;
            }
        }
    }

    private static readonly Lazy<bool> Registered = new(() => { MethodRegistry.Register(new TwoStages()); return true; });

    [Test]
    public void StagesRunInOrderInOneRunAndTheModelMovesOnBetweenThem()
    {
        Assert.That(Registered.Value);
        using var temp = new TempFolder();
        var folder = MethodChecks.Bert(temp);
        var start = SequenceClassifier.FromFolder(folder, 3, numLabels: 2).NamedParameters().ToDictionary(p => p.Name, p => p.Param.ToFloatArray());
        var outDir = Path.Combine(temp.Path, "out");
        var run = MethodChecks.Pipeline(folder, new PeftOptions { Method = "test-two-stages" }, outDir, 6);
        var notes = new List<string>();
        var result = run.Train(DemoModel.Data(64, 5, "train").Examples, null, e => { if (e.Note is not null) notes.Add(e.Note); });
        var installed = (TwoStages.Installed)run.Model.Peft!.Method;

        Assert.That(notes, Is.EqualTo(new[] { $"second from step 4: {run.Model.ParameterCount():N0} parameters trained" }));
        Assert.That(result.Steps, Is.EqualTo(6), "one run of both stages");
        var log = File.ReadAllLines(Path.Combine(outDir, Trainer.MetricsFile)).Select(l => JsonNode.Parse(l)!).ToList();
        Assert.That(log.Where(n => n["stage"] is not null).Select(n => n.ToJsonString()), Is.EqualTo(new[] { """{"step":3,"stage":2,"stage_name":"second"}""" }));
        double Lr(int step) => log.Single(n => n["step"]!.GetValue<int>() == step && n["loss"] is not null)["lr"]!.GetValue<double>();
        Assert.That(Lr(4), Is.GreaterThan(Lr(3)).And.LessThanOrEqualTo(5e-3), "stage 2 has its own schedule and learning rate");
        foreach (var (name, values) in installed.AfterReload!)
        {
            if (SequenceClassifier.IsHead(name)) Assert.That(values, Is.EqualTo(installed.HeadAtStage2![name]), $"{name}: the head of stage 1 is kept");
            else Assert.That(values, Is.EqualTo(start[name]), $"{name}: reloaded");
        }
        Assert.That(installed.HeadAtStage2!.Keys.Any(n => !installed.HeadAtStage2[n].SequenceEqual(start[n])), "stage 1 trained the head");
        var end = run.Model.NamedParameters().ToDictionary(p => p.Name, p => p.Param.ToFloatArray());
        Assert.That(end["bert.embeddings.word_embeddings.weight"], Is.Not.EqualTo(start["bert.embeddings.word_embeddings.weight"]), "stage 2 trains everything");
    }

    [Test]
    public void StagesTooLongForTheRunAreAnError()
    {
        var stages = new TrainingStage[] { new("a", Share: 0.5), new("b", Epochs: 2), new("c") };
        Assert.That(TrainingStage.Ends(stages, 10, 2), Is.EqualTo(new[] { 5, 9, 10 }));
        Assert.That(Assert.Throws<EngineException>(() => TrainingStage.Ends(stages, 8, 2))!.Message, Does.Contain("too few for its stages"));
    }
}
