using System.Diagnostics;
using System.Text.Json.Nodes;
using Engine.Models.Training;
using NUnit.Framework;

namespace Engine.Tests.Reliability;

/// <summary>
/// `engine train` killed with SIGKILL at random moments (seeded), then continued with
/// `--resume OUT/checkpoint-last` (or started again with --overwrite when no checkpoint was
/// written yet), until it finishes: the final checkpoint (model, optimizer state, step, best
/// metric) must equal an uninterrupted run's bit for bit, and every interrupted state must load.
/// Kill moments are drawn between 20% and 100% of the uninterrupted run's own time, so they
/// land in start-up, steps, evaluations and checkpoint writes (every step writes one here).
/// The suite runs <see cref="Kills"/> kills per case (ENGINE_KILL_CYCLES raises it for a longer run).
/// </summary>
public class KillResumeTests
{
    public static int Kills => int.TryParse(Environment.GetEnvironmentVariable("ENGINE_KILL_CYCLES"), out var n) ? n : 2;

    private DemoRunFolder temp = null!;
    private string model = null!;

    [SetUp]
    public void SetUp()
    {
        temp = new DemoRunFolder();
        model = temp.Model;
        temp.Tsv("train.tsv", 40, 1);
        temp.Tsv("dev.tsv", 16, 2);
    }

    [TearDown] public void TearDown() => temp.Dispose();

    private string[] Args(string outDir, string[] extra) =>
    [
        "train", "--model", model, "--train", temp.File("train.tsv"), "--eval", temp.File("dev.tsv"), "--task", "sst2",
        "--batch", "8", "--lr", "3e-3", "--seed", "5", "--steps", Steps.ToString(), "--eval-every", "1", "--log-every", "1", "--out", outDir, .. extra,
    ];

    // Each case combines several features so that the whole fixture stays within about a minute.
    [TestCase("full + grad accumulation + length bucketing + bf16", new[] { "--method", "full", "--grad-accum", "2", "--bucket", "--dtype", "bf16" })]
    [TestCase("LoRA + early stopping", new[] { "--method", "lora", "--lora-r", "4", "--early-stopping", "2" })]
    [TestCase("prefix tuning + cosine schedule", new[] { "--method", "prefix", "--prefix-length", "4", "--schedule", "cosine" })]
    [TestCase("prompt tuning", new[] { "--method", "prompt", "--prompt-length", "4" })]
    [TestCase("BitFit + depth-wise pooling", new[] { "--method", "bitfit", "--pooling", "depthwise" })]
    public void KilledAtRandomMomentsThenResumedEqualsTheUninterruptedRun(string what, string[] extra)
    {
        var reference = temp.File("reference");
        var clock = Stopwatch.StartNew();
        var r = EngineProcess.Run(Args(reference, extra));
        Assert.That(r.Exit, Is.EqualTo(0), r.Err);
        double runSeconds = clock.Elapsed.TotalSeconds;

        var run = temp.File("killed");
        var last = Path.Combine(run, Trainer.LastCheckpoint);
        var rng = new Random(what.Length * 7919 + 18);
        int kills = 0, resumes = 0;
        for (int attempt = 0; ; attempt++)
        {
            Assert.That(attempt, Is.LessThan(Kills + 3), "the run did not finish");
            Engine.Models.AtomicFolder.Recover(last);
            bool resume = Directory.Exists(last);
            if (resume) resumes++;
            var args = Args(run, resume ? [.. extra, "--resume", last] : [.. extra, "--overwrite"]);
            if (kills >= Kills)
            {
                r = EngineProcess.Run(args);
                Assert.That(r.Exit, Is.EqualTo(0), r.Err);
                break;
            }
            using var p = Process.Start(EngineProcess.StartInfo(args))!;
            var stdout = p.StandardOutput.ReadToEndAsync();
            var stderr = p.StandardError.ReadToEndAsync();
            // The first kill at a random moment of the first third of the run (start-up or the first
            // steps); the others a random 0-150 ms after a randomly chosen later step was logged
            // (often mid-evaluation or mid-checkpoint). Step k is logged after the checkpoint of
            // step k - 1 is written, so a kill after step 2 or later leaves one to resume from.
            bool finished;
            if (kills == 0) finished = p.WaitForExit(TimeSpan.FromSeconds(runSeconds * 0.33 * rng.NextDouble()));
            else
            {
                int target = Math.Min(Steps - 2, Math.Max(2, LoggedSteps(run) + 1 + rng.Next(2)));
                while (!(finished = p.HasExited) && LoggedSteps(run) < target) Thread.Sleep(10);
                finished = finished || p.WaitForExit(rng.Next(150));
            }
            if (finished)
            {
                p.WaitForExit();
                Assert.That(p.ExitCode, Is.EqualTo(0), stderr.Result);
                break;
            }
            p.Kill(entireProcessTree: true); // SIGKILL
            p.WaitForExit();
            kills++;
        }
        TestContext.Out.WriteLine($"{what}: {kills} kills, {resumes} runs resumed from a checkpoint; uninterrupted run {runSeconds:F1} s");
        Assert.That(resumes, Is.GreaterThan(0), "no run was resumed: the kills proved nothing");

        foreach (var checkpoint in new[] { Trainer.LastCheckpoint, Trainer.BestCheckpoint })
            foreach (var file in new[] { "model.safetensors", Trainer.OptimizerFile })
                Assert.That(File.ReadAllBytes(Path.Combine(run, checkpoint, file)), Is.EqualTo(File.ReadAllBytes(Path.Combine(reference, checkpoint, file))),
                    $"{checkpoint}/{file} differs from the uninterrupted run's");
        JsonNode State(string dir) => JsonNode.Parse(File.ReadAllText(Path.Combine(dir, Trainer.LastCheckpoint, Trainer.StateFile)))!;
        foreach (var key in new[] { "step", "best_metric", "best_step", "evals_without_improvement", "optimizer_steps", "dropout_counter" })
            Assert.That(State(run)[key]?.ToJsonString(), Is.EqualTo(State(reference)[key]?.ToJsonString()), key);
        Assert.That(Losses(run), Is.EqualTo(Losses(reference)), "metrics.jsonl: the same loss at every step");
        Assert.That(Directory.GetDirectories(run).Select(Path.GetFileName), Is.EquivalentTo(new[] { Trainer.LastCheckpoint, Trainer.BestCheckpoint }),
            "no temporary or old checkpoint folders are left behind");
    }

    private const int Steps = 6;

    /// <summary>The newest step metrics.jsonl has a line for (0 when none).</summary>
    private static int LoggedSteps(string run)
    {
        try
        {
            using var stream = new FileStream(Path.Combine(run, Trainer.MetricsFile), FileMode.Open, FileAccess.Read, FileShare.ReadWrite | FileShare.Delete);
            var lines = new StreamReader(stream).ReadToEnd().Split('\n', StringSplitOptions.RemoveEmptyEntries);
            return lines.Select(l => { try { return JsonNode.Parse(l)?["step"]?.GetValue<int>() ?? 0; } catch (System.Text.Json.JsonException) { return 0; } })
                .DefaultIfEmpty(0).Max();
        }
        catch (IOException) { return 0; }
    }

    private static string[] Losses(string run) =>
        File.ReadAllLines(Path.Combine(run, Trainer.MetricsFile)).Select(l => JsonNode.Parse(l)!).Where(n => n["loss"] is not null)
            .Select(n => $"{n["step"]}: {n["loss"]!.ToJsonString()}").ToArray();
}
