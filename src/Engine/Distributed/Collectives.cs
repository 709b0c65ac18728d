using System.Diagnostics.CodeAnalysis;

namespace Engine.Distributed;

/// <summary>
/// Which collectives this process uses. A process is one rank of several when a launcher
/// started it so: Open MPI's <c>mpirun</c> (OMPI_COMM_WORLD_SIZE) or Slurm's <c>srun
/// --mpi=pmix</c> (PMIX_RANK with SLURM_NTASKS); then <see cref="World"/> is MPI_COMM_WORLD
/// through <see cref="MpiCollectives"/>. Otherwise it is <see cref="SingleProcess"/> and no
/// MPI or NCCL library is ever loaded. The CUDA backend registers NCCL with
/// <see cref="RegisterGpu"/> (the core never names CUDA); <see cref="For"/> picks it for a GPU.
/// </summary>
public static class Collectives
{
    public const string TimeoutVariable = "ENGINE_COLLECTIVE_TIMEOUT";
    private static readonly object gate = new();
    private static ICollectives? world;
    private static Func<ICollectives, Device, ICollectives>? gpuFactory;
    private static readonly Dictionary<Device, ICollectives> gpu = new();

    /// <summary>How long a collective may wait for the other ranks before the job is stopped:
    /// ENGINE_COLLECTIVE_TIMEOUT seconds, default 600 (long enough for a rank that is still
    /// loading or evaluating, short enough that a hung job ends the same day).</summary>
    public static TimeSpan Timeout { get; } = TimeSpan.FromSeconds(
        double.TryParse(Environment.GetEnvironmentVariable(TimeoutVariable), System.Globalization.CultureInfo.InvariantCulture, out var s) && s > 0 ? s : 600);

    /// <summary>The number of ranks the launcher says this job has (1 when not launched as a job).</summary>
    public static int LaunchedSize
    {
        get
        {
            if (Number("OMPI_COMM_WORLD_SIZE") is { } n) return n;
            if (Environment.GetEnvironmentVariable("PMIX_RANK") is not null && Number("SLURM_NTASKS") is { } m) return m;
            return 1;
        }
    }

    /// <summary>This rank's index among the ranks of its node (the GPU it should use), when launched as a job.</summary>
    public static int? LocalRank => Number("OMPI_COMM_WORLD_LOCAL_RANK") ?? (LaunchedSize > 1 ? Number("SLURM_LOCALID") : null);

    private static int? Number(string variable) => int.TryParse(Environment.GetEnvironmentVariable(variable), out var v) ? v : null;

    /// <summary>All ranks of the job: MPI when launched as several ranks, else the single process.</summary>
    public static ICollectives World
    {
        get
        {
            lock (gate) return world ??= LaunchedSize > 1 ? MpiCollectives.Start() : new SingleProcess();
        }
    }

    /// <summary>True once <see cref="World"/> has been opened with more than one rank.</summary>
    public static bool IsDistributed
    {
        get { lock (gate) return world is { Size: > 1 }; }
    }

    /// <summary>Called by a GPU backend's assembly: makes device-memory collectives (NCCL) over a
    /// world for one device. The factory throws EngineException when its library is missing.</summary>
    public static void RegisterGpu(Func<ICollectives, Device, ICollectives> factory)
    {
        lock (gate) gpuFactory = factory;
    }

    /// <summary>The collectives for buffers on <paramref name="device"/>: the world itself for the
    /// CPU or a single process; NCCL over the world for a GPU when it loads; otherwise the world
    /// (MPI through host copies), with one line on stderr saying so.</summary>
    public static ICollectives For(Device device)
    {
        var w = World;
        if (w.Size == 1 || device.Kind == DeviceKind.Cpu) return w;
        lock (gate)
        {
            if (gpu.TryGetValue(device, out var c)) return c;
            if (gpuFactory is null) return w;
            try { c = gpuFactory(w, device); }
            catch (EngineException e)
            {
                if (w.Rank == 0) Console.Error.WriteLine($"warning: {e.Message}; gradients are all-reduced through MPI on host copies");
                c = w;
            }
            gpu[device] = c;
            return c;
        }
    }

    /// <summary>"rank 1 of 4: " in a job of several ranks, "" otherwise (a prefix for error lines).</summary>
    public static string RankPrefix
    {
        get { lock (gate) return world is { Size: > 1 } w ? $"rank {w.Rank} of {w.Size}: " : ""; }
    }

    /// <summary>In a job of several ranks, stops every rank with <paramref name="exitCode"/> (after
    /// the caller printed why); in a single process, returns.</summary>
    public static void AbortIfDistributed(int exitCode)
    {
        ICollectives? w;
        lock (gate) w = world;
        if (w is { Size: > 1 }) w.Abort(exitCode);
    }
}

/// <summary>One rank: every collective leaves its buffers as they are.</summary>
public sealed class SingleProcess : ICollectives
{
    public int Rank => 0;
    public int Size => 1;
    public string Name => "single process";
    public void AllReduceSum(IReadOnlyList<Tensor> buffers) { }
    public void Broadcast(IReadOnlyList<Tensor> tensors, int root) { }
    public void AllReduceSum(Span<double> values) { }
    public void Broadcast(Span<byte> bytes, int root) { }
    public void Barrier() { }

    [DoesNotReturn]
    public void Abort(int exitCode) => Environment.Exit(exitCode);
}
