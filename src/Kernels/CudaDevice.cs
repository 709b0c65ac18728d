using System.Runtime.InteropServices;
using Engine.Kernels.Native;

namespace Engine.Kernels;

/// <summary>One kernel argument: a value of up to 8 bytes (pointers, integers, floats) or the
/// address of a larger struct passed by value (<see cref="Layout"/>).</summary>
internal readonly unsafe struct KernelArg
{
    private readonly ulong bits;
    public readonly void* Struct;

    private KernelArg(ulong bits, void* structPointer) { this.bits = bits; Struct = structPointer; }

    public ulong Bits => bits;
    public static implicit operator KernelArg(ulong devicePointer) => new(devicePointer, null);
    public static implicit operator KernelArg(long value) => new((ulong)value, null);
    public static implicit operator KernelArg(int value) => new((uint)value, null);
    public static implicit operator KernelArg(float value) => new(BitConverter.SingleToUInt32Bits(value), null);
    public static implicit operator KernelArg(double value) => new(BitConverter.DoubleToUInt64Bits(value), null);
    public static KernelArg Of(Layout* layout) => new(0, layout);
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

/// <summary>
/// One GPU: the primary context made current, a stream, the loaded kernel modules (compiled for
/// the device's own architecture through <see cref="KernelCompiler"/>), a cuBLAS handle and the
/// caching allocator. Every entry point makes the context current first, so any thread may call.
/// </summary>
internal sealed unsafe class CudaDevice
{
    private readonly IntPtr context;
    private readonly Dictionary<string, IntPtr> functions = new();

    public int Index { get; }
    public string Name { get; }
    public string Arch { get; }
    public int Multiprocessors { get; }
    public IntPtr Stream { get; }
    public IntPtr Cublas { get; }
    public DeviceAllocator Allocator { get; }

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

    public void MakeCurrent() => Driver.Check(Driver.cuCtxSetCurrent(context), "cuCtxSetCurrent");

    public void Synchronize() => Driver.Check(Driver.cuStreamSynchronize(Stream), "cuStreamSynchronize");

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
            foreach (var kernel in KernelSources.DeclaredKernels(family))
            {
                Driver.Check(Driver.cuModuleGetFunction(out var fn, module, kernel), $"cuModuleGetFunction({kernel})");
                functions[kernel] = fn;
            }
        }
    }

    /// <summary>Launches a kernel on this device's stream. Arguments are passed as the kernel declares them.</summary>
    public void Launch(string kernel, uint grid, uint block, params ReadOnlySpan<KernelArg> args) => Launch(kernel, grid, 1, block, args);

    public void Launch(string kernel, uint gridX, uint gridY, uint block, ReadOnlySpan<KernelArg> args)
    {
        if (!functions.TryGetValue(kernel, out var fn)) throw new EngineException($"CUDA kernel {kernel} is not defined by any kernel file");
        if (gridX == 0 || gridY == 0) return;
        var pointers = stackalloc void*[args.Length];
        fixed (KernelArg* a = args)
        {
            for (int i = 0; i < args.Length; i++) pointers[i] = a[i].Struct != null ? a[i].Struct : (byte*)&a[i];
            Driver.Check(Driver.cuLaunchKernel(fn, gridX, gridY, 1, block, 1, 1, 0, Stream, pointers, null), $"cuLaunchKernel({kernel})");
        }
    }
}

/// <summary>
/// A caching device allocator: freed buffers are kept by rounded size and handed to the next
/// request of that size, so steady-state training steps never call cuMemAlloc or cuMemFree.
/// All work runs on one stream, so a buffer released by a step can be reused by later work on
/// that stream without waiting. When cuMemAlloc runs out of memory the cache is emptied and the
/// allocation retried once.
/// </summary>
internal sealed class DeviceAllocator(CudaDevice device)
{
    private readonly Dictionary<long, Stack<ulong>> free = new();

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
                return stack.Pop();
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
            lock (free) InUseBytes -= rounded;
            throw new EngineException($"CUDA error in {Driver.Describe("cuMemAlloc", r)} allocating {rounded} bytes on cuda:{device.Index}");
        }
        DriverAllocations++;
        return p;
    }

    public void Return(ulong pointer, long rounded)
    {
        lock (free)
        {
            InUseBytes -= rounded;
            if (!free.TryGetValue(rounded, out var stack)) free[rounded] = stack = new Stack<ulong>();
            stack.Push(pointer);
            CachedBytes += rounded;
        }
    }

    /// <summary>Frees every cached buffer (waits for the stream first).</summary>
    public void EmptyCache()
    {
        device.Synchronize();
        lock (free)
        {
            foreach (var stack in free.Values)
                while (stack.Count > 0) Driver.Check(Driver.cuMemFree(stack.Pop()), "cuMemFree");
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
