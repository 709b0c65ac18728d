using System.Diagnostics;
using System.Text.Json.Nodes;
using Engine.Models.Bert;
using Engine.Models.Demo;
using NUnit.Framework;

namespace Engine.Tests.Distributed;

/// <summary>
/// `mpirun -np 2 engine train` against one process with the same global batch (docs/scaling.md).
/// The model is the demo's BERT without dropout (each rank draws its own dropout masks, so with
/// dropout the runs would differ by design); 69 examples make the epoch's last global batch short
/// (5 examples: shards of 2 and 3), which checks that each rank's loss is weighted by its share.
/// Needs Open MPI's mpirun: skipped without it, except where ENGINE_REQUIRE_MPI=1 (.ci/run sets it
/// after installing Open MPI), where it fails instead. Runs under nice with two ranks on the
/// 2-core machine (--oversubscribe).
/// </summary>
[NonParallelizable]
public class MpiTrainingTests
{
    private TempFolder temp = null!;
    private string model = null!, data = null!, evalData = null!;

    [SetUp]
    public void SetUp()
    {
        Mpirun.Require();
        temp = new TempFolder();
        model = RandomBert.Create(temp.File("model"), NegationTask.Vocabulary(), seed: 5, hidden: 32, layers: 2, heads: 4, maxPositions: 64,
            DemoModel.LabelNames, dropout: 0, intermediate: 64).Path;
        data = temp.File("train.tsv");
        File.WriteAllLines(data, new[] { "sentence\tlabel" }.Concat(NegationTask.Make(69, 3).Select(e => $"{e.Text}\t{e.Label}")));
        // 37 evaluation examples: shards of 18 and 19, each rank scoring its own.
        evalData = temp.File("eval.tsv");
        File.WriteAllLines(evalData, new[] { "sentence\tlabel" }.Concat(NegationTask.Make(37, 4).Select(e => $"{e.Text}\t{e.Label}")));
    }

    [TearDown] public void TearDown() => temp?.Dispose();

    private string[] Train(string outDir, int batch, int accum, int steps, string? resume = null) =>
    [
        "train", "--model", model, "--train", data, "--eval", evalData, "--task", "sst2", "--batch", batch.ToString(), "--grad-accum", accum.ToString(),
        "--steps", steps.ToString(), "--lr", "2e-3", "--schedule", "constant", "--warmup", "0", "--seed", "7", "--log-every", "1",
        "--eval-every", "3", "--out", outDir, .. resume is null ? Array.Empty<string>() : ["--resume", resume],
    ];

    /// <summary>Step number → training loss, from a run's metrics.jsonl.</summary>
    private static Dictionary<int, double> Losses(string outDir) =>
        File.ReadAllLines(Path.Combine(outDir, "metrics.jsonl")).Select(l => JsonNode.Parse(l)!)
            .Where(n => n["loss"] is not null).ToDictionary(n => n["step"]!.GetValue<int>(), n => n["loss"]!.GetValue<double>());

    private static JsonObject EvalFile(string outDir) => JsonNode.Parse(File.ReadAllText(Path.Combine(outDir, "eval.json")))!.AsObject();

    /// <summary>Step → the evaluation's metrics, from a run's metrics.jsonl.</summary>
    private static Dictionary<int, JsonObject> Evals(string outDir) =>
        File.ReadAllLines(Path.Combine(outDir, "metrics.jsonl")).Select(l => JsonNode.Parse(l)!)
            .Where(n => n["eval"] is not null).ToDictionary(n => n["step"]!.GetValue<int>(), n => n["eval"]!.AsObject());

    /// <summary>The same metrics within 1e-6 of each (each example's logits differ from one process's
    /// only by float32 rounding, the batches being padded differently; the metrics are counts).</summary>
    private static void AssertSameMetrics(JsonObject expected, JsonObject actual, string what)
    {
        Assert.That(actual.Select(kv => kv.Key), Is.EquivalentTo(expected.Select(kv => kv.Key)).And.Not.Empty, what);
        foreach (var (metric, value) in expected)
            Assert.That(actual[metric]!.GetValue<double>(), Is.EqualTo(value!.GetValue<double>()).Within(1e-6 * Math.Abs(value.GetValue<double>())), $"{metric} in the {what}");
    }

    /// <summary>Float32 sums in another order: the ranks' partial gradients add up in a different
    /// order than one process's, and six AdamW steps carry that forward. 1e-4 of the loss is
    /// far above that (measured differences are below 1e-7 relative) and far below what a wrong
    /// shard or a wrong weight makes (a changed example moves the loss by percents).</summary>
    private static void AssertSameLosses(Dictionary<int, double> expected, Dictionary<int, double> actual, IEnumerable<int> steps)
    {
        foreach (int s in steps)
        {
            Assert.That(actual.ContainsKey(s), $"step {s} logged");
            Assert.That(actual[s], Is.EqualTo(expected[s]).Within(1e-4 * Math.Abs(expected[s])), $"loss at step {s}");
        }
    }

    [TestCase(8, 1)]
    [TestCase(4, 2)]
    public void TwoRanksMatchOneProcessWithTheSameGlobalBatch(int perRank, int accum)
    {
        var single = temp.File("single");
        Engine(Train(single, 2 * perRank, accum, 6)).AssertSucceeded();
        var two = temp.File("two");
        var r = Mpirun.Run(2, Train(two, perRank, accum, 6));
        r.AssertSucceeded();
        Assert.That(r.Err, Does.Contain("ranks: 2 (MPI"));
        Assert.That(r.Out.Split('\n').Count(l => l.StartsWith("done: 6 steps")), Is.EqualTo(1), "only rank 0 prints\n" + r.Out);
        AssertSameLosses(Losses(single), Losses(two), Enumerable.Range(1, 6));
        Assert.That(File.Exists(Path.Combine(two, "loss.png")));
        // The evaluation is sharded (each rank scores its 18 or 19 examples) and its logits gathered:
        // eval.json and every logged evaluation match one process's.
        AssertSameMetrics(EvalFile(single), EvalFile(two), "eval.json");
        var (expected, actual) = (Evals(single), Evals(two));
        Assert.That(actual.Keys, Is.EqualTo(expected.Keys).And.Not.Empty);
        foreach (var step in expected.Keys) AssertSameMetrics(expected[step], actual[step], $"evaluation at step {step}");
    }

    [Test]
    public void SmallBucketsOverlappingTheBackwardGiveTheSameRun()
    {
        // 2 KiB buckets: each weight matrix of the demo BERT (4-8 KiB) is a bucket of its own and the
        // small vectors between them share one, most started while the backward still runs
        // (DataParallel.OverlapWithBackward); the default 25 MiB is one bucket,
        // started when the backward ends. With two ranks each sum is the same float32 addition
        // either way, so the runs are identical, not just close.
        var one = temp.File("one-bucket");
        Mpirun.Run(2, Train(one, 8, 2, 4)).AssertSucceeded();
        var many = temp.File("many-buckets");
        Mpirun.Run(2, Train(many, 8, 2, 4), new Dictionary<string, string> { ["ENGINE_BUCKET_MB"] = "0.002" }).AssertSucceeded();
        Assert.That(Losses(many), Is.EqualTo(Losses(one)));
        Assert.That(File.ReadAllText(Path.Combine(many, "eval.json")), Is.EqualTo(File.ReadAllText(Path.Combine(one, "eval.json"))));
    }

    [Test]
    public void ARunResumesWithAnotherNumberOfRanks()
    {
        var single = temp.File("single");
        Engine(Train(single, 16, 1, 6)).AssertSucceeded();
        // One process for 3 steps, then two ranks from its checkpoint to step 6 …
        var grown = temp.File("grown");
        Engine(Train(grown, 16, 1, 3)).AssertSucceeded();
        Mpirun.Run(2, Train(grown, 8, 1, 6, resume: Path.Combine(grown, "checkpoint-last"))).AssertSucceeded();
        AssertSameLosses(Losses(single), Losses(grown), Enumerable.Range(1, 6));
        // … and two ranks for 3 steps, then one process to step 6.
        var shrunk = temp.File("shrunk");
        Mpirun.Run(2, Train(shrunk, 8, 1, 3)).AssertSucceeded();
        Engine(Train(shrunk, 16, 1, 6, resume: Path.Combine(shrunk, "checkpoint-last"))).AssertSucceeded();
        AssertSameLosses(Losses(single), Losses(shrunk), Enumerable.Range(1, 6));
    }

    [Test]
    public void ARankThatFailsStopsTheOthers()
    {
        // MPMD launch: rank 0 trains normally; rank 1 gets a training file that does not exist.
        var good = Train(temp.File("run"), 8, 1, 6);
        var bad = good.Select(a => a == data ? temp.File("missing.tsv") : a).ToArray();
        var clock = Stopwatch.StartNew();
        var r = Mpirun.Run([[.. Mpirun.EngineCommand(), .. good], [.. Mpirun.EngineCommand(), .. bad]]);
        Assert.That(r.Exit, Is.Not.EqualTo(0), r.Err);
        Assert.That(r.Err, Does.Contain("engine: rank 1 of 2:").And.Contain("missing.tsv"));
        Assert.That(clock.Elapsed.TotalSeconds, Is.LessThan(100), "the job stopped instead of waiting");
    }

    [Test]
    public void AKilledRankStopsTheOthers()
    {
        // Rank 1 is killed (SIGKILL) once the run has logged step 2; rank 0 must not wait forever.
        var run = temp.File("run");
        var args = Train(run, 8, 1, 100_000);
        var clock = Stopwatch.StartNew();
        var r = Mpirun.Run([[.. Mpirun.EngineCommand(), .. args], SignalAfterStep2("KILL", run, args)]);
        Assert.That(r.Exit, Is.Not.EqualTo(0), r.Out + r.Err);
        Assert.That(r.Err, Does.Contain("signal 9").Or.Contain("137"), "mpirun says the rank was killed (signal 9, exit status 128 + 9)");
        Assert.That(clock.Elapsed.TotalSeconds, Is.LessThan(100), "the job stopped instead of waiting");
    }

    [Test]
    public void AHungRankTimesOutWithALine()
    {
        // Rank 1 is stopped (SIGSTOP) once the run has logged step 2: alive, silent. Rank 0's
        // next collective waits ENGINE_COLLECTIVE_TIMEOUT (5 s here) and stops the job with a line.
        var run = temp.File("run");
        var args = Train(run, 8, 1, 100_000);
        var r = Mpirun.Run([[.. Mpirun.EngineCommand(), .. args], SignalAfterStep2("STOP", run, args)], timeoutSeconds: 5);
        Assert.That(r.Exit, Is.Not.EqualTo(0), r.Out + r.Err);
        Assert.That(r.Err, Does.Contain("engine: rank 0 of 2: ").And.Contain("got no answer from the other ranks in 5 s"));
    }

    /// <summary>Rank 1's command line: the engine, sent SIG<paramref name="signal"/> once rank 0 has
    /// logged step 2 (so both ranks are past start-up and inside the training loop).</summary>
    private static string[] SignalAfterStep2(string signal, string run, string[] args) =>
    [
        "bash", "-c", $"\"$@\" & pid=$!; until grep -q '\"step\":2,' '{run}/metrics.jsonl' 2>/dev/null; do sleep 0.2; done; kill -{signal} $pid; wait $pid",
        "rank1", .. Mpirun.EngineCommand(), .. args,
    ];

    private static Mpirun.Result Engine(string[] args) => Mpirun.Start([.. Mpirun.EngineCommand(), .. args]);
}

/// <summary>Runs commands (and mpirun jobs) under nice, with a time limit.</summary>
internal static class Mpirun
{
    public sealed record Result(int Exit, string Out, string Err)
    {
        public void AssertSucceeded() => Assert.That(Exit, Is.EqualTo(0), Out + Err);
    }

    public static void Require()
    {
        if (Find() is not null) return;
        const string reason = "Open MPI's mpirun is not installed (Debian: apt-get install openmpi-bin libopenmpi-dev)";
        if (Environment.GetEnvironmentVariable("ENGINE_REQUIRE_MPI") == "1") Assert.Fail(reason);
        Assert.Ignore(reason);
    }

    private static string? Find() => (Environment.GetEnvironmentVariable("PATH") ?? "").Split(':')
        .Select(d => Path.Combine(d, "mpirun")).FirstOrDefault(File.Exists);

    /// <summary>The command line that runs the built engine program.</summary>
    public static string[] EngineCommand()
    {
        var dll = EngineProcess.Dll();
        if (dll is null) Assert.Ignore("the engine program is not built (run `dotnet build` on the solution)");
        return ["dotnet", dll!];
    }

    /// <summary>mpirun -np <paramref name="ranks"/> engine ARGS, with <paramref name="environment"/> added.</summary>
    public static Result Run(int ranks, string[] args, IReadOnlyDictionary<string, string>? environment = null) =>
        Run([[.. EngineCommand(), .. args]], ranks, environment: environment);

    /// <summary>One mpirun job with one rank per command line (MPMD: "cmd0 : cmd1 : …"), or
    /// <paramref name="ranksEach"/> ranks of each.</summary>
    public static Result Run(string[][] commands, int ranksEach = 1, int timeoutSeconds = 90, IReadOnlyDictionary<string, string>? environment = null)
    {
        var line = new List<string> { "mpirun", "--allow-run-as-root", "--oversubscribe", "--bind-to", "none" };
        for (int i = 0; i < commands.Length; i++)
        {
            if (i > 0) line.Add(":");
            line.AddRange(["-np", ranksEach.ToString(), .. commands[i]]);
        }
        return Start([.. line], timeoutSeconds, environment);
    }

    public static Result Start(string[] command, int timeoutSeconds = 90, IReadOnlyDictionary<string, string>? environment = null)
    {
        var psi = new ProcessStartInfo("nice") { RedirectStandardOutput = true, RedirectStandardError = true };
        psi.ArgumentList.Add("-n");
        psi.ArgumentList.Add("10");
        foreach (var a in command) psi.ArgumentList.Add(a);
        // Containers often forbid the cross-process memory copies of Open MPI's shared-memory transport.
        psi.Environment["OMPI_MCA_btl_vader_single_copy_mechanism"] = "none";
        psi.Environment["ENGINE_COLLECTIVE_TIMEOUT"] = timeoutSeconds.ToString();
        foreach (var (name, value) in environment ?? new Dictionary<string, string>()) psi.Environment[name] = value;
        using var p = Process.Start(psi)!;
        var stdout = p.StandardOutput.ReadToEndAsync();
        var stderr = p.StandardError.ReadToEndAsync();
        if (!p.WaitForExit(240_000))
        {
            p.Kill(entireProcessTree: true);
            Assert.Fail($"{string.Join(' ', command.Take(8))} … did not finish within four minutes");
        }
        return new Result(p.ExitCode, stdout.Result, stderr.Result);
    }
}
