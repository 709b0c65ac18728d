using System.Text.Json.Nodes;
using Engine.Models.Demo;
using Engine.Models.Peft;
using Engine.Models.Training;
using NUnit.Framework;

namespace Engine.Tests.Peft;

/// <summary>Each method's default learning rate (a run that gives none trains at it; a given one wins).</summary>
public partial class PeftTests
{
    [Test]
    public void EachMethodHasItsOwnDefaultLearningRateAndAGivenRateWins()
    {
        foreach (var m in MethodRegistry.All)
        {
            Assert.That(m.DefaultLearningRate, Is.GreaterThan(0).And.LessThan(0.1), m.Name);
            Assert.That(new TrainOptions { Peft = new PeftOptions { Method = m.Name } }.PeakLearningRate, Is.EqualTo(m.DefaultLearningRate), m.Name);
            Assert.That(new TrainOptions { LearningRate = 7e-4, Peft = new PeftOptions { Method = m.Name } }.PeakLearningRate, Is.EqualTo(7e-4), m.Name);
        }
        Assert.That(new TrainOptions().PeakLearningRate, Is.EqualTo(2e-5), "full fine-tuning: BERT's rate");
        // A method that trains new parameters from scratch wants a far larger rate than full fine-tuning.
        foreach (var name in new[] { "head", "lora", "dora", "ia3", "prefix", "prompt", "bitfit" })
            Assert.That(MethodRegistry.Get(name).DefaultLearningRate, Is.GreaterThanOrEqualTo(10 * MethodRegistry.Get("full").DefaultLearningRate), name);
        Assert.Throws<EngineException>(() => new TrainOptions { LearningRate = 0 }.Validate());
        Assert.Throws<EngineException>(() => new TrainOptions { LearningRate = double.PositiveInfinity }.Validate());
    }

    [Test]
    public void ARunWithoutARateTrainsAtTheMethodsDefault()
    {
        foreach (var method in new[] { "head", "lora", "full" })
        {
            var peft = Options(method);
            var outDir = Path.Combine(temp.Path, "lr-" + method);
            new Trainer(Model(peft), folder, tokenizer, new TrainOptions
            {
                MaxSteps = 2, BatchSize = 16, MaxLength = 32, Seed = 3, OutDir = outDir, LogEvery = 1, WarmupRatio = 0, Schedule = "constant", Peft = peft,
            }, DemoModel.LabelNames, regression: false).Train(Train.Examples, null);
            var rates = File.ReadLines(Path.Combine(outDir, Trainer.MetricsFile)).Select(l => JsonNode.Parse(l)!)
                            .Where(n => n["loss"] is not null).Select(n => n["lr"]!.GetValue<double>()).ToList();
            Assert.That(rates, Has.Count.EqualTo(2), method);
            Assert.That(rates, Is.All.EqualTo(MethodRegistry.Get(method).DefaultLearningRate).Within(1e-12), method);
        }
    }
}
