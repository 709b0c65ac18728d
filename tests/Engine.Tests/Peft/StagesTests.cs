using Engine.Models;
using Engine.Models.Demo;
using Engine.Models.Peft;
using Engine.Models.Training;
using NUnit.Framework;

namespace Engine.Tests.Peft;

/// <summary>A method that trains in stages (what EH-FT needs), defined here and registered from
/// outside the engine: stage 1 trains the biases and the head; stage 2 reloads the backbone and
/// trains everything, starting from the stage-1 head.</summary>
public class StagesTests
{
    private sealed class TwoStages : FineTuningMethod
    {
        public override string Name => "test-two-stages";
        public override string Description => "a test: biases and head, then everything from the reloaded backbone";
        public override MethodOptions Defaults => NoOptions.Instance;
        public override InstalledMethod Install(SequenceClassifier model, MethodOptions options, MethodContext context) => new Installed();

        public sealed class Installed : InstalledMethod
        {
            public int Stage;
            public Dictionary<string, float[]>? AfterReload, HeadAtStage2;
            public override bool Trains(string name) => Stage == 2 || TrainsHeadOrPooling(name) || name.EndsWith(".bias", StringComparison.Ordinal);
            public override IReadOnlyList<TrainingStage> Stages =>
            [
                new("first", 0.5, _ => Stage = 1),
                new("second", 0.5, c =>
                {
                    HeadAtStage2 = c.Model.NamedParameters().Where(p => SequenceClassifier.IsHead(p.Name)).ToDictionary(p => p.Name, p => p.Param.ToFloatArray());
                    c.ReloadBackbone();
                    AfterReload = c.Model.NamedParameters().ToDictionary(p => p.Name, p => p.Param.ToFloatArray());
                    Stage = 2;
                }),
            ];
        }
    }

    private static readonly Lazy<bool> Registered = new(() => { MethodRegistry.Register(new TwoStages()); return true; });

    [Test]
    public void StagesRunInOrderAndTheBackboneReloadsBetweenThem()
    {
        Assert.That(Registered.Value);
        using var temp = new TempFolder();
        var folder = MethodChecks.Bert(temp);
        var start = SequenceClassifier.FromFolder(folder, 3, numLabels: 2).NamedParameters().ToDictionary(p => p.Name, p => p.Param.ToFloatArray());
        var run = MethodChecks.Pipeline(folder, new PeftOptions { Method = "test-two-stages" }, Path.Combine(temp.Path, "out"), 6);
        var notes = new List<string>();
        var result = run.Train(DemoModel.Data(64, 5, "train").Examples, null, e => { if (e.Note is not null) notes.Add(e.Note); });
        var installed = (TwoStages.Installed)run.Model.Peft!.Method;

        Assert.That(notes, Is.EqualTo(new[] { "stage first: 3 steps", "stage second: 3 steps" }));
        Assert.That(result.Steps, Is.EqualTo(3), "the result is the last stage's");
        Assert.That(File.Exists(Path.Combine(temp.Path, "out", "first", Trainer.LastCheckpoint, "config.json")), "stage 1 writes OUT/first");
        Assert.That(File.Exists(Path.Combine(temp.Path, "out", Trainer.LastCheckpoint, "config.json")), "the last stage writes OUT");
        foreach (var (name, values) in installed.AfterReload!)
        {
            if (SequenceClassifier.IsHead(name)) Assert.That(values, Is.EqualTo(installed.HeadAtStage2![name]), $"{name}: the head of stage 1 is kept");
            else Assert.That(values, Is.EqualTo(start[name]), $"{name}: reloaded");
        }
        Assert.That(installed.HeadAtStage2!.Keys.Any(n => !installed.HeadAtStage2[n].SequenceEqual(start[n])), "stage 1 trained the head");
        var end = run.Model.NamedParameters().ToDictionary(p => p.Name, p => p.Param.ToFloatArray());
        Assert.That(end["bert.embeddings.word_embeddings.weight"], Is.Not.EqualTo(start["bert.embeddings.word_embeddings.weight"]), "stage 2 trains everything");
    }
}
