using System.Runtime.InteropServices;

namespace Engine.Kernels.Native;

/// <summary>The NCCL calls <see cref="NcclCollectives"/> makes: the real library
/// (<see cref="Nccl"/>) or, in tests, a recorder on a dry-run device.</summary>
internal interface INccl
{
    /// <summary>"2.21.5".</summary>
    string Version { get; }
    /// <summary>ncclGetUniqueId: the 128 bytes every rank needs to join (made on rank 0).</summary>
    byte[] UniqueId();
    /// <summary>ncclCommInitRank (blocks until every rank has joined); the ncclComm_t.</summary>
    nint InitRank(int size, ReadOnlySpan<byte> uniqueId, int rank);
    void GroupStart();
    void GroupEnd();
    /// <summary>ncclAllReduce in place, float32, ncclSum, queued on <paramref name="stream"/>.</summary>
    void AllReduceSum(ulong buffer, long count, nint comm, nint stream);
    /// <summary>ncclBroadcast in place of <paramref name="bytes"/> bytes (ncclUint8) from <paramref name="root"/>.</summary>
    void Broadcast(ulong buffer, long bytes, int root, nint comm, nint stream);
    /// <summary>True when the stream's work is done; throws EngineException on an NCCL or CUDA error.</summary>
    bool Done(nint comm, nint stream);
    /// <summary>ncclCommAbort: frees the communicator without waiting for the others.</summary>
    void Abort(nint comm);
}

/// <summary>
/// The engine's own binding to NCCL (libnccl.so.2), as function pointers from
/// <see cref="NativeLibrary.GetExport"/> (no NCCL headers or toolkit needed to build). The enum
/// values are nccl.h's: ncclUint8 = 1, ncclFloat32 = 7, ncclSum = 0; ncclResult_t 0 is success and
/// 7 (ncclInProgress) means a nonblocking call is still running. ncclUniqueId is a 128-byte
/// struct passed by value.
/// </summary>
internal sealed unsafe class Nccl : INccl
{
    private const int Uint8 = 1, Float32 = 7, Sum = 0, InProgress = 7;

    [StructLayout(LayoutKind.Sequential)]
    private struct UniqueIdBytes { public fixed byte Internal[128]; }

    private readonly delegate* unmanaged<int*, int> getVersion;
    private readonly delegate* unmanaged<UniqueIdBytes*, int> getUniqueId;
    private readonly delegate* unmanaged<nint*, int, UniqueIdBytes, int, int> commInitRank;
    private readonly delegate* unmanaged<int> groupStart, groupEnd;
    private readonly delegate* unmanaged<void*, void*, nuint, int, int, nint, nint, int> allReduce;
    private readonly delegate* unmanaged<void*, void*, nuint, int, int, nint, nint, int> broadcast;
    private readonly delegate* unmanaged<nint, int*, int> commGetAsyncError;
    private readonly delegate* unmanaged<nint, int> commAbort;
    private readonly delegate* unmanaged<int, byte*> getErrorString;

    private Nccl(nint lib)
    {
        nint F(string name) => NativeLibrary.GetExport(lib, name);
        getVersion = (delegate* unmanaged<int*, int>)F("ncclGetVersion");
        getUniqueId = (delegate* unmanaged<UniqueIdBytes*, int>)F("ncclGetUniqueId");
        commInitRank = (delegate* unmanaged<nint*, int, UniqueIdBytes, int, int>)F("ncclCommInitRank");
        groupStart = (delegate* unmanaged<int>)F("ncclGroupStart");
        groupEnd = (delegate* unmanaged<int>)F("ncclGroupEnd");
        allReduce = (delegate* unmanaged<void*, void*, nuint, int, int, nint, nint, int>)F("ncclAllReduce");
        broadcast = (delegate* unmanaged<void*, void*, nuint, int, int, nint, nint, int>)F("ncclBroadcast");
        commGetAsyncError = (delegate* unmanaged<nint, int*, int>)F("ncclCommGetAsyncError");
        commAbort = (delegate* unmanaged<nint, int>)F("ncclCommAbort");
        getErrorString = (delegate* unmanaged<int, byte*>)F("ncclGetErrorString");
        int v = 0;
        Check(getVersion(&v), "ncclGetVersion");
        // Since 2.9 the code is major·10000 + minor·100 + patch (before: major·1000 + minor·100 + patch).
        Version = v >= 20900 ? $"{v / 10000}.{v / 100 % 100}.{v % 100}" : $"{v / 1000}.{v / 100 % 10}.{v % 100}";
    }

    /// <summary>Loads libnccl.so.2; throws EngineException("NCCL not available: …") when it is missing.</summary>
    public static Nccl Load()
    {
        if (!CudaLibraries.TryLoadNccl(out var lib, out var reason)) throw new EngineException(reason);
        try { return new Nccl(lib); }
        catch (EntryPointNotFoundException e) { throw new EngineException($"NCCL not available: libnccl.so.2 lacks a function ({e.Message})"); }
    }

    public string Version { get; }

    public byte[] UniqueId()
    {
        UniqueIdBytes id;
        Check(getUniqueId(&id), "ncclGetUniqueId");
        return new ReadOnlySpan<byte>(id.Internal, 128).ToArray();
    }

    public nint InitRank(int size, ReadOnlySpan<byte> uniqueId, int rank)
    {
        UniqueIdBytes id;
        uniqueId[..128].CopyTo(new Span<byte>(id.Internal, 128));
        nint comm;
        Check(commInitRank(&comm, size, id, rank), "ncclCommInitRank");
        return comm;
    }

    public void GroupStart() => Check(groupStart(), "ncclGroupStart");
    public void GroupEnd() => Check(groupEnd(), "ncclGroupEnd");

    public void AllReduceSum(ulong buffer, long count, nint comm, nint stream) =>
        Check(allReduce((void*)buffer, (void*)buffer, (nuint)count, Float32, Sum, comm, stream), "ncclAllReduce");

    public void Broadcast(ulong buffer, long bytes, int root, nint comm, nint stream) =>
        Check(broadcast((void*)buffer, (void*)buffer, (nuint)bytes, Uint8, root, comm, stream), "ncclBroadcast");

    public bool Done(nint comm, nint stream)
    {
        int async = 0;
        Check(commGetAsyncError(comm, &async), "ncclCommGetAsyncError");
        if (async is not (0 or InProgress)) Check(async, "NCCL (asynchronous error)");
        int q = Driver.cuStreamQuery(stream);
        if (q == 600) return false;   // CUDA_ERROR_NOT_READY
        Driver.Check(q, "cuStreamQuery");
        return true;
    }

    public void Abort(nint comm) => commAbort(comm);

    private void Check(int result, string call)
    {
        if (result is 0) return;
        var text = getErrorString is null ? null : Marshal.PtrToStringUTF8((nint)getErrorString(result));
        throw new EngineException($"{call}: NCCL error {result} ({text ?? "unknown"})");
    }
}
