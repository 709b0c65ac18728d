using System.Diagnostics;
using Engine.Backend;

namespace Engine.Autograd;

/// <summary>One op's share of the profiled steps.</summary>
public sealed record OpTime(string Op, int Calls, double ForwardMs, double BackwardMs)
{
    public double TotalMs => ForwardMs + BackwardMs;
}

/// <summary>
/// Where a step's time goes, per op (`engine bench step --profile`). While a profile is active on
/// the thread, every op's forward is charged the time since the previous op finished (so host
/// work between ops, such as building a mask, lands on the op that follows it) and every
/// node's backward its own run time. With a backend given, the device is synchronised at each
/// mark, so GPU kernels are charged to the op that queued them (which slows the step down:
/// profile, then time without it).
/// </summary>
public sealed class OpProfile : IDisposable
{
    [ThreadStatic] private static OpProfile? current;

    private readonly Dictionary<string, (int Calls, double Forward, double Backward)> ops = new();
    private readonly IBackend? sync;
    private readonly OpProfile? outer;
    private long last;

    private OpProfile(IBackend? sync)
    {
        this.sync = sync;
        outer = current;
        current = this;
        Mark();
    }

    /// <summary>Starts profiling this thread's ops until disposed; <paramref name="sync"/>: the device to wait for at each mark.</summary>
    public static OpProfile Start(IBackend? sync = null) => new(sync);

    /// <summary>Restarts the forward clock (call before each step, so time between steps is not charged).</summary>
    public void Mark()
    {
        sync?.Synchronize();
        last = Stopwatch.GetTimestamp();
    }

    internal static bool Active => current is not null;

    internal static void Forward(string op)
    {
        if (current is not { } p) return;
        p.sync?.Synchronize();
        long now = Stopwatch.GetTimestamp();
        var e = p.ops.GetValueOrDefault(op);
        p.ops[op] = (e.Calls + 1, e.Forward + Stopwatch.GetElapsedTime(p.last, now).TotalMilliseconds, e.Backward);
        p.last = now;
    }

    internal static void Backward(string op, Action run)
    {
        if (current is not { } p) { run(); return; }
        p.sync?.Synchronize();
        long start = Stopwatch.GetTimestamp();
        run();
        p.sync?.Synchronize();
        var e = p.ops.GetValueOrDefault(op);
        p.ops[op] = (e.Calls, e.Forward, e.Backward + Stopwatch.GetElapsedTime(start).TotalMilliseconds);
    }

    /// <summary>Every op seen, the most expensive first.</summary>
    public IReadOnlyList<OpTime> Table() =>
        ops.Select(kv => new OpTime(kv.Key, kv.Value.Calls, kv.Value.Forward, kv.Value.Backward)).OrderByDescending(t => t.TotalMs).ToList();

    public void Dispose()
    {
        if (current == this) current = outer;
    }
}
