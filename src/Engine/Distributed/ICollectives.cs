using System.Diagnostics.CodeAnalysis;

namespace Engine.Distributed;

/// <summary>
/// The collective operations data-parallel training needs, over the ranks of one job (the
/// processes a launcher such as <c>mpirun -np N</c> or Slurm's <c>srun</c> started). Every rank
/// calls the same operations in the same order with buffers of the same shapes; an operation
/// returns on a rank once that rank's part is done. Implementations: <see cref="SingleProcess"/>
/// (one rank, every operation a no-op), <see cref="MpiCollectives"/> (Open MPI, host memory) and,
/// registered by the CUDA backend, NCCL (device memory, bootstrapped through MPI).
///
/// A collective that gets no answer from the other ranks within <see cref="Collectives.Timeout"/>
/// stops the whole job with a line naming the operation and the rank (a dead or hung rank must
/// not leave the others waiting forever).
/// </summary>
public interface ICollectives
{
    /// <summary>This process's rank, 0 ≤ Rank &lt; Size; rank 0 is the one that writes files.</summary>
    int Rank { get; }
    int Size { get; }
    /// <summary>"single process", "MPI (Open MPI 4.1.4)", "NCCL 2.21.5 over MPI", …</summary>
    string Name { get; }

    /// <summary>Sums each float32 tensor elementwise over the ranks, in place: on return every
    /// rank holds the same sums. The list is one bucket: an implementation fuses it into as few
    /// transfers as it can (MPI packs it into one host buffer, NCCL groups the calls).</summary>
    void AllReduceSum(IReadOnlyList<Tensor> buffers);

    /// <summary>Starts <see cref="AllReduceSum(IReadOnlyList{Tensor})"/> of one bucket and returns at
    /// once (MPI_Iallreduce; NCCL queued on the backend's stream); the sums are in place once the
    /// returned reduction's <see cref="IPendingReduction.Wait"/> has returned. Every rank starts the
    /// same buckets in the same order (other collectives may come between); nothing may write into
    /// the buffers before the wait. The default is the blocking form, done on return.</summary>
    IPendingReduction StartAllReduceSum(IReadOnlyList<Tensor> buffers)
    {
        AllReduceSum(buffers);
        return IPendingReduction.Done;
    }

    /// <summary>Overwrites each tensor on every rank with rank <paramref name="root"/>'s values (any dtype).</summary>
    void Broadcast(IReadOnlyList<Tensor> tensors, int root);

    /// <summary>Sums a few host values over the ranks, in place (losses, counts, flags).</summary>
    void AllReduceSum(Span<double> values);

    /// <summary>Overwrites host bytes on every rank with rank <paramref name="root"/>'s.</summary>
    void Broadcast(Span<byte> bytes, int root);

    /// <summary>Returns once every rank has called it.</summary>
    void Barrier();

    /// <summary>Ends every rank of the job now with <paramref name="exitCode"/> (after this rank
    /// has printed why); used when one rank meets an error the others cannot know about.</summary>
    [DoesNotReturn] void Abort(int exitCode);
}

/// <summary>A started all-reduce (<see cref="ICollectives.StartAllReduceSum"/>).</summary>
public interface IPendingReduction
{
    /// <summary>Lets the transfer progress (MPI advances a nonblocking collective only inside MPI
    /// calls) and says whether it is complete; cheap, never waits.</summary>
    bool Test();

    /// <summary>Returns once the sums are in the buffers (with the collectives' timeout).</summary>
    void Wait();

    /// <summary>An all-reduce that completed when it was started.</summary>
    static IPendingReduction Done { get; } = new Completed();

    private sealed class Completed : IPendingReduction
    {
        public bool Test() => true;
        public void Wait() { }
    }
}
