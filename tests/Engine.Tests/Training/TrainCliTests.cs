using System.Text.Json;
using Engine.Models.Demo;
using Engine.Models.Training;
using NUnit.Framework;

namespace Engine.Tests;

/// <summary>`engine train`, `eval`, `predict` as a user runs them: outputs, and one-line errors for bad input.</summary>
public class TrainCliTests
{
    private TempFolder temp = null!;
    private string model = null!;

    [SetUp]
    public void SetUp()
    {
        temp = new TempFolder();
        model = DemoModel.CreateFolder(Path.Combine(temp.Path, "model"), seed: 1, hidden: 32).Path;
        File.WriteAllLines(temp.File("train.tsv"), new[] { "sentence\tlabel" }.Concat(NegationTask.Make(64, 1).Select(e => $"{e.Text}\t{e.Label}")));
        File.WriteAllLines(temp.File("dev.tsv"), new[] { "sentence\tlabel" }.Concat(NegationTask.Make(16, 2).Select(e => $"{e.Text}\t{e.Label}")));
    }

    [TearDown] public void TearDown() => temp.Dispose();

    [Test]
    public void TrainThenEvalThenPredict()
    {
        var run = temp.File("run");
        var r = EngineProcess.Run("train", "--model", model, "--train", temp.File("train.tsv"), "--eval", temp.File("dev.tsv"), "--task", "sst2",
            "--steps", "4", "--batch", "16", "--lr", "1e-3", "--out", run);
        Assert.That(r.Exit, Is.EqualTo(0), r.Err);
        Assert.That(r.Out, Does.Contain("done: 4 steps").And.Contain("tokens/s"));
        var eval = JsonSerializer.Deserialize<Dictionary<string, double>>(File.ReadAllText(Path.Combine(run, Trainer.EvalFile)))!;
        Assert.That(eval.Keys, Does.Contain("accuracy"));
        Assert.That(File.ReadAllLines(Path.Combine(run, Trainer.MetricsFile)), Is.Not.Empty);

        r = EngineProcess.Run("eval", "--model", Path.Combine(run, Trainer.BestCheckpoint), "--data", temp.File("dev.tsv"), "--task", "sst2");
        Assert.That(r.Exit, Is.EqualTo(0), r.Err);
        Assert.That(r.Out, Does.Contain("accuracy"));

        var predictions = temp.File("pred.jsonl");
        r = EngineProcess.Run("predict", "--model", Path.Combine(run, Trainer.BestCheckpoint), "--data", temp.File("dev.tsv"), "--task", "sst2", "--out", predictions);
        Assert.That(r.Exit, Is.EqualTo(0), r.Err);
        var lines = File.ReadAllLines(predictions);
        Assert.That(lines, Has.Length.EqualTo(16));
        using var first = JsonDocument.Parse(lines[0]);
        Assert.That(first.RootElement.GetProperty("label").GetString(), Is.AnyOf("negative", "positive"));
        Assert.That(first.RootElement.GetProperty("probabilities").EnumerateObject().Sum(p => p.Value.GetDouble()), Is.EqualTo(1.0).Within(1e-5));
    }

    [TestCase("full")]
    [TestCase("lora")]
    [TestCase("prefix")]
    [TestCase("dora")]
    [TestCase("ia3")]
    public void TwoProcessesWithOneSeedLogTheSameLosses(string method)
    {
        string[] Losses(string run)
        {
            string[] own = method == "prefix" ? ["--prefix-length", "4"] : [];
            var r = EngineProcess.Run(["train", "--model", model, "--train", temp.File("train.tsv"), "--task", "sst2", "--method", method, .. own,
                "--epochs", "2", "--batch", "16", "--lr", "1e-3", "--seed", "9", "--log-every", "1", "--out", temp.File(run)]);
            Assert.That(r.Exit, Is.EqualTo(0), r.Err);
            return File.ReadAllLines(Path.Combine(temp.File(run), Trainer.MetricsFile))
                .Select(l => JsonDocument.Parse(l).RootElement).Where(e => e.TryGetProperty("loss", out _))
                .Select(e => e.GetProperty("loss").GetDouble().ToString("R")).ToArray();
        }
        var a = Losses("a");
        Assert.That(a, Has.Length.EqualTo(8), "2 epochs of 4 batches");
        Assert.That(Losses("b"), Is.EqualTo(a), "data order, dropout and the method's initialisation are fixed functions of the seed, in any process");
    }

    /// <summary>The tiny Llama fixture (pad id 0) with a WordPiece vocab.txt whose [PAD] is id 0 too.</summary>
    private string LlamaFolder()
    {
        var dir = temp.File("llama");
        Directory.CreateDirectory(dir);
        var fixture = Path.Combine(TestContext.CurrentContext.TestDirectory, "Fixtures", "llama_tiny", "llama");
        foreach (var f in new[] { "config.json", "model.safetensors" }) File.Copy(Path.Combine(fixture, f), Path.Combine(dir, f));
        File.WriteAllLines(Path.Combine(dir, "vocab.txt"), NegationTask.Vocabulary());
        return dir;
    }

    [Test]
    public void ALlamaFolderTrainsEvaluatesAndPredictsThroughTheSameCommands()
    {
        var dir = LlamaFolder();
        var run = temp.File("llama-run");
        var r = EngineProcess.Run("train", "--model", dir, "--train", temp.File("train.tsv"), "--eval", temp.File("dev.tsv"), "--task", "sst2",
            "--steps", "3", "--batch", "16", "--lr", "1e-3", "--out", run);
        Assert.That(r.Exit, Is.EqualTo(0), r.Err);
        Assert.That(r.Err, Does.Contain("score.weight"), "the 3-label head was re-initialised for 2 labels, with a note");
        r = EngineProcess.Run("eval", "--model", Path.Combine(run, Trainer.BestCheckpoint), "--data", temp.File("dev.tsv"), "--task", "sst2");
        Assert.That(r.Exit, Is.EqualTo(0), r.Err);
        r = EngineProcess.Run("predict", "--model", Path.Combine(run, Trainer.BestCheckpoint), "--data", temp.File("dev.tsv"), "--task", "sst2", "--out", temp.File("llama.jsonl"));
        Assert.That(r.Exit, Is.EqualTo(0), r.Err);
        Assert.That(File.ReadAllLines(temp.File("llama.jsonl")), Has.Length.EqualTo(16));
    }

    [Test]
    public void ALlamaFolderTrainsOnSentencePairs()
    {
        // A pair's second part gets token type 1 from the tokenizer; Llama takes no token types, so
        // the batches must not pass them (before the fix: "llama: token_type_ids are not used").
        var dir = LlamaFolder();
        string Pairs(int count, int seed) => string.Join("\n", new[] { "index\tsentence1\tsentence2\tlabel" }.Concat(NegationTask.Make(count, seed)
            .Select((e, i) => $"{i}\t{e.Text}\tthe movie was good\t{(e.Label == 1 ? "entailment" : "not_entailment")}"))) + "\n";
        File.WriteAllText(temp.File("rte-train.tsv"), Pairs(32, 1));
        File.WriteAllText(temp.File("rte-dev.tsv"), Pairs(8, 2));
        var run = temp.File("llama-pairs");
        var r = EngineProcess.Run("train", "--model", dir, "--train", temp.File("rte-train.tsv"), "--eval", temp.File("rte-dev.tsv"), "--task", "rte",
            "--steps", "2", "--batch", "16", "--lr", "1e-3", "--out", run);
        Assert.That(r.Exit, Is.EqualTo(0), r.Err);
        Assert.That(File.Exists(Path.Combine(run, Trainer.EvalFile)));
    }

    [Test]
    public void BadInputIsOneLineAndNothingIsWritten()
    {
        File.AppendAllText(temp.File("train.tsv"), "a line without a label column\n");
        var run = temp.File("run");
        var line = EngineProcess.AssertUserError(EngineProcess.Run("train", "--model", model, "--train", temp.File("train.tsv"), "--task", "sst2", "--steps", "2", "--out", run));
        Assert.That(line, Does.Contain("train.tsv:66"));
        Assert.That(Directory.Exists(Path.Combine(run, Trainer.LastCheckpoint)), Is.False);

        line = EngineProcess.AssertUserError(EngineProcess.Run("train", "--model", temp.File("nowhere"), "--train", temp.File("dev.tsv"), "--out", run));
        Assert.That(line, Does.Contain("nowhere"));
        line = EngineProcess.AssertUserError(EngineProcess.Run("train", "--model", model, "--train", temp.File("dev.tsv"), "--lr", "-1", "--out", run));
        Assert.That(line, Does.Contain("learning rate"));
        line = EngineProcess.AssertUserError(EngineProcess.Run("eval", "--model", model, "--data", temp.File("missing.tsv"), "--task", "sst2"));
        Assert.That(line, Does.Contain("missing.tsv"));
    }

    [Test]
    public void TrainSampleTrainsOnTheDrawnSubset()
    {
        var run = temp.File("run");
        var r = EngineProcess.Run("train", "--model", model, "--train", temp.File("train.tsv"), "--task", "sst2", "--train-sample", "20", "--sample-seed", "5",
            "--epochs", "1", "--batch", "10", "--out", run);
        Assert.That(r.Exit, Is.EqualTo(0), r.Err);
        Assert.That(r.Out, Does.Contain("data: 20 training examples").And.Contain("sample of 20, seed 5").And.Contain("done: 2 steps"));
        var line = EngineProcess.AssertUserError(EngineProcess.Run("train", "--model", model, "--train", temp.File("train.tsv"), "--task", "sst2",
            "--train-sample", "0", "--out", temp.File("run0")));
        Assert.That(line, Does.Contain("train.tsv").And.Contain("at least 1"));
    }

    [Test]
    public void EvalEveryZeroEvaluatesOnlyAfterTheLastStep()
    {
        foreach (var (every, evaluations) in new[] { ("0", 1), ("3", 4) })   // 3 epochs of 2 steps: 0 → step 6 only; 3 → epoch ends 2, 4, 6 and step 3
        {
            var run = temp.File("run" + every);
            var r = EngineProcess.Run("train", "--model", model, "--train", temp.File("train.tsv"), "--eval", temp.File("dev.tsv"), "--task", "sst2",
                "--epochs", "3", "--batch", "32", "--eval-every", every, "--out", run);
            Assert.That(r.Exit, Is.EqualTo(0), r.Err);
            var evals = File.ReadAllLines(Path.Combine(run, Trainer.MetricsFile)).Where(l => l.Contains("\"eval\"")).ToList();
            Assert.That(evals, Has.Count.EqualTo(evaluations), every);
            Assert.That(evals[^1], Does.Contain("\"step\":6"));
            Assert.That(File.Exists(Path.Combine(run, Trainer.EvalFile)), Is.True);
        }
        var line = EngineProcess.AssertUserError(EngineProcess.Run("train", "--model", model, "--train", temp.File("train.tsv"), "--eval-every", "-1", "--out", temp.File("bad")));
        Assert.That(line, Does.Contain("eval-every"));
    }

    [Test]
    public void MethodMistakesAreOneLine()
    {
        var run = temp.File("run");
        string[] Train(params string[] more) => ["train", "--model", model, "--train", temp.File("dev.tsv"), "--task", "sst2", "--batch", "16", "--out", run, .. more];
        var line = EngineProcess.AssertUserError(EngineProcess.Run(Train("--method", "lorax", "--steps", "1")));
        Assert.That(line, Does.Contain("unknown method 'lorax'").And.Contain("lora"));
        line = EngineProcess.AssertUserError(EngineProcess.Run(Train("--method", "prefix", "--lora-r", "4", "--steps", "1")));
        Assert.That(line, Does.Contain("--lora-r is an option of --method lora").And.Contain("not of --method prefix"));
        line = EngineProcess.AssertUserError(EngineProcess.Run(Train("--prompt-length", "4", "--steps", "1")));
        Assert.That(line, Does.Contain("--prompt-length is an option of --method prompt").And.Contain("not of --method full"));
        line = EngineProcess.AssertUserError(EngineProcess.Run(Train("--method", "lora", "--lora-r", "four", "--steps", "1")));
        Assert.That(line, Does.Contain("--lora-r 'four'").And.Contain("integer"));
        Assert.That(Directory.Exists(run), Is.False, "nothing written");

        // An adapter of one method given to another.
        var r = EngineProcess.Run(Train("--method", "lora", "--steps", "1"));
        Assert.That(r.Exit, Is.EqualTo(0), r.Err);
        var adapter = Path.Combine(run, Trainer.LastCheckpoint);
        line = EngineProcess.AssertUserError(EngineProcess.Run("train", "--model", model, "--train", temp.File("dev.tsv"), "--task", "sst2", "--method", "prefix",
            "--adapter", adapter, "--steps", "1", "--out", temp.File("run2")));
        Assert.That(line, Does.Contain("a lora adapter trains with --method lora, not prefix"));
        // An adapter of a kind no engine method reads.
        var config = Path.Combine(adapter, Models.Peft.AdapterFiles.ConfigFile);
        File.WriteAllText(config, File.ReadAllText(config).Replace("\"LORA\"", "\"LOHA\""));
        line = EngineProcess.AssertUserError(EngineProcess.Run("eval", "--model", model, "--adapter", adapter, "--data", temp.File("dev.tsv"), "--task", "sst2"));
        Assert.That(line, Does.Contain("peft_type 'LOHA' is not supported"));
    }
}
