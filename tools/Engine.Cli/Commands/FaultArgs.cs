using System.CommandLine;
using Engine.Models.Training;

namespace Engine.Cli.Commands;

/// <summary>engine train's options for faults (README, "Reliability"): --overwrite,
/// --skip-nonfinite, --detect-anomaly, --memory-budget.</summary>
internal sealed class FaultArgs
{
    public readonly Option<bool> Overwrite = new("--overwrite") { Description = "replace an earlier run's outputs in --out (otherwise refused)" };
    public readonly Option<int> SkipNonFinite = new("--skip-nonfinite") { Description = "skip up to N steps with a non-finite loss or gradient (not applied) instead of stopping at the first", DefaultValueFactory = _ => 0 };
    public readonly Option<bool> DetectAnomaly = new("--detect-anomaly") { Description = "check every op's output and gradient; stop naming the first op that made a NaN or infinity (slow)" };
    public readonly Option<double?> MemoryBudget = new("--memory-budget") { Description = "GB a training step may use (default: the memory available); a run estimated above it is refused before it starts" };

    public void AddTo(Command c)
    {
        c.Add(Overwrite); c.Add(SkipNonFinite); c.Add(DetectAnomaly); c.Add(MemoryBudget);
    }

    public TrainOptions Apply(ParseResult p, TrainOptions o) => o with
    {
        Overwrite = p.GetValue(Overwrite), SkipNonFinite = p.GetValue(SkipNonFinite), DetectAnomaly = p.GetValue(DetectAnomaly),
        MemoryBudgetBytes = p.GetValue(MemoryBudget) is { } gb ? (gb > 0 && gb < 1e9 ? (long)(gb * 1e9) : throw new EngineException($"--memory-budget: expected a positive number of GB, got {gb}")) : null,
    };
}
