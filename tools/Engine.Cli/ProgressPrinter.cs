using Engine.Models.Training;

namespace Engine.Cli;

/// <summary>
/// Progress of `engine train` and `engine pretrain`: on a terminal, one line redrawn in place (a
/// bar, step, loss, throughput, ETA); when the output is redirected, a plain line per logged
/// step. Evaluations and notes always get their own line. The ETA extrapolates the time per
/// step seen by this process, counted from the first step it reports (so a resumed run's ETA
/// is not skewed by the steps done before the resume).
/// </summary>
public sealed class ProgressPrinter
{
    private readonly System.Diagnostics.Stopwatch clock = System.Diagnostics.Stopwatch.StartNew();
    private readonly bool live = !Console.IsOutputRedirected;
    private bool open;
    private int? firstStep;
    private double firstSeconds;

    public void Report(TrainEvent e)
    {
        if (e.Note is not null || e.Eval is not null)
        {
            EndLine();
            Console.WriteLine(e.Note ?? $"  eval at step {e.Step}: " + string.Join(", ", e.Eval!.Select(kv => $"{kv.Key} {kv.Value:F4}")));
            return;
        }
        double elapsed = clock.Elapsed.TotalSeconds;
        if (firstStep is null)
        {
            // Steps before this one: those of a resumed checkpoint, then the ones this process ran.
            firstStep = e.Step;
            firstSeconds = elapsed;
        }
        int done = e.Step - firstStep.Value;
        double perStep = done > 0 ? (elapsed - firstSeconds) / done : elapsed / Math.Max(1, e.Step);
        double eta = perStep * (e.TotalSteps - e.Step);
        var text = $"step {e.Step,6}/{e.TotalSteps}  epoch {e.Epoch:F2}  loss {e.Loss:F4}  lr {e.LearningRate:E2}  {e.TokensPerSecond:N0} tok/s  ETA {TimeSpan.FromSeconds(eta):hh\\:mm\\:ss}";
        if (!live) { Console.WriteLine(text); return; }
        int filled = (int)(20.0 * e.Step / Math.Max(1, e.TotalSteps));
        Console.Write($"\r[{new string('#', filled)}{new string('.', 20 - filled)}] {text}   ");
        open = true;
    }

    public void Done() => EndLine();

    private void EndLine()
    {
        if (!open) return;
        Console.WriteLine();
        open = false;
    }
}
