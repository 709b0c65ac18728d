using Engine.Distributed;
using Engine.Models.Training;

namespace Engine.Cli;

/// <summary>
/// `mpirun -np N engine train …` (docs/scaling.md): every rank runs the same command; rank 0
/// prints and writes, the others train silently (their errors still go to stderr, prefixed with
/// the rank, and stop the whole job).
/// </summary>
public static class Ranks
{
    /// <summary>Joins the job when a launcher started this process as one of several ranks (a
    /// single process loads no MPI library); silences stdout on ranks other than 0.</summary>
    public static ICollectives Open()
    {
        var world = Collectives.World;
        if (world.Size == 1) return world;
        if (world.Rank == 0) Console.Error.WriteLine($"ranks: {world.Size} ({world.Name}); each trains on its shard of every global batch");
        else Console.SetOut(TextWriter.Null);
        return world;
    }

    /// <summary>The options as this rank uses them: only rank 0 has an output folder.</summary>
    public static TrainOptions ForThisRank(TrainOptions options) =>
        Collectives.World.Rank == 0 ? options : options with { OutDir = null };

    /// <summary>"cuda" without an index means this rank's own GPU in a job (its rank on the node).</summary>
    public static string? LocalDevice(string? text) =>
        text == "cuda" && Collectives.LaunchedSize > 1 && Collectives.LocalRank is { } local ? $"cuda:{local}" : text;
}
