using Engine.Models;
using Engine.Models.Demo;
using Engine.Models.Peft;
using Engine.Models.Peft.Lora;
using Engine.Models.Tokenization;
using Engine.Models.Training;
using Engine.Optim;
using NUnit.Framework;

namespace Engine.Tests.Cuda;

/// <summary>
/// Whole models on the dry-run CUDA device (<see cref="DryGpu"/>): a BERT and a Llama
/// training-mode step with every PEFT method, an optimizer step, and a short training run with
/// evaluation and checkpoints, all through the real CUDA backend's host side. Nothing is
/// computed; what is checked is that every launch matches its kernel's signature and the
/// launch limits, and that every device address used is live.
/// </summary>
public class DryRunModelTests
{
    private TempFolder temp = null!;

    [SetUp] public void SetUp() => temp = new TempFolder();
    [TearDown] public void TearDown() => temp?.Dispose();

    private HfModelFolder Folder(string family) => Devices.DeviceModelTests.Folder(family, temp.Path);

    [TestCaseSource(typeof(Devices.DeviceModelTests), nameof(Devices.DeviceModelTests.Methods))]
    public void AModelStepLaunchesCleanly(string family, string method, string? pooling)
    {
        var dry = new DryGpu();
        var folder = Folder(family);
        var model = SequenceClassifier.FromFolder(folder, seed: 3, numLabels: 2);
        PeftSetup.Apply(model, Devices.DeviceModelTests.Options(method, pooling), folder.Path, seed: 3);
        model.To(dry.Device);
        var (ids, mask) = Devices.DeviceModelTests.Batch(family);
        var trainable = model.Parameters().Where(p => p.RequiresGrad).ToList();
        var opt = new AdamW(trainable, learningRate: 1e-3);
        model.Train();
        for (int step = 0; step < 2; step++)
        {
            using var scope = Scope.Begin();
            var loss = model.Loss(model.Forward(ids, mask).Logits, Tensor.FromArray([1, 0], 2));
            loss.Backward();
            opt.Step();
            opt.ZeroGrad();
            Assert.That(loss.Item(), Is.EqualTo(0), "a dry run reads back zeros");
        }
        Assert.That(dry.Launches, Is.Not.Empty);
        Assert.That(trainable.All(p => p.Device == dry.Device));
    }

    [Test]
    public void ATrainingRunWithEvaluationAndCheckpointsLaunchesCleanly()
    {
        var dry = new DryGpu();
        var folder = Folder("bert");
        var model = SequenceClassifier.FromFolder(folder, 3, numLabels: 2);
        var trainer = new TrainingPipeline(folder, TextTokenizer.FromFolder(folder), model, new TrainOptions
        {
            MaxSteps = 4, BatchSize = 8, LearningRate = 2e-3, MaxLength = 32, Seed = 3, EvalEvery = 2,
            OutDir = Path.Combine(temp.Path, "out"), LogEvery = 1, Device = dry.Device,
        }, DemoModel.LabelNames, regression: false);
        var result = trainer.Train(DemoModel.Data(32, 5, "train").Examples, DemoModel.Data(12, 6, "eval").Examples);
        Assert.That(result.Losses, Has.Count.EqualTo(4));
        Assert.That(model.Device, Is.EqualTo(dry.Device));
    }
}
