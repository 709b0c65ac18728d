using Engine.Autograd;
using Engine.Models;
using Engine.Models.Demo;
using Engine.Models.Peft;
using Engine.Models.Peft.Lora;
using Engine.Models.Peft.Prefix;
using Engine.Models.Peft.Prompt;
using Engine.Models.Peft.Select;
using Engine.Models.Tokenization;
using Engine.Models.Training;
using Engine.Tests.Cuda;
using NUnit.Framework;

namespace Engine.Tests.Devices;

/// <summary>
/// Whole models and training runs on a device other than the CPU, against the same thing on the
/// CPU. "mirror" is <see cref="MirrorBackend"/> (always here; the CPU's kernels behind a device
/// boundary, so results must be bit-identical and any host access to device memory throws);
/// "cuda" is the real GPU (skips with the one-line reason without one; float32 tolerances).
/// </summary>
[TestFixture("mirror")]
[TestFixture("cuda")]
public class DeviceModelTests(string which)
{
    private TempFolder temp = null!;
    private Device device;

    [SetUp]
    public void SetUp()
    {
        device = which == "mirror" ? MirrorBackend.Install() : CudaTestSupport.Backend().Device;
        temp = new TempFolder();
    }

    [TearDown] public void TearDown() => temp?.Dispose();

    /// <summary>0 on the mirror (same kernels, same order); on a GPU, float32 with other summation orders.</summary>
    private double Tolerance => which == "mirror" ? 0 : 2e-4;

    private void AssertClose(double[] actual, double[] expected, string what)
    {
        Assert.That(actual.Length, Is.EqualTo(expected.Length), what);
        if (Tolerance == 0) { Assert.That(actual, Is.EqualTo(expected), what); return; }
        double scale = Math.Max(1.0, expected.Max(Math.Abs));
        for (int i = 0; i < actual.Length; i++)
            Assert.That(Math.Abs(actual[i] - expected[i]), Is.LessThanOrEqualTo(Tolerance * scale), $"{what}[{i}]: {actual[i]} vs {expected[i]}");
    }

    internal static PeftOptions Options(string method, string? pooling) => new()
    {
        Method = method, Pooling = pooling,
        Settings = method switch
        {
            "prefix" => new PrefixOptions { Length = 3 }, "prompt" => new PromptOptions { Length = 3 },
            "lora" or "dora" => new LoraOptions { Rank = 4, Alpha = 8, Dropout = 0.1 }, "select" => new SelectOptions { HeadLayer = 1, TuneLayers = 1 }, _ => null,
        },
    };

    private static Tensor Rows(int[,] rows)
    {
        int b = rows.GetLength(0), t = rows.GetLength(1);
        var flat = new int[b * t];
        for (int i = 0; i < b; i++) for (int j = 0; j < t; j++) flat[i * t + j] = rows[i, j];
        return Tensor.FromArray(flat, b, t);
    }

    /// <summary>The demo's small BERT (made in <paramref name="dir"/>) or the tiny Llama fixture.</summary>
    internal static HfModelFolder Folder(string family, string dir) => family == "bert"
        ? DemoModel.CreateFolder(Path.Combine(dir, "bert"), 3, hidden: 32)
        : HfModelFolder.Open(Llama.LlamaReferenceTests.Folder("llama"));

    private HfModelFolder Folder(string family) => Folder(family, temp.Path);

    /// <summary>A padded batch: right padding for BERT, left for Llama.</summary>
    internal static (Tensor Ids, Tensor Mask) Batch(string family) => family == "bert"
        ? (Rows(new[,] { { 2, 10, 11, 12, 3, 0, 0 }, { 2, 13, 14, 15, 16, 17, 3 } }), Rows(new[,] { { 1, 1, 1, 1, 1, 0, 0 }, { 1, 1, 1, 1, 1, 1, 1 } }))
        : (Rows(new[,] { { 0, 0, 1, 9, 14, 33, 50 }, { 1, 9, 14, 33, 50, 71, 80 } }), Rows(new[,] { { 0, 0, 1, 1, 1, 1, 1 }, { 1, 1, 1, 1, 1, 1, 1 } }));

    /// <summary>Family, method, pooling: every method on both families.</summary>
    internal static readonly object?[][] Methods =
    [
        ["bert", "full", null], ["bert", "lora", "depthwise"], ["bert", "prefix", null], ["bert", "prompt", "mean"], ["bert", "bitfit", null],
        ["llama", "full", null], ["llama", "lora", "depthwise:last:with-embeddings"], ["llama", "prefix", null], ["llama", "prompt", null],
        ["bert", "dora", "depthwise"], ["bert", "ia3", null], ["llama", "dora", null], ["llama", "ia3", "mean"],
        ["bert", "select", "depthwise"], ["llama", "select", null],
        ["bert", "spafit", "depthwise"], ["llama", "spafit", null], ["bert", "ehft", "depthwise"], ["llama", "ehft", null],
    ];

    /// <summary>The logits, loss and every parameter gradient of one training-mode step (dropout on) on <see cref="Batch"/>.</summary>
    private static (double[] Logits, double Loss, Dictionary<string, double[]> Grads) Step(SequenceClassifier model, string family)
    {
        var (ids, mask) = Batch(family);
        var labels = Tensor.FromArray([1, 0], 2);
        model.Train();
        using var scope = Scope.Begin();
        var logits = model.Forward(ids, mask).Logits;
        var loss = model.Loss(logits, labels);
        loss.Backward();
        var grads = model.NamedParameters().Where(p => p.Param.Grad is not null).ToDictionary(p => p.Name, p => p.Param.Grad!.ToDoubleArray());
        return (logits.ToDoubleArray(), loss.Item(), grads);
    }

    [TestCaseSource(nameof(Methods))]
    public void AModelStepOnTheDeviceMatchesTheCpu(string family, string method, string? pooling)
    {
        var folder = Folder(family);
        SequenceClassifier Build()
        {
            var m = SequenceClassifier.FromFolder(folder, seed: 3, numLabels: 2);
            PeftSetup.Apply(m, Options(method, pooling), folder.Path, seed: 3);
            return m;
        }
        var cpu = Build();
        var onDevice = Build();
        onDevice.To(device);
        Assert.That(onDevice.Parameters().All(p => p.Device == device), "every parameter moved");
        Assert.That(onDevice.Device, Is.EqualTo(device));

        var expected = Step(cpu, family);
        var actual = Step(onDevice, family);
        AssertClose(actual.Logits, expected.Logits, "logits");
        AssertClose([actual.Loss], [expected.Loss], "loss");
        Assert.That(actual.Grads.Keys, Is.EquivalentTo(expected.Grads.Keys), "the same parameters get gradients");
        Assert.That(expected.Grads.Count, Is.GreaterThan(0));
        foreach (var (name, g) in expected.Grads) AssertClose(actual.Grads[name], g, name);
        Assert.That(onDevice.NamedParameters().Where(p => p.Param.Grad is not null).All(p => p.Param.Grad!.Device == device), "gradients live on the device");
    }

    [TestCase("lora", "depthwise")]
    [TestCase("prompt", null)]
    [TestCase("prefix", "mean")]
    public void AMethodAppliedOnTheDeviceLandsThere(string method, string? pooling)
    {
        var folder = Folder("bert");
        var cpu = SequenceClassifier.FromFolder(folder, seed: 3, numLabels: 2);
        PeftSetup.Apply(cpu, Options(method, pooling), folder.Path, seed: 3);
        var onDevice = SequenceClassifier.FromFolder(folder, seed: 3, numLabels: 2);
        onDevice.To(device);
        PeftSetup.Apply(onDevice, Options(method, pooling), folder.Path, seed: 3);
        Assert.That(onDevice.NamedParameters().Where(p => p.Param.Device != device).Select(p => p.Name), Is.Empty);
        var expected = Step(cpu, "bert");
        var actual = Step(onDevice, "bert");
        AssertClose(actual.Logits, expected.Logits, "logits");
        foreach (var (name, g) in expected.Grads) AssertClose(actual.Grads[name], g, name);
    }

    private TrainingPipeline MakeTrainer(SequenceClassifier model, HfModelFolder folder, string? outDir, int steps, Device? on) =>
        new(folder, TextTokenizer.FromFolder(folder), model, new TrainOptions
        {
            MaxSteps = steps, BatchSize = 8, LearningRate = 2e-3, MaxLength = 32, Seed = 3, EvalEvery = 3, OutDir = outDir, LogEvery = 1,
            Device = on,
        }, DemoModel.LabelNames, regression: false);

    private static readonly Models.Data.Dataset Train = DemoModel.Data(64, 5, "train");
    private static readonly Models.Data.Dataset Eval = DemoModel.Data(24, 6, "eval");

    [Test]
    public void ATrainingRunOnTheDeviceFollowsTheCpuRunAndResumesThere()
    {
        var folder = Folder("bert");
        var cpuModel = SequenceClassifier.FromFolder(folder, 3, numLabels: 2);
        var cpuRun = MakeTrainer(cpuModel, folder, Path.Combine(temp.Path, "cpu"), 6, null).Train(Train.Examples, Eval.Examples);

        var deviceModel = SequenceClassifier.FromFolder(folder, 3, numLabels: 2);
        var outDir = Path.Combine(temp.Path, "device");
        Assert.Throws<OperationCanceledException>(() => MakeTrainer(deviceModel, folder, outDir, 6, device).Train(Train.Examples, Eval.Examples,
            e => { if (e.Step == 4 && e.Loss is not null) throw new OperationCanceledException("killed"); }));
        Assert.That(deviceModel.Device, Is.EqualTo(device), "the pipeline moved the model");

        // Resumed on the device from the step-3 checkpoint (written from host copies).
        var checkpoint = Path.Combine(outDir, Trainer.LastCheckpoint);
        var resumedModel = SequenceClassifier.FromFolder(HfModelFolder.Open(checkpoint), 3, numLabels: 2);
        var resumed = MakeTrainer(resumedModel, folder, outDir, 6, device).Train(Train.Examples, Eval.Examples, resumeFrom: checkpoint);

        AssertClose(resumed.Losses.ToArray(), cpuRun.Losses.Skip(3).ToArray(), "losses of steps 4..6");
        AssertClose(resumed.FinalEval.Values.ToArray(), cpuRun.FinalEval.Values.ToArray(), "final evaluation");
        foreach (var ((name, p), (_, q)) in cpuModel.NamedParameters().Zip(resumedModel.NamedParameters()))
        {
            Assert.That(q.Device, Is.EqualTo(device), name);
            AssertClose(q.ToDoubleArray(), p.ToDoubleArray(), name);
        }

        // The final checkpoint loads on the CPU and computes what the device model computes.
        var reloaded = SequenceClassifier.FromFolder(HfModelFolder.Open(checkpoint), 3, numLabels: 2);
        var ids = Rows(new[,] { { 2, 10, 11, 12, 3 } });
        reloaded.Eval();
        resumedModel.Eval();
        using var noGrad = Tape.NoGrad();
        AssertClose(resumedModel.Forward(ids).Logits.ToDoubleArray(), reloaded.Forward(ids).Logits.ToDoubleArray(), "reloaded logits");
    }

    [Test]
    public void TheGlobalGradientNormCountsEveryDeviceOnce()
    {
        var rng = new Random(2);
        var ps = new List<Tensor>();
        double expected = 0;
        foreach (var onDevice in new[] { false, true, true, false, true })
        {
            var p = Tensor.Parameter(Tensor.Zeros([5]));
            var g = Tensor.Randn([5], rng);
            expected += g.ToDoubleArray().Sum(v => v * v);
            if (onDevice) p.MoveTo(device);
            p.Grad = g.To(p.Device);
            ps.Add(p);
        }
        Assert.That(Engine.Optim.GradClip.GlobalNorm(ps), Is.EqualTo(Math.Sqrt(expected)).Within(1e-6));
    }

    [Test]
    public void TheDeviceBoundaryHolds()
    {
        var x = Tensor.Zeros([4], DType.F32, device);
        Assert.Throws<InvalidOperationException>(() => x.Span<float>(), "the host cannot touch device memory");
        var e = Assert.Throws<EngineException>(() => Ops.Add(x, Tensor.Zeros([4])));
        Assert.That(e!.Message, Does.Contain("different devices"));
        Assert.That(x.To(Device.Cpu).ToFloatArray(), Is.EqualTo(new float[4]), "explicit copies work");
    }
}
