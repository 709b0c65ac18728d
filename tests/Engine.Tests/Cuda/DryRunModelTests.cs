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

    private HfModelFolder Folder(string family) => family == "bert"
        ? DemoModel.CreateFolder(Path.Combine(temp.Path, "bert"), 3, hidden: 32)
        : HfModelFolder.Open(Llama.LlamaReferenceTests.Folder("llama"));

    private static Tensor Rows(int[] flat, int b) => Tensor.FromArray(flat, b, flat.Length / b);

    [TestCase("bert", "full", null)]
    [TestCase("bert", "lora", "depthwise")]
    [TestCase("bert", "prefix", null)]
    [TestCase("bert", "prompt", "mean")]
    [TestCase("bert", "bitfit", null)]
    [TestCase("llama", "full", null)]
    [TestCase("llama", "lora", "depthwise:last:with-embeddings")]
    [TestCase("llama", "prefix", null)]
    [TestCase("llama", "prompt", null)]
    public void AModelStepLaunchesCleanly(string family, string method, string? pooling)
    {
        var dry = new DryGpu();
        var folder = Folder(family);
        var model = SequenceClassifier.FromFolder(folder, seed: 3, numLabels: 2);
        PeftSetup.Apply(model, new PeftOptions
        {
            Method = method, Pooling = pooling, PrefixLength = 3, PromptLength = 3,
            LoraSettings = new LoraOptions { Rank = 4, Alpha = 8, Dropout = 0.1 },
        }, folder.Path, seed: 3);
        model.To(dry.Device);
        var ids = family == "bert" ? Rows([2, 10, 11, 12, 3, 0, 0, 2, 13, 14, 15, 16, 17, 3], 2) : Rows([0, 0, 1, 9, 14, 33, 50, 1, 9, 14, 33, 50, 71, 80], 2);
        var mask = family == "bert" ? Rows([1, 1, 1, 1, 1, 0, 0, 1, 1, 1, 1, 1, 1, 1], 2) : Rows([0, 0, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1], 2);
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
        var trainer = new Trainer(model, folder, TextTokenizer.FromFolder(folder), new TrainOptions
        {
            MaxSteps = 4, BatchSize = 8, LearningRate = 2e-3, MaxLength = 32, Seed = 3, EvalEvery = 2,
            OutDir = Path.Combine(temp.Path, "out"), LogEvery = 1, Device = dry.Device,
        }, DemoModel.LabelNames, regression: false);
        var result = trainer.Train(DemoModel.Data(32, 5, "train").Examples, DemoModel.Data(12, 6, "eval").Examples);
        Assert.That(result.Losses, Has.Count.EqualTo(4));
        Assert.That(model.Device, Is.EqualTo(dry.Device));
    }
}
