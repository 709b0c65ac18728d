using Engine.Autograd;
using Engine.Nn;

namespace Engine.Distributed;

/// <summary>
/// Data-parallel training over the ranks of a job, as a training loop uses it:
/// <list type="bullet">
/// <item>Global-batch semantics. The loop orders the data in global batches of N·b examples
/// (N ranks, b per rank), the same order for every N; rank r takes the contiguous slice
/// <see cref="Shard(int[])"/> of each and scales its loss by its <see cref="Share"/> of the global
/// batch (local / global examples). Summing the ranks' gradients then gives exactly the gradient
/// of the mean loss over the global batch, so N ranks × b equal one rank × N·b (up to the order of
/// float32 additions), a short last batch included, and gradient accumulation composes with it.</item>
/// <item><see cref="Start"/>: every parameter is broadcast from rank 0, and each rank draws its
/// own dropout masks (its dropout counter is moved to a range of its own; rank 0 keeps the
/// single-process sequence).</item>
/// <item><see cref="ReduceGradients"/>: after the backward, the gradients are summed over the
/// ranks in buckets of about <see cref="BucketBytes"/>, last parameters first (the order a backward
/// finishes them); with <see cref="OverlapWithBackward"/> each bucket starts as soon as the backward
/// has finished its parameters.</item>
/// <item><see cref="GatherRows"/>: work split over the ranks (evaluation) and its rows gathered on every rank.</item>
/// <item>Only rank 0 writes files (<see cref="IsWriter"/>); decisions that must agree (early
/// stopping) are rank 0's (<see cref="RootDecides"/>).</item>
/// </list>
/// With one rank every method returns at once and the loop computes what it always computed.
/// </summary>
public sealed class DataParallel(ICollectives collectives, long bucketBytes = DataParallel.DefaultBucketBytes)
{
    /// <summary>25 MiB, PyTorch DDP's default bucket.</summary>
    public const long DefaultBucketBytes = 25L << 20;

    public ICollectives Collectives { get; } = collectives;
    public long BucketBytes { get; } = bucketBytes;
    public int Rank => Collectives.Rank;
    public int Size => Collectives.Size;
    public bool IsWriter => Rank == 0;

    /// <summary>Sets the bucket size in MiB (PyTorch DDP's bucket_cap_mb); default 25.</summary>
    public const string BucketVariable = "ENGINE_BUCKET_MB";

    /// <summary>The data-parallel view of the job for a model on <paramref name="device"/>, with
    /// buckets of <see cref="BucketVariable"/> MiB when it is set.</summary>
    public static DataParallel For(Device device)
    {
        var text = Environment.GetEnvironmentVariable(BucketVariable);
        if (string.IsNullOrEmpty(text)) return new(Distributed.Collectives.For(device));
        if (!double.TryParse(text, System.Globalization.NumberStyles.Float, System.Globalization.CultureInfo.InvariantCulture, out var mb) || !(mb > 0) || mb > 1 << 20)
            throw new EngineException($"{BucketVariable}: expected a positive number of MiB, got '{text}'");
        return new(Distributed.Collectives.For(device), Math.Max(1, (long)(mb * (1 << 20))));
    }

    /// <summary>Rank <paramref name="rank"/>'s contiguous slice of a global batch: elements
    /// [n·r/N, n·(r+1)/N), so the slices differ by at most one element and may be empty.</summary>
    public static int[] Shard(int[] global, int rank, int size) =>
        global[(int)((long)global.Length * rank / size)..(int)((long)global.Length * (rank + 1) / size)];

    public int[] Shard(int[] global) => Size == 1 ? global : Shard(global, Rank, Size);

    /// <summary>This rank's weight in the global batch's mean loss (exactly 1 with one rank).</summary>
    public static double Share(int local, int global) => local == global ? 1.0 : (double)local / global;

    /// <summary>Broadcasts every parameter from rank 0 and gives this rank its own dropout stream.</summary>
    public void Start(IEnumerable<Tensor> parameters, DropoutSeeds? seeds)
    {
        if (Size == 1) return;
        Collectives.Broadcast(parameters.ToList(), root: 0);
        if (seeds is not null) seeds.Counter += (ulong)Rank << 40;
    }

    /// <summary>Sums the gradients of <paramref name="parameters"/> over the ranks, in place. A
    /// parameter that got a gradient on any rank gets one (zeros) on every rank first, so the
    /// buckets agree and the optimizer updates the same parameters everywhere. After
    /// <see cref="OverlapWithBackward"/> it finishes the reduction started during the backward.</summary>
    public void ReduceGradients(IReadOnlyList<Tensor> parameters)
    {
        if (Size == 1) return;
        if (overlapped is { } started)
        {
            overlapped = null;
            if (!ReferenceEquals(started.Parameters, parameters)) throw new InvalidOperationException("ReduceGradients: not the parameters the overlapped reduction was started for");
            started.Finish();
            return;
        }
        var present = new double[parameters.Count];
        for (int i = 0; i < parameters.Count; i++) present[i] = parameters[i].Grad is null ? 0 : 1;
        Collectives.AllReduceSum(present);
        var grads = new List<Tensor>();
        for (int i = 0; i < parameters.Count; i++)
            if (present[i] > 0) grads.Add(Tape.GradOf(parameters[i]));
        foreach (var bucket in Buckets(grads, BucketBytes)) Collectives.AllReduceSum(bucket);
    }

    private OverlappedReduction? overlapped;

    /// <summary>
    /// Overlaps the gradient reduction with the backward run before the returned handle is
    /// disposed (the step's last backward; call <see cref="ReduceGradients"/> afterwards, as
    /// without overlap). The buckets are those <see cref="ReduceGradients"/> makes when every
    /// parameter has a gradient, fixed before the backward so that every rank starts the same
    /// ones: through <see cref="Tape.OnGradientReady"/>, bucket k is started
    /// (<see cref="ICollectives.StartAllReduceSum"/>) as soon as the backward has finished every one
    /// of its parameters and buckets 0 … k − 1 are started, so buckets go out in the same order on
    /// every rank, the last parameters' first. <see cref="ReduceGradients"/> then starts the buckets
    /// left (a parameter no gradient reached on this rank holds its bucket back until then: it gets
    /// zeros), sums the presence flags, waits for every bucket, and takes the zeros away again from a
    /// parameter that no rank gave a gradient, so the optimizer sees what it sees without overlap:
    /// the same gradients, summed in the same buckets when every parameter has one.
    /// With one rank it does nothing.
    /// </summary>
    public IDisposable OverlapWithBackward(IReadOnlyList<Tensor> parameters)
    {
        if (Size == 1) return NoOverlap.Instance;
        overlapped = new OverlappedReduction(this, parameters);
        return Tape.OnGradientReady(overlapped.Ready);
    }

    private sealed class NoOverlap : IDisposable
    {
        public static readonly NoOverlap Instance = new();
        public void Dispose() { }
    }

    private sealed class OverlappedReduction
    {
        private readonly DataParallel owner;
        private readonly List<List<Tensor>> buckets;
        private readonly Dictionary<Tensor, int> bucketOf = new(ReferenceEqualityComparer.Instance);
        private readonly int[] waiting;
        private readonly bool[] hadGradient;
        private readonly Dictionary<Tensor, int> indexOf = new(ReferenceEqualityComparer.Instance);
        private readonly List<IPendingReduction> started = [];
        private int completed;   // started[0 … completed − 1] are known to be done

        public IReadOnlyList<Tensor> Parameters { get; }

        public OverlappedReduction(DataParallel owner, IReadOnlyList<Tensor> parameters)
        {
            this.owner = owner;
            Parameters = parameters;
            buckets = Buckets(parameters, owner.BucketBytes);
            waiting = buckets.Select(b => b.Count).ToArray();
            for (int b = 0; b < buckets.Count; b++) foreach (var p in buckets[b]) bucketOf[p] = b;
            for (int i = 0; i < parameters.Count; i++) indexOf[parameters[i]] = i;
            hadGradient = new bool[parameters.Count];
        }

        /// <summary>The backward has finished <paramref name="leaf"/>.</summary>
        public void Ready(Tensor leaf)
        {
            if (!bucketOf.TryGetValue(leaf, out int b) || leaf.Grad is null) return;   // not ours, or no gradient here (its bucket waits for the end)
            if (b < started.Count) throw new InvalidOperationException("a gradient was added to after its bucket had started: one backward per OverlapWithBackward");
            waiting[b]--;
            while (started.Count < buckets.Count && waiting[started.Count] == 0) Start(started.Count);
            // Let the transfers progress while the backward runs (one test moves all of MPI's; cheap either way).
            while (completed < started.Count && started[completed].Test()) completed++;
        }

        private void Start(int b)
        {
            foreach (var p in buckets[b]) hadGradient[indexOf[p]] = p.Grad is not null;
            started.Add(owner.Collectives.StartAllReduceSum(buckets[b].Select(Tape.GradOf).ToList()));
        }

        public void Finish()
        {
            while (started.Count < buckets.Count) Start(started.Count);
            var present = hadGradient.Select(h => h ? 1.0 : 0.0).ToArray();
            owner.Collectives.AllReduceSum(present);
            foreach (var s in started) s.Wait();
            for (int i = 0; i < Parameters.Count; i++)
            {
                if (present[i] > 0 || Parameters[i].Grad is not { } zeros) continue;
                Parameters[i].Grad = null;   // no rank had a gradient for it: as without overlap, it gets none
                if (zeros.IsLongLived) zeros.Release();
            }
        }
    }

    /// <summary>Splits tensors into buckets of at most <paramref name="bytes"/> (a larger tensor is a
    /// bucket of its own), taking them from the end of the list.</summary>
    public static List<List<Tensor>> Buckets(IReadOnlyList<Tensor> tensors, long bytes)
    {
        var buckets = new List<List<Tensor>>();
        var current = new List<Tensor>();
        long size = 0;
        for (int i = tensors.Count - 1; i >= 0; i--)
        {
            long b = tensors[i].Numel * tensors[i].DType.SizeOf();
            if (current.Count > 0 && size + b > bytes)
            {
                buckets.Add(current);
                current = new List<Tensor>();
                size = 0;
            }
            current.Add(tensors[i]);
            size += b;
        }
        if (current.Count > 0) buckets.Add(current);
        return buckets;
    }

    /// <summary>Rows computed sharded and gathered on every rank: rank r computes the rows of its
    /// <see cref="Shard(int[])"/> of 0 … <paramref name="count"/> − 1 (<paramref name="compute"/> gets
    /// their indices and returns one row of values each, all of one length, in that order); every
    /// rank gets all rows. The gathering is one host all-reduce where each rank contributes its rows
    /// and zeros elsewhere, and x + 0 = x, so each row is exactly what its rank computed (evaluation:
    /// N ranks score N times fewer examples each, and the metrics come from the same rows everywhere).</summary>
    public double[][] GatherRows(int count, Func<int[], IReadOnlyList<double[]>> compute)
    {
        var mine = Shard(Enumerable.Range(0, count).ToArray());
        var rows = compute(mine);
        int width = rows.Count > 0 ? rows[0].Length : 0;
        if (rows.Count != mine.Length || rows.Any(r => r.Length != width))
            throw new InvalidOperationException($"gather: {mine.Length} rows of one length expected, got {rows.Count} rows of {string.Join("/", rows.Select(r => r.Length).Distinct())}");
        if (Size == 1) return [.. rows];
        // The row length: the ranks that have rows tell it (a rank with none does not know it).
        Span<double> widths = [rows.Count > 0 ? 1 : 0, width];
        Collectives.AllReduceSum(widths);
        if (widths[0] > 0) width = (int)(widths[1] / widths[0]);
        if (rows.Count > 0 && widths[1] != widths[0] * rows[0].Length)
            throw new InvalidOperationException("gather: the ranks' rows differ in length");
        var all = new double[(long)count * width];
        for (int i = 0; i < mine.Length; i++) rows[i].CopyTo(all, (long)mine[i] * width);
        Collectives.AllReduceSum(all);
        var gathered = new double[count][];
        for (int i = 0; i < count; i++) gathered[i] = all.AsSpan(i * width, width).ToArray();
        return gathered;
    }

    /// <summary>The sum of <paramref name="value"/> over the ranks.</summary>
    public double Sum(double value)
    {
        if (Size == 1) return value;
        Span<double> v = [value];
        Collectives.AllReduceSum(v);
        return v[0];
    }

    /// <summary>Rank 0's <paramref name="decision"/>, on every rank.</summary>
    public bool RootDecides(bool decision)
    {
        if (Size == 1) return decision;
        Span<byte> b = [(byte)(decision ? 1 : 0)];
        Collectives.Broadcast(b, root: 0);
        return b[0] != 0;
    }
}
