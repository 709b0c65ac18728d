using System.Text.Json.Nodes;
using Engine.Models.Demo;
using NUnit.Framework;

namespace Engine.Tests.Distributed;

/// <summary>
/// `mpirun -np 2 engine pretrain` against one process with the same global batch
/// (docs/scaling.md). A one-layer BERT without dropout on a small corpus: each rank masks the
/// whole global batch as one process does, trains on its rows and weights its loss by its share
/// of the global batch's masked positions (the two halves of a batch have different numbers of
/// masked tokens, so a weight by rows would be wrong); the held-out evaluation is sharded over
/// the ranks and its sums added. Needs Open MPI's mpirun (see <see cref="MpiTrainingTests"/>).
/// </summary>
[NonParallelizable]
public class MpiPretrainingTests
{
    private TempFolder temp = null!;

    [SetUp]
    public void SetUp()
    {
        Mpirun.Require();
        temp = new TempFolder();
        File.WriteAllText(temp.File("tiny.json"),
            """{"model_type": "bert", "num_hidden_layers": 1, "hidden_size": 32, "num_attention_heads": 2, "intermediate_size": 64, "max_position_embeddings": 64, "hidden_dropout_prob": 0, "attention_probs_dropout_prob": 0}""");
        var examples = NegationTask.Make(160, 2);
        var words = examples.SelectMany(e => e.Text.Split(' ')).Distinct().Order(StringComparer.Ordinal);
        File.WriteAllLines(temp.File("vocab.txt"), new[] { "[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]" }.Concat(words));
        File.WriteAllLines(temp.File("corpus.txt"), examples.SelectMany(e => new[] { e.Text, "" }));
    }

    [TearDown] public void TearDown() => temp?.Dispose();

    private string[] Pretrain(string outDir, int batch, int steps, string? resume = null) =>
    [
        "pretrain", "--arch", "bert", "--config", temp.File("tiny.json"), "--tokenizer", temp.File("vocab.txt"), "--corpus", temp.File("corpus.txt"),
        "--steps", steps.ToString(), "--batch", batch.ToString(), "--seq", "16", "--held-out-every", "4", "--eval-every", "3", "--save-every", "3",
        "--log-every", "1", "--lr", "2e-3", "--schedule", "constant", "--warmup", "0", "--seed", "3", "--out", outDir,
        .. resume is null ? Array.Empty<string>() : ["--resume", resume],
    ];

    private static List<JsonNode> Log(string outDir) => File.ReadAllLines(Path.Combine(outDir, "metrics.jsonl")).Select(l => JsonNode.Parse(l)!).ToList();

    /// <summary>Step → training loss.</summary>
    private static Dictionary<int, double> Losses(string outDir) =>
        Log(outDir).Where(n => n["loss"] is not null).ToDictionary(n => n["step"]!.GetValue<int>(), n => n["loss"]!.GetValue<double>());

    /// <summary>Step → the evaluation's metrics.</summary>
    private static Dictionary<int, JsonObject> Evals(string outDir) =>
        Log(outDir).Where(n => n["eval"] is not null).ToDictionary(n => n["step"]!.GetValue<int>(), n => n["eval"]!.AsObject());

    /// <summary>Float32 sums in another order (see <see cref="MpiTrainingTests"/>): measured differences
    /// are below 1.2e-7 of the loss (training) and 3e-9 (held-out loss), so 1e-5 of each value is far above
    /// them; a loss weighted by rows instead of masked positions (a planted bug) moves step 1's loss by
    /// 2.3e-4 and fails.</summary>
    private static void AssertSameLosses(Dictionary<int, double> expected, Dictionary<int, double> actual, IEnumerable<int> steps)
    {
        foreach (int s in steps)
        {
            Assert.That(actual.ContainsKey(s), $"step {s} logged");
            Assert.That(actual[s], Is.EqualTo(expected[s]).Within(1e-5 * Math.Abs(expected[s])), $"loss at step {s}");
        }
    }

    /// <param name="bucketMb">ENGINE_BUCKET_MB: null, the default 25 MiB (one bucket for this model,
    /// started when the backward ends); 0.002 (2 KiB): each weight matrix a bucket of its own, most
    /// started during the backward.</param>
    [TestCase(null)]
    [TestCase("0.002")]
    public void TwoRanksMatchOneProcessWithTheSameGlobalBatch(string? bucketMb)
    {
        var single = temp.File("single");
        Mpirun.Start([.. Mpirun.EngineCommand(), .. Pretrain(single, 8, 6)]).AssertSucceeded();
        var two = temp.File("two");
        var r = Mpirun.Run(2, Pretrain(two, 4, 6), bucketMb is null ? null : new Dictionary<string, string> { ["ENGINE_BUCKET_MB"] = bucketMb });
        r.AssertSucceeded();
        Assert.That(r.Err, Does.Contain("ranks: 2 (MPI"));
        Assert.That(r.Out.Split('\n').Count(l => l.StartsWith("done: step 6")), Is.EqualTo(1), "only rank 0 prints\n" + r.Out);
        Assert.That(r.Out, Does.Contain("6 steps x 2 ranks x 4 rows x 16 tokens"));
        AssertSameLosses(Losses(single), Losses(two), Enumerable.Range(1, 6));

        // The sharded evaluation scores the same positions and adds up to one process's result.
        var (expected, actual) = (Evals(single), Evals(two));
        Assert.That(actual.Keys, Is.EqualTo(new[] { 3, 6 }));
        foreach (var (step, e) in expected)
            foreach (var (metric, value) in e)
                Assert.That(actual[step][metric]!.GetValue<double>(), Is.EqualTo(value!.GetValue<double>()).Within(1e-5 * Math.Abs(value.GetValue<double>())), $"{metric} at step {step}");
        Assert.That(File.Exists(Path.Combine(two, "loss.png")) && File.Exists(Path.Combine(two, "checkpoint-last", "pretrain_state.json")));
    }

    [Test]
    public void AnInterruptedTwoRankRunResumesWithOneOrTwoRanks()
    {
        var single = temp.File("single");
        Mpirun.Start([.. Mpirun.EngineCommand(), .. Pretrain(single, 8, 6)]).AssertSucceeded();
        // A job cut after step 3: rank 1 is told to stop there (its run ends after its step-3
        // evaluation), rank 0 writes checkpoint-last at step 3 and then waits for rank 1 in vain
        // until the collective timeout (5 s) stops the job.
        var cut = temp.File("cut");
        var rank0 = Pretrain(cut, 4, 6);
        var rank1 = Pretrain(cut, 4, 3);
        var r = Mpirun.Run([[.. Mpirun.EngineCommand(), .. rank0], [.. Mpirun.EngineCommand(), .. rank1]], timeoutSeconds: 5);
        Assert.That(r.Exit, Is.Not.EqualTo(0), "the job was cut\n" + r.Out + r.Err);
        var checkpoint = Path.Combine(cut, "checkpoint-last");
        Assert.That(JsonNode.Parse(File.ReadAllText(Path.Combine(checkpoint, "pretrain_state.json")))!["step"]!.GetValue<int>(), Is.EqualTo(3));

        foreach (int ranks in new[] { 1, 2 })
        {
            var resumed = temp.File($"resumed{ranks}");
            Directory.CreateDirectory(resumed);
            File.Copy(Path.Combine(cut, "metrics.jsonl"), Path.Combine(resumed, "metrics.jsonl"));
            var args = Pretrain(resumed, 8 / ranks, 6, resume: checkpoint);
            (ranks == 1 ? Mpirun.Start([.. Mpirun.EngineCommand(), .. args]) : Mpirun.Run(2, args)).AssertSucceeded();
            AssertSameLosses(Losses(single), Losses(resumed), Enumerable.Range(1, 6));
        }
    }
}
