using System.Diagnostics;
using System.Diagnostics.CodeAnalysis;
using System.Runtime.InteropServices;

namespace Engine.Distributed;

/// <summary>
/// Collectives over MPI_COMM_WORLD (Open MPI; host memory). Every operation is the nonblocking
/// form (MPI_Iallreduce, MPI_Ibcast, MPI_Ibarrier) completed by polling MPI_Test, so a rank that
/// waits longer than <see cref="Collectives.Timeout"/> can stop the job with a line that says so
/// (MPI itself offers no timeout on collectives). A bucket of tensors is packed into one host
/// buffer and reduced with one call (<see cref="StartAllReduceSum"/> returns while it runs); tensors on another device go through host copies (the
/// NCCL implementation keeps GPU buffers on the GPU). Counts above 2^30 elements go in chunks
/// (MPI counts are ints).
/// </summary>
public sealed unsafe class MpiCollectives : ICollectives
{
    private const int Chunk = 1 << 30;
    private static MpiCollectives? started;
    private bool finished;

    public int Rank { get; }
    public int Size { get; }
    public string Name { get; }

    private MpiCollectives(int rank, int size, string name)
    {
        Rank = rank;
        Size = size;
        Name = name;
    }

    /// <summary>Initialises MPI (MPI_Init_thread, MPI_THREAD_SERIALIZED) once per process and
    /// finalises it when the process exits. Throws EngineException when Open MPI is missing.</summary>
    public static MpiCollectives Start()
    {
        if (started is not null) return started;
        if (!Mpi.TryLoad(out var reason)) throw new EngineException(reason);
        // Open MPI would install its own SIGSEGV/SIGBUS/SIGFPE handlers (MCA opal_signal), which
        // the .NET runtime needs for null-reference and overflow exceptions: ask it not to.
        // (.NET's Environment does not reach the C environment that MPI reads, hence setenv.)
        SetNativeEnvironment("OMPI_MCA_opal_signal", "");
        int initialised = 0, provided = 0;
        Check(Mpi.Initialized(&initialised), "MPI_Initialized");
        if (initialised == 0) Check(Mpi.InitThread(null, null, Mpi.ThreadSerialized, &provided), "MPI_Init_thread");
        Check(Mpi.CommSetErrhandler(Mpi.CommWorld, Mpi.ErrorsReturn), "MPI_Comm_set_errhandler");
        int rank = 0, size = 0;
        Check(Mpi.CommRank(Mpi.CommWorld, &rank), "MPI_Comm_rank");
        Check(Mpi.CommSize(Mpi.CommWorld, &size), "MPI_Comm_size");
        started = new MpiCollectives(rank, size, $"MPI ({Mpi.Version()})");
        AppDomain.CurrentDomain.ProcessExit += (_, _) => started.Finish();
        return started;
    }

    [DllImport("libc", EntryPoint = "setenv")]
    private static extern int SetEnv(string name, string value, int overwrite);

    private static void SetNativeEnvironment(string name, string value)
    {
        if (Environment.GetEnvironmentVariable(name) is null) SetEnv(name, value, 0);
    }

    /// <summary>MPI_Finalize (at process exit; not after an abort).</summary>
    public void Finish()
    {
        if (finished) return;
        finished = true;
        int done = 0;
        if (Mpi.Finalized(&done) == Mpi.Success && done == 0) Mpi.Finalize();
    }

    public void AllReduceSum(IReadOnlyList<Tensor> buffers) => StartAllReduceSum(buffers).Wait();

    /// <summary>Packs the bucket into a pinned host buffer of its own (a few buckets may be in
    /// flight at once; the buffers are reused) and starts MPI_Iallreduce on it; the wait unpacks.</summary>
    public IPendingReduction StartAllReduceSum(IReadOnlyList<Tensor> buffers)
    {
        long total = 0;
        foreach (var t in buffers)
        {
            if (t.DType != DType.F32) throw new EngineException($"all-reduce: gradient buffers are float32; got {t.DType} ({t.Name ?? Shape.Format(t.Shape)})");
            total += t.Numel;
        }
        if (total == 0) return IPendingReduction.Done;
        int free = packs.FindIndex(b => b.Length >= total);
        var pack = free >= 0 ? packs[free] : new float[total];
        if (free >= 0) packs.RemoveAt(free);
        long at = 0;
        foreach (var t in buffers)
        {
            HostView<float>(t, out _).CopyTo(pack.AsSpan((int)at, (int)t.Numel));
            at += t.Numel;
        }
        var pinned = GCHandle.Alloc(pack, GCHandleType.Pinned);
        var requests = new nint[(total + Chunk - 1) / Chunk];
        float* p = (float*)pinned.AddrOfPinnedObject();
        for (int c = 0; c < requests.Length; c++)
        {
            long s = (long)c * Chunk;
            fixed (nint* request = &requests[c])
                Check(Mpi.Iallreduce(Mpi.InPlace, p + s, (int)Math.Min(Chunk, total - s), Mpi.Float, Mpi.OpSum, Mpi.CommWorld, request), "all-reduce");
        }
        return new PendingBucket(this, buffers, pack, pinned, requests);
    }

    /// <summary>Host buffers of finished buckets, for the next ones.</summary>
    private readonly List<float[]> packs = [];

    private sealed class PendingBucket(MpiCollectives mpi, IReadOnlyList<Tensor> buffers, float[] pack, GCHandle pinned, nint[] requests) : IPendingReduction
    {
        private bool done;

        public bool Test()
        {
            if (done) return true;
            int flag = 1;
            for (int c = 0; c < requests.Length && flag != 0; c++)
                fixed (nint* request = &requests[c])
                    Check(Mpi.Test(request, &flag, null), "all-reduce");   // a completed request becomes MPI_REQUEST_NULL, which tests complete
            return flag != 0;
        }

        public void Wait()
        {
            if (done) return;
            for (int c = 0; c < requests.Length; c++) requests[c] = mpi.Wait(requests[c], "all-reduce");
            done = true;
            pinned.Free();
            long at = 0;
            foreach (var t in buffers)
            {
                var values = pack.AsSpan((int)at, (int)t.Numel);
                if (t.Device.Kind == DeviceKind.Cpu) values.CopyTo(t.Span<float>());
                else Backend.Backends.Copy(Tensor.FromArray(values.ToArray(), t.ShapeArray), t);
                at += t.Numel;
            }
            mpi.packs.Add(pack);
        }
    }

    public void Broadcast(IReadOnlyList<Tensor> tensors, int root)
    {
        foreach (var t in tensors)
        {
            var bytes = HostBytes(t, out var host);
            Broadcast(bytes, root);
            if (host is not null && Rank != root) Backend.Backends.Copy(host, t);
        }
    }

    public void AllReduceSum(Span<double> values)
    {
        fixed (double* p = values)
        {
            nint request = 0;
            Check(Mpi.Iallreduce(Mpi.InPlace, p, values.Length, Mpi.Double, Mpi.OpSum, Mpi.CommWorld, &request), "all-reduce");
            Wait(request, "all-reduce");
        }
    }

    public void Broadcast(Span<byte> bytes, int root)
    {
        fixed (byte* p = bytes)
            for (long s = 0; s < bytes.Length; s += Chunk)
            {
                nint request = 0;
                Check(Mpi.Ibcast(p + s, (int)Math.Min(Chunk, bytes.Length - s), Mpi.Byte, root, Mpi.CommWorld, &request), "broadcast");
                Wait(request, "broadcast");
            }
    }

    public void Barrier()
    {
        nint request = 0;
        Check(Mpi.Ibarrier(Mpi.CommWorld, &request), "barrier");
        Wait(request, "barrier");
    }

    [DoesNotReturn]
    public void Abort(int exitCode)
    {
        Console.Out.Flush();
        Console.Error.Flush();
        finished = true;
        Mpi.Abort(Mpi.CommWorld, exitCode);
        Environment.Exit(exitCode);   // MPI_Abort does not return; this keeps the compiler's contract
    }

    // ------------------------------------------------------------- plumbing

    /// <summary>Polls a started nonblocking collective to completion, stopping the job when it
    /// takes longer than <see cref="Collectives.Timeout"/>.</summary>
    private nint Wait(nint request, string what)
    {
        var clock = Stopwatch.StartNew();
        int flag = 0;
        for (int polls = 0; ; polls++)
        {
            Check(Mpi.Test(&request, &flag, null), what);
            if (flag != 0) return request;   // MPI_REQUEST_NULL now
            if (clock.Elapsed > Collectives.Timeout)
            {
                Console.Error.WriteLine($"engine: rank {Rank} of {Size}: {what} got no answer from the other ranks in {Collectives.Timeout.TotalSeconds:F0} s " +
                                        $"(a rank died, hangs or is far behind; {Collectives.TimeoutVariable} sets the limit); stopping every rank");
                Abort(3);
            }
            if (polls < 1000) Thread.Yield(); else Thread.Sleep(1);
        }
    }

    private static void Check(int code, string what)
    {
        if (code != Mpi.Success) throw new EngineException($"{what}: {Mpi.Describe(code)}");
    }

    /// <summary>The tensor's elements as a host span: the tensor itself on the CPU, else a host copy.</summary>
    private static Span<T> HostView<T>(Tensor t, out Tensor? hostCopy) where T : unmanaged
    {
        hostCopy = t.Device.Kind == DeviceKind.Cpu ? null : t.To(Device.Cpu);
        return (hostCopy ?? t).Span<T>();
    }

    private static Span<byte> HostBytes(Tensor t, out Tensor? hostCopy) => t.DType switch
    {
        DType.F32 => MemoryMarshal.AsBytes(HostView<float>(t, out hostCopy)),
        DType.F64 => MemoryMarshal.AsBytes(HostView<double>(t, out hostCopy)),
        DType.I32 => MemoryMarshal.AsBytes(HostView<int>(t, out hostCopy)),
        _ => throw new EngineException($"broadcast: {t.DType} tensors are not supported ({t.Name ?? Shape.Format(t.Shape)})"),
    };
}
