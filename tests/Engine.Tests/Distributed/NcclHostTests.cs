using Engine.Distributed;
using Engine.Kernels;
using Engine.Kernels.Native;
using Engine.Tests.Cuda;
using NUnit.Framework;

namespace Engine.Tests.Distributed;

/// <summary>
/// The NCCL collectives' host side on the dry-run CUDA device: the bootstrap (rank 0's unique id
/// through the world), the calls a bucket becomes (one group of in-place float32 all-reduces on the
/// backend's stream, at each tensor's device address), and the one-line refusals. NCCL itself
/// is replaced by a recorder; <see cref="SingleRankAllReduceOnAGpu"/> runs the real library where
/// a GPU and libnccl.so.2 are present.
/// </summary>
public class NcclHostTests
{
    private sealed class RecordingNccl : INccl
    {
        public readonly List<string> Calls = new();
        public byte[]? JoinedWith;
        public string Version => "2.99.0";
        public byte[] UniqueId() { Calls.Add("id"); return Enumerable.Range(0, 128).Select(i => (byte)(i * 7)).ToArray(); }
        public nint InitRank(int size, ReadOnlySpan<byte> uniqueId, int rank) { JoinedWith = uniqueId.ToArray(); Calls.Add($"init {size} {rank}"); return 0x5eed; }
        public void GroupStart() => Calls.Add("group");
        public void GroupEnd() => Calls.Add("end");
        public void AllReduceSum(ulong buffer, long count, nint comm, nint stream) => Calls.Add($"allreduce 0x{buffer:x} {count} comm 0x{comm:x}");
        public void Broadcast(ulong buffer, long bytes, int root, nint comm, nint stream) => Calls.Add($"broadcast 0x{buffer:x} {bytes} root {root}");
        public bool Done(nint comm, nint stream) { Calls.Add("done?"); return true; }
        public void Abort(nint comm) => Calls.Add("abort");
    }

    private static ulong Address(Tensor t) => ((CudaStorage)t.Storage).Pointer + (ulong)(t.Offset * t.DType.SizeOf());

    [Test]
    public void RankZeroMakesTheIdAndEveryRankJoinsWithIt()
    {
        var dry = new DryGpu();
        var nccl = new RecordingNccl();
        var c = new NcclCollectives(new SingleProcess(), dry.Gpu, dry.Device, nccl);
        Assert.That(nccl.Calls, Is.EqualTo(new[] { "id", "init 1 0" }));
        Assert.That(nccl.JoinedWith, Is.EqualTo(nccl.UniqueId()));
        Assert.That(c.Name, Is.EqualTo("NCCL 2.99.0 over single process"));
    }

    [Test]
    public void ABucketIsOneGroupOfInPlaceAllReducesAtTheTensorsAddresses()
    {
        var dry = new DryGpu();
        var nccl = new RecordingNccl();
        var c = new NcclCollectives(new SingleProcess(), dry.Gpu, dry.Device, nccl);
        var a = dry.Zeros([3, 4]);
        var b = dry.Zeros([5]);
        nccl.Calls.Clear();
        c.AllReduceSum([a, b]);
        Assert.That(nccl.Calls, Is.EqualTo(new[]
        {
            "group", $"allreduce 0x{Address(a):x} 12 comm 0x5eed", $"allreduce 0x{Address(b):x} 5 comm 0x5eed", "end", "done?",
        }));
        nccl.Calls.Clear();
        var ids = dry.Zeros([7], DType.I32);
        c.Broadcast([ids], root: 0);
        Assert.That(nccl.Calls, Is.EqualTo(new[] { "group", $"broadcast 0x{Address(ids):x} 28 root 0", "end", "done?" }));
    }

    [Test]
    public void GradientsOfAModelGoInBucketsLastParametersFirst()
    {
        var dry = new DryGpu();
        var nccl = new RecordingNccl();
        var ranks = new DataParallel(new TwoRankView(new NcclCollectives(new SingleProcess(), dry.Gpu, dry.Device, nccl)), bucketBytes: 64);
        var ps = new[] { dry.Zeros([4]), dry.Zeros([20]), dry.Zeros([3]), dry.Zeros([2]) };   // 16, 80, 12, 8 bytes
        foreach (var p in ps) { p.RequiresGrad = true; Autograd.Tape.GradOf(p); }
        nccl.Calls.Clear();
        ranks.ReduceGradients(ps);
        string R(Tensor p) => $"allreduce 0x{Address(p.Grad!):x} {p.Numel} comm 0x5eed";
        Assert.That(nccl.Calls, Is.EqualTo(new[]
        {
            "group", R(ps[3]), R(ps[2]), "end", "done?",   // 8 + 12 bytes; the next one would pass 64
            "group", R(ps[1]), "end", "done?",             // 80 bytes: a bucket of its own
            "group", R(ps[0]), "end", "done?",
        }));
    }

    [Test]
    public void BuffersItCannotReduceAreRefusedWithALine()
    {
        var dry = new DryGpu();
        var c = new NcclCollectives(new SingleProcess(), dry.Gpu, dry.Device, new RecordingNccl());
        var e = Assert.Throws<EngineException>(() => c.AllReduceSum([dry.Zeros([3], DType.F64)]))!;
        Assert.That(e.Message, Does.Contain("float32").And.Contain("F64"));
        e = Assert.Throws<EngineException>(() => c.AllReduceSum([Tensor.Zeros([3])]))!;
        Assert.That(e.Message, Does.Contain("is on cpu"));
    }

    [Test]
    public void SingleRankAllReduceOnAGpu()
    {
        var backend = CudaTestSupport.Backend();
        Nccl nccl;
        try { nccl = Nccl.Load(); }
        catch (EngineException e) { Assert.Ignore(e.Message); return; }
        var c = new NcclCollectives(new SingleProcess(), backend.Gpu, backend.Device, nccl);
        var values = new float[] { 1.5f, -2, 3.25f, 1e-3f };
        var t = Tensor.FromArray(values, 4).To(backend.Device);
        c.AllReduceSum([t]);
        c.Broadcast([t], root: 0);
        Assert.That(t.ToFloatArray(), Is.EqualTo(values), "one rank: the sum is the buffer itself");
        TestContext.Out.WriteLine($"{c.Name}: single-rank all-reduce ran on {backend.Name}");
    }

    /// <summary>A single process that claims to be one of two ranks, so DataParallel does its work
    /// (the other rank's part is what the recorder stands for).</summary>
    private sealed class TwoRankView(ICollectives inner) : ICollectives
    {
        public int Rank => 0;
        public int Size => 2;
        public string Name => inner.Name;
        public void AllReduceSum(IReadOnlyList<Tensor> buffers) => inner.AllReduceSum(buffers);
        public void Broadcast(IReadOnlyList<Tensor> tensors, int root) => inner.Broadcast(tensors, root);
        public void AllReduceSum(Span<double> values) => inner.AllReduceSum(values);
        public void Broadcast(Span<byte> bytes, int root) => inner.Broadcast(bytes, root);
        public void Barrier() => inner.Barrier();
        [System.Diagnostics.CodeAnalysis.DoesNotReturn] public void Abort(int exitCode) => inner.Abort(exitCode);
    }
}
