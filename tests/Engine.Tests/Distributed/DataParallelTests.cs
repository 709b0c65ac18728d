using System.Diagnostics.CodeAnalysis;
using Engine.Autograd;
using Engine.Distributed;
using NUnit.Framework;

namespace Engine.Tests.Distributed;

/// <summary>The data-parallel pieces without a launcher: shards, shares, buckets, and gradient
/// reduction across ranks played by threads of this process.</summary>
public class DataParallelTests
{
    [Test]
    public void ShardsCoverTheGlobalBatchOnceInOrderAndDifferByAtMostOne()
    {
        for (int size = 1; size <= 5; size++)
            for (int n = 0; n <= 21; n++)
            {
                var global = Enumerable.Range(100, n).ToArray();
                var shards = Enumerable.Range(0, size).Select(r => DataParallel.Shard(global, r, size)).ToList();
                Assert.That(shards.SelectMany(s => s), Is.EqualTo(global), $"{size} ranks, {n} examples");
                Assert.That(shards.Max(s => s.Length) - shards.Min(s => s.Length), Is.LessThanOrEqualTo(1));
                if (n > 0) Assert.That(shards.Sum(s => DataParallel.Share(s.Length, n)), Is.EqualTo(1.0).Within(1e-12));
            }
        Assert.That(DataParallel.Share(7, 7), Is.EqualTo(1.0), "one rank's loss is left unscaled");
    }

    [Test]
    public void BucketsStayUnderTheCapAndTakeTheLastTensorsFirst()
    {
        var ts = new[] { 10, 3, 40, 2, 2, 30 }.Select(n => Tensor.Zeros([n])).ToArray();   // 4 bytes each element
        var buckets = DataParallel.Buckets(ts, bytes: 64);
        Assert.That(buckets.SelectMany(b => b), Is.EqualTo(ts.Reverse()).Using<Tensor>((x, y) => ReferenceEquals(x, y) ? 0 : 1));
        foreach (var b in buckets)
            Assert.That(b.Count == 1 || b.Sum(t => t.Numel * 4) <= 64, "a bucket over the cap holds one tensor");
        Assert.That(buckets.Select(b => b.Count), Is.EqualTo(new[] { 1, 2, 1, 2 }));   // 30 (120 bytes) | 2+2 | 40 (160 bytes) | 3+10 (52 bytes)
    }

    [Test]
    public void ASingleProcessLoadsNoMpiLibrary()
    {
        Assume.That(Collectives.LaunchedSize, Is.EqualTo(1), "the tests themselves run as one process");
        Assert.That(Collectives.World, Is.InstanceOf<SingleProcess>());
        Assert.That(new DataParallel(Collectives.World).Shard([1, 2, 3]), Is.EqualTo(new[] { 1, 2, 3 }));
        Assert.That(File.ReadAllText("/proc/self/maps"), Does.Not.Contain("libmpi").And.Not.Contain("libnccl"));
    }

    [Test]
    public void GradientsAreSummedAndAParameterMissingOnOneRankGetsZerosThere()
    {
        // Rank 0 has gradients for both parameters; rank 1 only for the first (the second got
        // none there, as a frozen-by-data branch would). After the reduction both ranks hold the
        // same sums, and rank 1 has a gradient for the second parameter too.
        var world = new ThreadWorld(2);
        var results = new float[2][][];
        var threads = Enumerable.Range(0, 2).Select(r => new Thread(() =>
        {
            var a = Tensor.Parameter(Tensor.Zeros([3]));
            var b = Tensor.Parameter(Tensor.Zeros([2]));
            Tape.GradOf(a).Span<float>().Fill(r + 1);
            if (r == 0) Tape.GradOf(b).Span<float>().Fill(5);
            new DataParallel(world.Rank(r), bucketBytes: 8).ReduceGradients([a, b]);
            results[r] = [a.Grad!.ToFloatArray(), b.Grad!.ToFloatArray()];
        })).ToList();
        threads.ForEach(t => t.Start());
        threads.ForEach(t => t.Join());
        foreach (var r in results)
        {
            Assert.That(r[0], Is.EqualTo(new float[] { 3, 3, 3 }));
            Assert.That(r[1], Is.EqualTo(new float[] { 5, 5 }));
        }
    }

    [TestCase(7)]
    [TestCase(2)]
    public void GatheredRowsAreEveryRanksRowsExactlyInOrder(int count)
    {
        // Rows of 3 values over 3 ranks (7 rows: shards of 2, 2, 3; 2 rows: rank 0 has none and
        // learns the row length from the others); each rank computes only its rows.
        const int size = 3;
        static double[] Row(int i) => [i + 0.1, -1.0 / (i + 3), Math.Pow(1.7, -40 * i)];   // one value near the smallest doubles
        var world = new ThreadWorld(size);
        var computed = new int[size][];
        var results = new double[size][][];
        var threads = Enumerable.Range(0, size).Select(r => new Thread(() =>
            results[r] = new DataParallel(world.Rank(r)).GatherRows(count, rows => { computed[r] = rows; return rows.Select(Row).ToList(); }))).ToList();
        threads.ForEach(t => t.Start());
        threads.ForEach(t => t.Join());
        Assert.That(computed.SelectMany(c => c), Is.EqualTo(Enumerable.Range(0, count)), "each row computed once, by its shard's rank");
        foreach (var result in results)
            Assert.That(result, Is.EqualTo(Enumerable.Range(0, count).Select(Row).ToArray()), "bit for bit, on every rank");
    }

    [Test]
    public void OverlappedBucketsStartDuringTheBackwardInOrderAndSumAsWithout()
    {
        // Per rank: h = marker(p0) · p1 · p2 · p3 (elementwise), loss = Σh, plus Σp4 on rank 0 only;
        // p5 gets no gradient anywhere. The parameter list is [p5, p4, p0, p1, p2, p3] and every
        // parameter is a bucket of its own, so the buckets are p3, p2, p1, p0, p4, p5. The backward
        // finishes p3, p2, p1, then runs the marker (the chain's first op), then p0 is final.
        // Expected on both ranks: p3, p2, p1 start before the marker's backward (during the
        // backward), then the others in bucket order (the same order on both ranks, which matters
        // to MPI, at different times); the sums equal the reduction after the backward.
        const int size = 2;
        string[] names = ["p5", "p4", "p0", "p1", "p2", "p3"];
        var events = new List<string>[size];
        var parameters = new Tensor[size][];
        var world = new ThreadWorld(size, (rank, bucket) => events[rank].Add(
            string.Join("+", bucket.Select(g => names[Array.FindIndex(parameters[rank], p => ReferenceEquals(p.Grad, g))]))));
        var overlapped = new float[]?[size][];
        var after = new float[]?[size][];
        var eventsWith = new List<string>[size];
        var eventsWithout = new List<string>[size];
        var threads = Enumerable.Range(0, size).Select(r => new Thread(() =>
        {
            foreach (bool overlap in new[] { true, false })
            {
                events[r] = overlap ? eventsWith[r] = [] : eventsWithout[r] = [];
                parameters[r] = Enumerable.Range(0, names.Length).Select(i => Tensor.Parameter(Tensor.FromArray(
                    Enumerable.Range(0, 4).Select(j => (float)(0.5 + 0.1 * i + 0.01 * j + 0.3 * r)).ToArray(), 4))).ToArray();
                var ps = parameters[r];
                var ranks = new DataParallel(world.Rank(r), bucketBytes: 16);
                using (overlap ? ranks.OverlapWithBackward(ps) : null)
                {
                    var p0 = ps[2];
                    var marked = Tape.Record("marker", Tensor.FromArray(p0.ToFloatArray(), 4), [p0], g =>
                    {
                        events[r].Add("marker");
                        p0.Backend.Axpy(g, Tape.GradOf(p0), 1.0);
                    });
                    var loss = Ops.Sum(Ops.Mul(Ops.Mul(Ops.Mul(marked, ps[3]), ps[4]), ps[5]));
                    if (r == 0) loss = Ops.Add(loss, Ops.Sum(ps[1]));
                    loss.Backward();
                }
                events[r].Add("end of backward");
                ranks.ReduceGradients(ps);
                (overlap ? overlapped : after)[r] = ps.Select(p => p.Grad?.ToFloatArray()).ToArray();
            }
        })).ToList();
        threads.ForEach(t => t.Start());
        threads.ForEach(t => t.Join());
        for (int r = 0; r < size; r++)
        {
            // p4 has a gradient on rank 0 only: there it starts during the backward, on rank 1 after it (zeros).
            Assert.That(eventsWith[r], Is.EqualTo(r == 0
                ? new[] { "p3", "p2", "p1", "marker", "p0", "p4", "end of backward", "p5" }
                : new[] { "p3", "p2", "p1", "marker", "p0", "end of backward", "p4", "p5" }), $"rank {r}");
            Assert.That(eventsWithout[r], Is.EqualTo(new[] { "marker", "end of backward", "p3", "p2", "p1", "p0", "p4" }), $"rank {r}: without overlap, after the backward");
            Assert.That(overlapped[r], Is.Not.Null, $"rank {r} finished");
            Assert.That(overlapped[r]![0], Is.Null, "p5: no rank had a gradient, so it has none after the reduction either");
            Assert.That(overlapped[r]![1], Is.Not.Null, "p4: rank 0's gradient, on every rank");
            for (int i = 0; i < names.Length; i++) Assert.That(overlapped[r]![i], Is.EqualTo(after[r]![i]), $"rank {r}, {names[i]}: the same sums as after the backward");
            Assert.That(overlapped[r], Is.EqualTo(overlapped[0]), "every rank holds the same sums");
        }
    }

    [Test]
    public void TheTapeSaysWhenEachLeafGradientIsFinal()
    {
        // Σ(a·b·c·frozen + a): a is used by the first op and the last but one; its gradient is final
        // only after the first op's backward (the backward's last), with b's; c's after the second op's.
        var a = Tensor.Parameter(Tensor.FromArray(new float[] { 1, 2 }, 2));
        var b = Tensor.Parameter(Tensor.FromArray(new float[] { 3, 4 }, 2));
        var c = Tensor.Parameter(Tensor.FromArray(new float[] { 5, 6 }, 2));
        var frozen = Tensor.FromArray(new float[] { 7, 8 }, 2);
        var seen = new List<(string Name, float[]? Grad)>();
        var names = new Dictionary<Tensor, string>(ReferenceEqualityComparer.Instance) { [a] = "a", [b] = "b", [c] = "c", [frozen] = "frozen" };
        using (Tape.OnGradientReady(t => seen.Add((names[t], t.Grad?.ToFloatArray()))))
            Ops.Sum(Ops.Add(Ops.Mul(Ops.Mul(Ops.Mul(a, b), c), frozen), a)).Backward();
        Assert.That(seen.Select(s => s.Name), Is.EqualTo(new[] { "c", "a", "b" }), "each once, in the order the backward finishes them; not the frozen tensor");
        foreach (var (name, grad) in seen)
            Assert.That(grad, Is.EqualTo(names.Single(kv => kv.Value == name).Key.Grad!.ToFloatArray()), $"{name}'s gradient was final when announced");
        seen.Clear();
        Ops.Sum(Ops.Mul(a, b)).Backward();
        Assert.That(seen, Is.Empty, "no hook once disposed");
    }

    /// <summary>Ranks as threads of one process: each collective meets at a barrier;
    /// <paramref name="started"/> sees every bucket when its all-reduce starts.</summary>
    private sealed class ThreadWorld(int size, Action<int, IReadOnlyList<Tensor>>? started = null)
    {
        private readonly Barrier barrier = new(size);
        private readonly object?[] slots = new object?[size];
        private readonly Action<int, IReadOnlyList<Tensor>>? onStart = started;

        public ICollectives Rank(int rank) => new Member(this, rank);

        private T[][] Exchange<T>(int rank, T[] mine)
        {
            slots[rank] = mine;
            barrier.SignalAndWait();
            var all = slots.Select(s => (T[])s!).ToArray();
            barrier.SignalAndWait();
            return all;
        }

        private sealed class Member(ThreadWorld w, int rank) : ICollectives
        {
            public int Rank => rank;
            public int Size => w.slots.Length;
            public string Name => "threads";

            public void AllReduceSum(IReadOnlyList<Tensor> buffers)
            {
                w.onStart?.Invoke(rank, buffers);
                var all = w.Exchange(rank, buffers.SelectMany(t => t.ToFloatArray()).ToArray());
                int at = 0;
                foreach (var t in buffers)
                {
                    var s = t.Span<float>();
                    for (int i = 0; i < s.Length; i++, at++) s[i] = all.Sum(a => a[at]);
                }
            }

            public void AllReduceSum(Span<double> values)
            {
                var all = w.Exchange(rank, values.ToArray());
                for (int i = 0; i < values.Length; i++) values[i] = all.Sum(a => a[i]);
            }

            public void Broadcast(Span<byte> bytes, int root) => w.Exchange(rank, bytes.ToArray())[root].CopyTo(bytes);
            public void Broadcast(IReadOnlyList<Tensor> tensors, int root) => throw new NotSupportedException();
            public void Barrier() => w.Exchange(rank, Array.Empty<byte>());
            [DoesNotReturn] public void Abort(int exitCode) => throw new NotSupportedException();
        }
    }
}
