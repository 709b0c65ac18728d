using System.Runtime.InteropServices;
using Engine.Kernels.Native;

namespace Engine.Kernels;

/// <summary>What a kernel parameter is, as far as cuLaunchKernel's argument buffer goes: the
/// launcher checks every launch against the kernel's C signature (<see cref="KernelSources.Signatures"/>).</summary>
internal enum KernelArgKind : byte { Pointer, Int32, Int64, Float32, Float64, Layout }

/// <summary>One kernel argument: a value of up to 8 bytes (pointers, integers, floats) or the
/// address of a larger struct passed by value (<see cref="Layout"/>), with its kind.</summary>
[StructLayout(LayoutKind.Sequential)]
internal readonly unsafe struct KernelArg
{
    // The value's bytes start at offset 0 of the struct: the launcher hands &arg to the driver,
    // which reads as many bytes as the kernel's parameter has (little-endian, so an int is the low 4).
    private readonly ulong bits;
    public readonly void* Struct;
    public readonly KernelArgKind Kind;

    private KernelArg(ulong bits, void* structPointer, KernelArgKind kind) { this.bits = bits; Struct = structPointer; Kind = kind; }

    public ulong Bits => bits;
    public static implicit operator KernelArg(ulong devicePointer) => new(devicePointer, null, KernelArgKind.Pointer);
    public static implicit operator KernelArg(long value) => new((ulong)value, null, KernelArgKind.Int64);
    public static implicit operator KernelArg(int value) => new((uint)value, null, KernelArgKind.Int32);
    public static implicit operator KernelArg(float value) => new(BitConverter.SingleToUInt32Bits(value), null, KernelArgKind.Float32);
    public static implicit operator KernelArg(double value) => new(BitConverter.DoubleToUInt64Bits(value), null, KernelArgKind.Float64);
    public static KernelArg Of(Layout* layout) => new(0, layout, KernelArgKind.Layout);
}

/// <summary>Shape and strides handed to broadcasting and permute kernels by value (common.cuh's struct Layout).</summary>
[StructLayout(LayoutKind.Sequential)]
internal unsafe struct Layout
{
    public const int MaxRank = 8;
    public int Rank;
    private int padding;
    public fixed long Shape[MaxRank];
    public fixed long Stride0[MaxRank];
    public fixed long Stride1[MaxRank];
}

/// <summary>One launch as a dry-run device records it: the kernel, the launch shape and every
/// argument (kind and value; a Layout's value is 0).</summary>
internal sealed record KernelLaunch(string Kernel, uint GridX, uint GridY, uint Block, KernelArgKind[] Kinds, ulong[] Values);

/// <summary>
/// One GPU: the primary context made current, a stream, the loaded kernel modules (compiled for
/// the device's own architecture through <see cref="KernelCompiler"/>), a cuBLAS handle and the
/// caching allocator. Every entry point makes the context current first, so any thread may call.
/// Every launch is checked against the kernel's C signature (argument count and kinds) and the
/// launch limits before it reaches the driver.
///
/// A dry-run device (<see cref="DryRun"/>, for tests without a GPU) does everything on the host
/// side except talking to the driver: launches are checked and recorded, memory is fake
/// addresses whose every use (kernel pointer arguments, copies, memsets) is checked against the
/// live allocations.
///
/// An emulated device (<see cref="Emulated"/>) computes without a GPU: memory is host memory
/// (poisoned with 0xFF bytes, NaN in floats, when allocated and when returned; guard bytes
/// around each buffer), launches are marshalled as for cuLaunchKernel and run by the CPU
/// emulator (<see cref="CudaEmulator"/>: the same kernel sources compiled as C++), cuBLAS calls
/// by <see cref="EmulatedBlas"/>. Every check of the dry run applies too.
/// </summary>
internal sealed unsafe class CudaDevice
{
    private readonly IntPtr context;
    private readonly Dictionary<string, (IntPtr Function, KernelArgKind[] Signature)> functions = new();
    private readonly Action<KernelLaunch>? dryRun;
    private readonly CudaEmulator? emulator;
    private readonly object stagingGate = new();
    private IntPtr staging;

    /// <summary>ENGINE_CUDA_SYNC=1: wait for every kernel right after its launch, so an error in
    /// it (an illegal address, say) is reported with the kernel's name instead of by whichever
    /// later call happens to synchronize. Slow; for debugging.</summary>
    public static bool SynchronizeEachLaunch { get; set; } = Environment.GetEnvironmentVariable("ENGINE_CUDA_SYNC") == "1";

    /// <summary>Bytes of the pinned host buffer that host↔device copies go through.</summary>
    public const int StagingBytes = 8 << 20;

    public int Index { get; }
    public string Name { get; }
    public string Arch { get; }
    public int Multiprocessors { get; }
    public IntPtr Stream { get; }
    public IntPtr Cublas { get; }
    public DeviceAllocator Allocator { get; }
    public bool IsDryRun => dryRun is not null;
    /// <summary>Emulated on the CPU (<see cref="Emulated"/>).</summary>
    public bool IsEmulated => emulator is not null;
    /// <summary>A real GPU behind the driver (neither a dry run nor emulated).</summary>
    public bool IsReal => dryRun is null && emulator is null;
    /// <summary>The emulator of an emulated device.</summary>
    public CudaEmulator? Emulator => emulator;

    public CudaDevice(int index)
    {
        if (!CudaAvailability.IsAvailable) throw new EngineException(CudaAvailability.Message);
        Driver.Check(Driver.cuDeviceGetCount(out int count), "cuDeviceGetCount");
        if (index < 0 || index >= count) throw new EngineException($"CUDA not available: device cuda:{index} does not exist ({count} device(s) visible)");
        Index = index;
        Driver.Check(Driver.cuDeviceGet(out int device, index), "cuDeviceGet");
        Driver.Check(Driver.cuDevicePrimaryCtxRetain(out context, device), "cuDevicePrimaryCtxRetain");
        MakeCurrent();
        Driver.Check(Driver.cuDeviceGetAttribute(out int major, Driver.DeviceAttributeComputeCapabilityMajor, device), "cuDeviceGetAttribute");
        Driver.Check(Driver.cuDeviceGetAttribute(out int minor, Driver.DeviceAttributeComputeCapabilityMinor, device), "cuDeviceGetAttribute");
        Driver.Check(Driver.cuDeviceGetAttribute(out int sms, Driver.DeviceAttributeMultiprocessorCount, device), "cuDeviceGetAttribute");
        Multiprocessors = sms;
        Arch = $"sm_{major}{minor}";
        var name = stackalloc byte[256];
        Driver.Check(Driver.cuDeviceGetName(name, 256, device), "cuDeviceGetName");
        Name = Marshal.PtrToStringUTF8((IntPtr)name) ?? "GPU";
        Driver.Check(Driver.cuStreamCreate(out var stream, 0), "cuStreamCreate");
        Stream = stream;
        Allocator = new DeviceAllocator(this);
        LoadKernels();
        if (!CudaLibraries.TryLoadCublas(out var reason)) throw new EngineException("CUDA not available: " + reason);
        Native.Cublas.Check(Native.Cublas.cublasCreate(out var handle), "cublasCreate");
        Cublas = handle;
        Native.Cublas.Check(Native.Cublas.cublasSetStream(handle, Stream), "cublasSetStream");
    }

    private CudaDevice(int index, string name, string arch, int multiprocessors, Action<KernelLaunch>? record, CudaEmulator? emulator)
    {
        Index = index;
        Name = name;
        Arch = arch;
        Multiprocessors = multiprocessors;
        dryRun = record;
        this.emulator = emulator;
        Allocator = new DeviceAllocator(this);
        foreach (var family in KernelSources.Families)
            foreach (var (kernel, signature) in KernelSources.Signatures(family))
            {
                if (emulator is not null && !emulator.Defines(kernel))
                    throw new EngineException($"the CUDA emulator ({emulator.Libraries[0].Path}) does not define kernel {kernel} of {family}.cu: rebuild it (dotnet build)");
                functions[kernel] = (IntPtr.Zero, signature);
            }
    }

    /// <summary>A device that needs no GPU, driver or NVRTC: launches are checked as on a GPU and
    /// handed to <paramref name="record"/> instead of run; memory is fake and checked (a test hook).</summary>
    public static CudaDevice DryRun(Action<KernelLaunch> record, int index = 0, string arch = "sm_90", int multiprocessors = 132) =>
        new(index, "dry run (no GPU)", arch, multiprocessors, record, null);

    /// <summary>A device emulated on the CPU (an H100's 132 multiprocessors, sm_90 limits): every
    /// kernel runs through <paramref name="emulator"/>, GEMMs through <see cref="EmulatedBlas"/>.</summary>
    public static CudaDevice Emulated(CudaEmulator emulator, int index = 0) =>
        new(index, "CPU emulator (no GPU)", "sm_90", 132, null, emulator);

    public void MakeCurrent()
    {
        if (IsReal) Driver.Check(Driver.cuCtxSetCurrent(context), "cuCtxSetCurrent");
    }

    public void Synchronize()
    {
        if (IsReal) Driver.Check(Driver.cuStreamSynchronize(Stream), "cuStreamSynchronize");
    }

    /// <summary>Compiles (or reads from the cache) every family for this device's arch and loads
    /// it. An NVRTC too old for the arch falls back to PTX for its newest virtual arch, which the
    /// driver compiles when loading.</summary>
    private void LoadKernels()
    {
        string arch = Arch;
        var supported = KernelCompiler.SupportedArchs();
        int wanted = int.Parse(Arch[3..]);
        if (!supported.Contains(wanted)) arch = $"compute_{supported.Where(a => a <= wanted).DefaultIfEmpty(supported.Max()).Max()}";
        foreach (var family in KernelSources.Families)
        {
            var compiled = KernelCompiler.Compile(family, arch);
            IntPtr module;
            fixed (byte* image = compiled.Image) Driver.Check(Driver.cuModuleLoadData(out module, image), $"cuModuleLoadData({family}, {arch})");
            foreach (var (kernel, signature) in KernelSources.Signatures(family))
            {
                Driver.Check(Driver.cuModuleGetFunction(out var fn, module, kernel), $"cuModuleGetFunction({kernel})");
                functions[kernel] = (fn, signature);
            }
        }
    }

    /// <summary>Launches a kernel on this device's stream. Arguments are passed as the kernel declares them.</summary>
    public void Launch(string kernel, uint grid, uint block, params ReadOnlySpan<KernelArg> args) => Launch(kernel, grid, 1, block, args);

    public void Launch(string kernel, uint gridX, uint gridY, uint block, ReadOnlySpan<KernelArg> args)
    {
        if (!functions.TryGetValue(kernel, out var f)) throw new EngineException($"CUDA kernel {kernel} is not defined by any kernel file");
        CheckArguments(kernel, f.Signature, args);
        if (gridX == 0 || gridY == 0) return;
        // Limits of every GPU the backend targets; the kernels' block reductions need whole warps.
        if (block == 0 || block > 1024 || block % 32 != 0)
            throw new EngineException($"CUDA launch of {kernel}: {block} threads per block (must be a multiple of 32, at most 1024)");
        if (gridX > int.MaxValue || gridY > 65535)
            throw new EngineException($"CUDA launch of {kernel}: grid {gridX}×{gridY} exceeds the limits (2³¹−1 × 65535)");
        if (dryRun is not null)
        {
            var kinds = new KernelArgKind[args.Length];
            var values = new ulong[args.Length];
            for (int i = 0; i < args.Length; i++)
            {
                kinds[i] = args[i].Kind;
                values[i] = args[i].Bits;
                if (args[i].Kind == KernelArgKind.Pointer && args[i].Bits != 0) Allocator.CheckLive(args[i].Bits, 0, $"argument {i} of {kernel}");
            }
            dryRun(new KernelLaunch(kernel, gridX, gridY, block, kinds, values));
            return;
        }
        var pointers = stackalloc void*[args.Length];
        fixed (KernelArg* a = args)
        {
            for (int i = 0; i < args.Length; i++) pointers[i] = a[i].Struct != null ? a[i].Struct : (byte*)&a[i];
            if (emulator is not null)
            {
                var buffers = new List<(ulong, long)>();
                for (int i = 0; i < args.Length; i++)
                    if (args[i].Kind == KernelArgKind.Pointer && args[i].Bits != 0)
                    {
                        var buffer = Allocator.BufferOf(args[i].Bits, $"argument {i} of {kernel}");
                        if (!buffers.Contains(buffer)) buffers.Add(buffer);
                    }
                emulator.Launch(kernel, gridX, gridY, block, pointers, buffers, k => Allocator.CheckGuards(buffers, k));
                return;
            }
            Driver.Check(Driver.cuLaunchKernel(f.Function, gridX, gridY, 1, block, 1, 1, 0, Stream, pointers, null), $"cuLaunchKernel({kernel})");
        }
        if (SynchronizeEachLaunch)
            Driver.Check(Driver.cuStreamSynchronize(Stream), $"{kernel} (grid {gridX}×{gridY}, block {block}; ENGINE_CUDA_SYNC=1)");
    }

    /// <summary>Throws unless the arguments match the kernel's C parameters one for one.</summary>
    private static void CheckArguments(string kernel, KernelArgKind[] signature, ReadOnlySpan<KernelArg> args)
    {
        bool ok = args.Length == signature.Length;
        for (int i = 0; ok && i < args.Length; i++) ok = args[i].Kind == signature[i];
        if (ok) return;
        var given = new string[args.Length];
        for (int i = 0; i < args.Length; i++) given[i] = args[i].Kind.ToString();
        throw new EngineException($"CUDA launch of {kernel}: arguments ({string.Join(", ", given)}) do not match its parameters ({string.Join(", ", signature)})");
    }

    // ------------------------------------------------------------- memory operations on the stream

    public void MemsetD8(ulong dst, byte value, long count)
    {
        if (count <= 0) return;
        if (!IsReal)
        {
            Allocator.CheckLive(dst, count, "cuMemsetD8Async");
            if (IsEmulated) new Span<byte>((void*)dst, checked((int)count)).Fill(value);
            return;
        }
        Driver.Check(Driver.cuMemsetD8Async(dst, value, (nuint)count, Stream), "cuMemsetD8Async");
    }

    public void MemsetD16(ulong dst, ushort value, long count)
    {
        if (count <= 0) return;
        if (!IsReal)
        {
            Allocator.CheckLive(dst, count * 2, "cuMemsetD16Async");
            if (IsEmulated) new Span<ushort>((void*)dst, checked((int)count)).Fill(value);
            return;
        }
        Driver.Check(Driver.cuMemsetD16Async(dst, value, (nuint)count, Stream), "cuMemsetD16Async");
    }

    public void MemsetD32(ulong dst, uint value, long count)
    {
        if (count <= 0) return;
        if (!IsReal)
        {
            Allocator.CheckLive(dst, count * 4, "cuMemsetD32Async");
            if (IsEmulated) new Span<uint>((void*)dst, checked((int)count)).Fill(value);
            return;
        }
        Driver.Check(Driver.cuMemsetD32Async(dst, value, (nuint)count, Stream), "cuMemsetD32Async");
    }

    public void CopyDeviceToDevice(ulong dst, ulong src, long bytes)
    {
        if (bytes <= 0) return;
        if (!IsReal)
        {
            Allocator.CheckLive(src, bytes, "cuMemcpyDtoDAsync source");
            Allocator.CheckLive(dst, bytes, "cuMemcpyDtoDAsync destination");
            if (IsEmulated) Buffer.MemoryCopy((void*)src, (void*)dst, bytes, bytes);
            return;
        }
        Driver.Check(Driver.cuMemcpyDtoDAsync(dst, src, (nuint)bytes, Stream), "cuMemcpyDtoDAsync");
    }

    /// <summary>Host → device through the pinned staging buffer, chunk by chunk; returns when the
    /// host memory may be reused (the copy has reached the device).</summary>
    public void CopyFromHost(ulong dst, byte* src, long bytes)
    {
        if (bytes <= 0) return;
        if (!IsReal)
        {
            Allocator.CheckLive(dst, bytes, "cuMemcpyHtoDAsync");
            if (IsEmulated) Buffer.MemoryCopy(src, (void*)dst, bytes, bytes);
            return;
        }
        lock (stagingGate)
        {
            var buffer = Staging();
            for (long done = 0; done < bytes; done += StagingBytes)
            {
                long chunk = Math.Min(StagingBytes, bytes - done);
                Buffer.MemoryCopy(src + done, (void*)buffer, StagingBytes, chunk);
                Driver.Check(Driver.cuMemcpyHtoDAsync(dst + (ulong)done, (void*)buffer, (nuint)chunk, Stream), "cuMemcpyHtoDAsync");
                Synchronize(); // the staging buffer is reused by the next chunk
            }
        }
    }

    /// <summary>Device → host through the pinned staging buffer; waits for every earlier kernel
    /// on the stream (the copy is queued behind them) before the host reads. A dry run writes zeros.</summary>
    public void CopyToHost(byte* dst, ulong src, long bytes)
    {
        if (bytes <= 0) return;
        if (!IsReal)
        {
            Allocator.CheckLive(src, bytes, "cuMemcpyDtoHAsync");
            if (IsEmulated) Buffer.MemoryCopy((void*)src, dst, bytes, bytes);
            else new Span<byte>(dst, checked((int)bytes)).Clear();
            return;
        }
        lock (stagingGate)
        {
            var buffer = Staging();
            for (long done = 0; done < bytes; done += StagingBytes)
            {
                long chunk = Math.Min(StagingBytes, bytes - done);
                Driver.Check(Driver.cuMemcpyDtoHAsync((void*)buffer, src + (ulong)done, (nuint)chunk, Stream), "cuMemcpyDtoHAsync");
                Synchronize();
                Buffer.MemoryCopy((void*)buffer, dst + done, chunk, chunk);
            }
        }
    }

    /// <summary>The pinned staging buffer (allocated on first use; callers hold stagingGate).</summary>
    private IntPtr Staging()
    {
        if (staging == IntPtr.Zero)
        {
            Driver.Check(Driver.cuMemHostAlloc(out var h, StagingBytes, 0), "cuMemHostAlloc");
            staging = h;
        }
        return staging;
    }
}

/// <summary>
/// A caching device allocator: freed buffers are kept by rounded size and handed to the next
/// request of that size, so steady-state training steps never call cuMemAlloc or cuMemFree.
/// All work runs on one stream, so a buffer released by a step can be reused by later work on
/// that stream without waiting. When cuMemAlloc runs out of memory the cache is emptied and the
/// allocation retried once. On a dry-run device the addresses are fake (never dereferenced) and
/// every buffer handed out is tracked, so uses of memory that is not live, and double returns, throw.
/// On an emulated device buffers are host memory, tracked the same way, filled with
/// <see cref="Poison"/> bytes when handed out fresh and when returned (a kernel reading memory
/// nobody wrote sees NaN), with <see cref="GuardBytes"/> guard bytes on either side that are
/// checked after every launch.
/// </summary>
internal sealed unsafe class DeviceAllocator(CudaDevice device)
{
    /// <summary>Guard bytes before and after every emulated buffer (cuMemAlloc's 256-byte alignment kept).</summary>
    public const int GuardBytes = 256;
    /// <summary>The byte fresh and returned emulated memory is filled with (0xFFFFFFFF is a NaN float).</summary>
    public const byte Poison = 0xFF;
    private const byte Guard = 0xA5;

    private readonly Dictionary<long, Stack<ulong>> free = new();
    private readonly Dictionary<ulong, long> live = new(); // dry run and emulated: base → rounded bytes
    private ulong nextFake = 0x7f00_0000_0000UL;

    public long DriverAllocations { get; private set; }
    public long CachedBytes { get; private set; }
    public long InUseBytes { get; private set; }

    /// <summary>Sizes round up to 512 bytes below 1 MiB and to 1 MiB above, so similar sizes share buffers.</summary>
    public static long RoundedSize(long bytes) =>
        bytes <= 0 ? 512 : bytes < (1 << 20) ? (bytes + 511) / 512 * 512 : (bytes + (1 << 20) - 1) / (1 << 20) * (1 << 20);

    public ulong Allocate(long bytes, out long rounded)
    {
        rounded = RoundedSize(bytes);
        lock (free)
        {
            InUseBytes += rounded;
            if (free.TryGetValue(rounded, out var stack) && stack.Count > 0)
            {
                CachedBytes -= rounded;
                var reused = stack.Pop();
                if (!device.IsReal) live[reused] = rounded;
                return reused;
            }
            if (device.IsDryRun)
            {
                ulong fake = nextFake;
                nextFake += (ulong)rounded + 4096; // a gap, so one buffer's end is not the next one's start
                live[fake] = rounded;
                DriverAllocations++;
                return fake;
            }
            if (device.IsEmulated)
            {
                var block = (byte*)NativeMemory.AlignedAlloc((nuint)(rounded + 2 * GuardBytes), 256);
                new Span<byte>(block, GuardBytes).Fill(Guard);
                new Span<byte>(block + GuardBytes, checked((int)rounded)).Fill(Poison);
                new Span<byte>(block + GuardBytes + rounded, GuardBytes).Fill(Guard);
                ulong start = (ulong)(block + GuardBytes);
                live[start] = rounded;
                DriverAllocations++;
                return start;
            }
        }
        int r = Driver.cuMemAlloc(out ulong p, (nuint)rounded);
        if (r == 2) // CUDA_ERROR_OUT_OF_MEMORY: give the cache back and retry once
        {
            EmptyCache();
            r = Driver.cuMemAlloc(out p, (nuint)rounded);
        }
        if (r != 0)
        {
            long inUse;
            lock (free) { InUseBytes -= rounded; inUse = InUseBytes; }
            if (r == 2 && Driver.cuMemGetInfo(out nuint freeBytes, out nuint totalBytes) == 0)
                throw new EngineException(OutOfMemoryMessage(device.Index, rounded, (long)freeBytes, (long)totalBytes, inUse));
            throw new EngineException($"CUDA error in {Driver.Describe("cuMemAlloc", r)} allocating {rounded} bytes on cuda:{device.Index}");
        }
        lock (free) DriverAllocations++;
        return p;
    }

    /// <summary>The one line for a device allocation that failed after the cache was given back:
    /// what was asked for, what the device has free, what the engine's tensors hold, what to change.</summary>
    public static string OutOfMemoryMessage(int index, long requested, long freeBytes, long totalBytes, long inUse)
    {
        static string MiB(long bytes) => $"{bytes / (1024.0 * 1024.0):F0} MiB";
        return $"cuda:{index} is out of memory: {MiB(requested)} requested, {MiB(freeBytes)} free of {MiB(totalBytes)} " +
               $"(the engine's tensors hold {MiB(inUse)}); try a smaller --batch with --grad-accum, --dtype bf16 or a shorter --max-len";
    }

    public void Return(ulong pointer, long rounded)
    {
        lock (free)
        {
            if (!device.IsReal && !(live.Remove(pointer, out var size) && size == rounded))
                throw new EngineException($"device buffer 0x{pointer:x} ({rounded} bytes) returned to the allocator but not live (double release?)");
            if (device.IsEmulated) new Span<byte>((void*)pointer, checked((int)rounded)).Fill(Poison);
            InUseBytes -= rounded;
            if (!free.TryGetValue(rounded, out var stack)) free[rounded] = stack = new Stack<ulong>();
            stack.Push(pointer);
            CachedBytes += rounded;
        }
    }

    /// <summary>Dry run and emulated: throws unless [pointer, pointer + bytes) lies inside one live buffer.</summary>
    public void CheckLive(ulong pointer, long bytes, string use) => BufferOf(pointer, use, bytes);

    /// <summary>The live buffer (start, bytes) that [pointer, pointer + bytes) lies in; throws when none.</summary>
    public (ulong Start, long Bytes) BufferOf(ulong pointer, string use, long bytes = 0)
    {
        lock (free)
        {
            foreach (var (start, size) in live)
                if (pointer >= start && pointer + (ulong)bytes <= start + (ulong)size) return (start, size);
        }
        throw new EngineException($"{use}: device memory 0x{pointer:x} (+{bytes} bytes) is not inside a live buffer");
    }

    /// <summary>Emulated: throws when a guard byte around one of <paramref name="buffers"/> changed (a kernel wrote past a buffer).</summary>
    public void CheckGuards(IReadOnlyList<(ulong Start, long Bytes)> buffers, string kernel)
    {
        foreach (var (start, size) in buffers)
        {
            var before = new ReadOnlySpan<byte>((byte*)start - GuardBytes, GuardBytes);
            var after = new ReadOnlySpan<byte>((byte*)start + size, GuardBytes);
            int b = before.IndexOfAnyExcept(Guard), a = after.IndexOfAnyExcept(Guard);
            if (b < 0 && a < 0) continue;
            string where = a >= 0 ? $"{a} bytes past its end" : $"{GuardBytes - b} bytes before its start";
            throw new EngineException($"CUDA emulator: {kernel} wrote outside the buffer at 0x{start:x} ({size} bytes): {where}");
        }
    }

    /// <summary>Frees every cached buffer (waits for the stream first).</summary>
    public void EmptyCache()
    {
        device.Synchronize();
        lock (free)
        {
            if (device.IsReal)
                foreach (var stack in free.Values)
                    while (stack.Count > 0) Driver.Check(Driver.cuMemFree(stack.Pop()), "cuMemFree");
            if (device.IsEmulated)
                foreach (var stack in free.Values)
                    while (stack.Count > 0) NativeMemory.AlignedFree((byte*)stack.Pop() - GuardBytes);
            free.Clear();
            CachedBytes = 0;
        }
    }
}

/// <summary>Device memory of one tensor storage (from the caching allocator).</summary>
public sealed class CudaStorage : Storage
{
    internal CudaStorage(Device device, DType dtype, long length, ulong pointer, long allocatedBytes) : base(device, dtype, length)
    {
        Pointer = pointer;
        AllocatedBytes = allocatedBytes;
    }

    /// <summary>The CUdeviceptr of element 0.</summary>
    public ulong Pointer { get; }
    internal long AllocatedBytes { get; }
    internal bool Returned { get; set; }
}
