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

    [Test]
    public void GatheredRowsAreEveryRanksRowsExactlyInOrder()
    {
        // 7 rows of 3 values over 3 ranks (shards of 2, 2, 3); each rank computes only its rows.
        const int count = 7, width = 3, size = 3;
        static double[] Row(int i) => [i + 0.1, -1.0 / (i + 3), Math.Pow(1.7, -40 * i)];   // one value near the smallest doubles
        var world = new ThreadWorld(size);
        var computed = new int[size][];
        var results = new double[size][][];
        var threads = Enumerable.Range(0, size).Select(r => new Thread(() =>
            results[r] = new DataParallel(world.Rank(r)).GatherRows(count, width, rows => { computed[r] = rows; return rows.Select(Row).ToList(); }))).ToList();
        threads.ForEach(t => t.Start());
        threads.ForEach(t => t.Join());
        Assert.That(computed.SelectMany(c => c), Is.EqualTo(Enumerable.Range(0, count)), "each row computed once, by its shard's rank");
        foreach (var result in results)
            Assert.That(result, Is.EqualTo(Enumerable.Range(0, count).Select(Row).ToArray()), "bit for bit, on every rank");
    }

    /// <summary>Ranks as threads of one process: each collective meets at a barrier.</summary>
    private sealed class ThreadWorld(int size)
    {
        private readonly Barrier barrier = new(size);
        private readonly object?[] slots = new object?[size];

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
