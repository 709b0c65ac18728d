using System.Diagnostics;
using System.Diagnostics.CodeAnalysis;
using Engine.Backend;
using Engine.Distributed;
using Engine.Kernels.Native;

namespace Engine.Kernels;

/// <summary>
/// Collectives on GPU memory through NCCL, one communicator per job and device, bootstrapped
/// through the host collectives of the job (the world, MPI): rank 0 makes the
/// unique id, the world broadcasts it, every rank joins with ncclCommInitRank. A bucket of
/// gradients is one NCCL group (ncclGroupStart, one in-place ncclAllReduce per tensor,
/// ncclGroupEnd), queued on the backend's stream behind the backward's kernels; the host then
/// polls the stream (and ncclCommGetAsyncError) until it is done or <see cref="Collectives.Timeout"/>
/// has passed, when it aborts the communicator and stops the job with a line. Host values
/// (losses, flags, bytes) and the barrier go through the world.
/// </summary>
public sealed class NcclCollectives : ICollectives
{
    private readonly ICollectives world;
    private readonly CudaDevice gpu;
    private readonly Device device;
    private readonly INccl nccl;
    private readonly nint comm;

    internal NcclCollectives(ICollectives world, CudaDevice gpu, Device device, INccl nccl)
    {
        this.world = world;
        this.gpu = gpu;
        this.device = device;
        this.nccl = nccl;
        var id = new byte[128];
        if (world.Rank == 0) nccl.UniqueId().CopyTo(id, 0);
        world.Broadcast(id, root: 0);
        gpu.MakeCurrent();
        comm = nccl.InitRank(world.Size, id, world.Rank);
        Name = $"NCCL {nccl.Version} over {world.Name}";
    }

    /// <summary>The factory <see cref="CudaBackend.Register"/> hands to <see cref="Collectives.RegisterGpu"/>;
    /// throws EngineException("NCCL not available: …") without libnccl.so.2.</summary>
    public static ICollectives Create(ICollectives world, Device device)
    {
        var nccl = Nccl.Load();
        if (Backends.For(device) is not CudaBackend cuda) throw new EngineException($"NCCL not available: {device} is not served by the CUDA backend");
        return new NcclCollectives(world, cuda.Gpu, device, nccl);
    }

    public int Rank => world.Rank;
    public int Size => world.Size;
    public string Name { get; }

    public void AllReduceSum(IReadOnlyList<Tensor> buffers) => StartAllReduceSum(buffers).Wait();

    /// <summary>Queues the bucket's group on the backend's stream, behind the kernels queued so far
    /// (the gradients' last writes) and before those queued later; the wait polls the stream.</summary>
    public IPendingReduction StartAllReduceSum(IReadOnlyList<Tensor> buffers)
    {
        var pointers = buffers.Select(t => Address(t, "all-reduce", requireF32: true)).ToList();
        gpu.MakeCurrent();
        nccl.GroupStart();
        for (int i = 0; i < buffers.Count; i++) nccl.AllReduceSum(pointers[i], buffers[i].Numel, comm, gpu.Stream);
        nccl.GroupEnd();
        return new Queued(this);
    }

    private sealed class Queued(NcclCollectives owner) : IPendingReduction
    {
        private bool done;
        public bool Test() => done || (done = owner.nccl.Done(owner.comm, owner.gpu.Stream));
        public void Wait()
        {
            if (!done) owner.Wait("all-reduce");
            done = true;
        }
    }

    public void Broadcast(IReadOnlyList<Tensor> tensors, int root)
    {
        var pointers = tensors.Select(t => Address(t, "broadcast", requireF32: false)).ToList();
        gpu.MakeCurrent();
        nccl.GroupStart();
        for (int i = 0; i < tensors.Count; i++) nccl.Broadcast(pointers[i], tensors[i].Numel * tensors[i].DType.SizeOf(), root, comm, gpu.Stream);
        nccl.GroupEnd();
        Wait("broadcast");
    }

    public void AllReduceSum(Span<double> values) => world.AllReduceSum(values);
    public void Broadcast(Span<byte> bytes, int root) => world.Broadcast(bytes, root);
    public void Barrier() => world.Barrier();

    [DoesNotReturn]
    public void Abort(int exitCode)
    {
        nccl.Abort(comm);
        world.Abort(exitCode);
    }

    /// <summary>The device address of the tensor's first element, checked: on this GPU, float32
    /// where a sum is asked for, and inside a live allocation.</summary>
    private ulong Address(Tensor t, string what, bool requireF32)
    {
        string name = t.Name ?? Shape.Format(t.Shape);
        if (t.Device != device || t.Storage is not CudaStorage storage)
            throw new EngineException($"{what}: {name} is on {t.Device}; this NCCL communicator serves {device}");
        if (requireF32 && t.DType != DType.F32) throw new EngineException($"{what}: gradient buffers are float32; got {t.DType} ({name})");
        ulong address = storage.Pointer + (ulong)(t.Offset * t.DType.SizeOf());
        if (gpu.IsDryRun) gpu.Allocator.CheckLive(address, t.Numel * t.DType.SizeOf(), $"NCCL {what}");
        return address;
    }

    private void Wait(string what)
    {
        var clock = Stopwatch.StartNew();
        for (int polls = 0; !nccl.Done(comm, gpu.Stream); polls++)
        {
            if (clock.Elapsed > Collectives.Timeout)
            {
                Console.Error.WriteLine($"engine: rank {Rank} of {Size}: NCCL {what} got no answer from the other ranks in {Collectives.Timeout.TotalSeconds:F0} s " +
                                        $"(a rank died, hangs or is far behind; {Collectives.TimeoutVariable} sets the limit); stopping every rank");
                Abort(3);
            }
            if (polls < 1000) Thread.Yield(); else Thread.Sleep(1);
        }
    }
}
