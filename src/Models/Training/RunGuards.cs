using Engine.Models.Tokenization;

namespace Engine.Models.Training;

/// <summary>
/// The trainer's protections against faults, kept out of the training loop (docs: README,
/// "Reliability"):
/// <list type="bullet">
/// <item>an out folder that already holds a run is refused unless <see cref="TrainOptions.Overwrite"/>
/// (a resumed run continues its own folder);</item>
/// <item>a checkpoint or log write that fails (disk full, read-only folder) stops the run with one
/// line, leaving the previous checkpoint as it was (checkpoints are written with
/// <see cref="AtomicFolder"/>);</item>
/// <item>a step whose loss or gradient is not finite is not applied; the run stops, or skips up to
/// <see cref="TrainOptions.SkipNonFinite"/> such steps.</item>
/// </list>
/// </summary>
public static class RunGuards
{
    /// <summary>The files and folders of a run in an out folder.</summary>
    public static readonly string[] RunOutputs =
        [Trainer.LastCheckpoint, Trainer.BestCheckpoint, Trainer.MetricsFile, Trainer.EvalFile, "loss.png", "depth_weights.png"];

    /// <summary>Checks, before anything is loaded or written, that the out folder may be used:
    /// a folder holding a run's outputs is refused unless <paramref name="overwrite"/> (which then
    /// removes them, so the new run's log does not mix with the old one's) or the run resumes
    /// from a checkpoint inside it.</summary>
    public static void ClaimOutFolder(string outDir, bool overwrite, string? resumeFrom)
    {
        if (!Directory.Exists(outDir))
        {
            if (File.Exists(outDir)) throw new EngineException($"--out {outDir}: is a file, not a folder");
            return;
        }
        foreach (var checkpoint in new[] { Trainer.LastCheckpoint, Trainer.BestCheckpoint })
            AtomicFolder.Recover(Path.Combine(outDir, checkpoint)); // a checkpoint swap that a killed run left half done
        var found = RunOutputs.Where(n => File.Exists(Path.Combine(outDir, n)) || Directory.Exists(Path.Combine(outDir, n))).ToList();
        if (found.Count == 0) return;
        if (resumeFrom is not null) return;
        if (!overwrite)
            throw new EngineException($"--out {outDir}: already holds a run ({string.Join(", ", found)}); pass --overwrite to replace it, " +
                $"or --resume {Path.Combine(outDir, Trainer.LastCheckpoint)} to continue it");
        foreach (var name in found)
        {
            var path = Path.Combine(outDir, name);
            if (Directory.Exists(path)) Directory.Delete(path, recursive: true);
            else File.Delete(path);
        }
    }

    /// <summary>Runs a write of the run's outputs; an I/O failure becomes one line saying what was
    /// not written and that the previous checkpoint is intact.</summary>
    public static void Writing(string what, int step, Action write)
    {
        try { write(); }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException || IsFileTooLarge(e))
        {
            var why = IsFileTooLarge(e) ? "a file grew past the file-size limit (ulimit -f) or the file system's" : e.Message.Split('\n')[0].TrimEnd('.', '\r');
            throw new EngineException($"train: could not write {what}{(step >= 0 ? $" at step {step}" : "")} ({why}); " +
                "stopped; the previous checkpoint is intact (resume from it with --resume once there is room)");
        }
    }

    /// <summary>.NET reports a write past the file-size limit (EFBIG) as an ArgumentOutOfRangeException thrown by System.IO.</summary>
    public static bool IsFileTooLarge(Exception e) =>
        e is ArgumentOutOfRangeException && e.TargetSite?.DeclaringType?.Namespace?.StartsWith("System.IO", StringComparison.Ordinal) == true;

    /// <summary>A step whose loss or gradient norm is not finite (<paramref name="what"/>): not
    /// applied; returns when the run may skip it (one more of at most
    /// <see cref="TrainOptions.SkipNonFinite"/>), throws otherwise.</summary>
    public static void NonFiniteStep(TrainOptions o, int step, int skippedBefore, string what)
    {
        if (skippedBefore < o.SkipNonFinite) return;
        throw new EngineException($"train: {what} at step {step}; the step was not applied and the run stopped (the last checkpoint is intact). " +
            (o.SkipNonFinite > 0 ? $"{skippedBefore} such steps were skipped already (--skip-nonfinite {o.SkipNonFinite}). " : "--skip-nonfinite N skips up to N such steps; ") +
            (o.DetectAnomaly ? "" : "--detect-anomaly names the first op whose output went non-finite"));
    }

    /// <summary>A tokenizer whose ids reach past the model's embeddings, or a run whose step cannot
    /// fit in memory, is refused before training starts.</summary>
    public static void BeforeTraining(SequenceClassifier model, HfModelFolder source, TextTokenizer tokenizer, TrainOptions o, IReadOnlyList<EncodedExample> train)
    {
        ModelFolderCheck.TokenizerFits(tokenizer, source);
        MemoryEstimate.Check(MemoryEstimate.ForRun(model, source, o, train.Count == 0 ? 0 : train.Max(e => e.Ids.Length)), o);
    }
}
