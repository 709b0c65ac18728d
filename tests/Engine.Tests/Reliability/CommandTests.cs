using Engine.Models;
using Engine.Models.Demo;
using Engine.Models.Tokenization;
using Engine.Models.Training;
using NUnit.Framework;

namespace Engine.Tests.Reliability;

/// <summary>The commands no other test ran: gradcheck (exit 1 on a failing op, 2 on bad input),
/// ops, kernels compile, init, analyze depth, tokenize; each output checked against the library.</summary>
public class CommandTests
{
    private TempFolder temp = null!;

    [SetUp] public void SetUp() => temp = new TempFolder();
    [TearDown] public void TearDown() => temp.Dispose();

    [Test]
    public void GradcheckPassesFailsAndRefuses()
    {
        var r = EngineProcess.Run("gradcheck", "--op", "gelu", "--seed", "3");
        Assert.That(r.Exit, Is.EqualTo(0), r.Err);
        Assert.That(r.Out, Does.Contain("gelu").And.Contain("pass").And.Contain("1 passed, 0 failed"));

        // Float64 central differences are not exact: a tolerance far below their error must fail.
        r = EngineProcess.Run("gradcheck", "--op", "gelu", "--seed", "3", "--tolerance", "1e-30");
        Assert.That(r.Exit, Is.EqualTo(1), r.Out + r.Err);
        Assert.That(r.Out, Does.Contain("FAIL").And.Contain("0 passed, 1 failed"));

        Assert.That(EngineProcess.AssertUserError(EngineProcess.Run("gradcheck", "--op", "nosuchop")), Does.Contain("unknown op 'nosuchop'"));
        Assert.That(EngineProcess.AssertUserError(EngineProcess.Run("gradcheck", "--tolerance", "-1")), Does.Contain("--tolerance"));
        EngineProcess.AssertUserError(EngineProcess.Run("gradcheck", "--seed", "many"));
    }

    [Test]
    public void OpsListsTheWholeCatalog()
    {
        var r = EngineProcess.Run("ops");
        Assert.That(r.Exit, Is.EqualTo(0), r.Err);
        var lines = r.Out.Split('\n', StringSplitOptions.RemoveEmptyEntries);
        Assert.That(lines[^1].Trim(), Is.EqualTo($"{OpCatalog.All.Count} ops"));
        Assert.That(lines.Skip(1).SkipLast(1).Select(l => l.Split(' ')[0]), Is.EqualTo(OpCatalog.All.Select(e => e.Name)));
    }

    [Test]
    public void KernelsCompileListsEveryKernelOrSaysNvrtcIsMissing()
    {
        var r = EngineProcess.Run("kernels", "compile", "--arch", "sm_80");
        if (!Engine.Kernels.Native.CudaLibraries.TryLoadNvrtc(out _))
        {
            Assert.That(EngineProcess.AssertUserError(r), Does.Contain("NVRTC"));
            return;
        }
        Assert.That(r.Exit, Is.EqualTo(0), r.Err);
        var families = Engine.Kernels.KernelSources.Families;
        Assert.That(r.Out, Does.Contain($"{families.Count} files").And.Contain("sm_80"));
        foreach (var f in families)
        {
            Assert.That(r.Out, Does.Contain(f + ".cu"));
            foreach (var k in Engine.Kernels.KernelSources.DeclaredKernels(f)) Assert.That(r.Out, Does.Contain(k), $"{f}.cu: {k}");
        }
    }

    [Test]
    public void InitWritesAFolderThatLoadsWithTheSizesAsked()
    {
        File.WriteAllLines(temp.File("vocab.txt"), NegationTask.Vocabulary());
        var dir = temp.File("bert");
        var r = EngineProcess.Run("init", "--vocab", temp.File("vocab.txt"), "--out", dir, "--layers", "1", "--hidden", "16", "--heads", "2", "--max-positions", "32");
        Assert.That(r.Exit, Is.EqualTo(0), r.Err);
        var folder = HfModelFolder.Open(dir);
        Assert.That((folder.BertConfig.NumHiddenLayers, folder.BertConfig.HiddenSize, folder.BertConfig.VocabSize), Is.EqualTo((1, 16, NegationTask.Vocabulary().Count)));
        Assert.That(r.Out, Does.Contain($"{SequenceClassifier.FromFolder(folder).ParameterCount():N0} parameters"));
        Assert.That(EngineProcess.AssertUserError(EngineProcess.Run("init", "--vocab", temp.File("vocab.txt"), "--out", temp.File("x"), "--hidden", "15", "--heads", "2")),
            Does.Contain("not a multiple"));
        EngineProcess.AssertUserError(EngineProcess.Run("init", "--vocab", temp.File("none.txt"), "--out", temp.File("y")));
    }

    [Test]
    public void AnalyzeDepthPrintsTheSavedWeights()
    {
        var model = DemoModel.CreateFolder(temp.File("model"), seed: 1, hidden: 32).Path;
        File.WriteAllLines(temp.File("train.tsv"), new[] { "sentence\tlabel" }.Concat(NegationTask.Make(16, 1).Select(e => $"{e.Text}\t{e.Label}")));
        var run = temp.File("run");
        var r = EngineProcess.Run("train", "--model", model, "--train", temp.File("train.tsv"), "--task", "sst2", "--pooling", "depthwise", "--steps", "2",
            "--batch", "8", "--lr", "1e-2", "--out", run);
        Assert.That(r.Exit, Is.EqualTo(0), r.Err);
        var saved = Path.Combine(run, Trainer.LastCheckpoint);
        r = EngineProcess.Run("analyze", "depth", "--model", saved, "--out", temp.File("depth.png"));
        Assert.That(r.Exit, Is.EqualTo(0), r.Err);
        var net = SequenceClassifier.FromFolder(HfModelFolder.Open(saved));
        var weights = net.Pooling!.LayerWeights();
        Assert.That(weights.Distinct().Count(), Is.GreaterThan(1), "two steps at lr 1e-2 moved the weights off uniform");
        for (int i = 0; i < weights.Length; i++) Assert.That(r.Out, Does.Contain($"{weights[i],8:F4}"), $"layer {net.Pooling.LayerLabels[i]}");
        Assert.That(new FileInfo(temp.File("depth.png")).Length, Is.GreaterThan(1000));
        Assert.That(EngineProcess.AssertUserError(EngineProcess.Run("analyze", "depth", "--model", model)), Does.Contain("depth"));
    }

    [Test]
    public void TokenizeShowsWhatTheLibraryEncodes()
    {
        var model = DemoModel.CreateFolder(temp.File("model"), seed: 1, hidden: 32).Path;
        var r = EngineProcess.Run("tokenize", "--model", model, "--text", "the food was good", "--text-pair", "but not great");
        Assert.That(r.Exit, Is.EqualTo(0), r.Err);
        var expected = TextTokenizer.FromFolder(HfModelFolder.Open(model)).Encode("the food was good", "but not great");
        Assert.That(r.Out, Does.Contain("ids: " + string.Join(" ", expected.Ids)));
        Assert.That(r.Out, Does.Contain("[CLS]").And.Contain("[SEP]"));
        EngineProcess.AssertUserError(EngineProcess.Run("tokenize", "--model", temp.File("none"), "--text", "x"));
    }
}
