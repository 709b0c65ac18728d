using System.Runtime.InteropServices;

namespace Engine.Kernels.Native;

/// <summary>The CUDA driver API functions the backend uses (the _v2 symbols named explicitly).
/// Handles are pointers, CUdeviceptr is ulong, CUdevice is int; every call returns a CUresult.</summary>
internal static unsafe partial class Driver
{
    private const string Lib = "cuda";

    public const int DeviceAttributeComputeCapabilityMajor = 75, DeviceAttributeComputeCapabilityMinor = 76, DeviceAttributeMultiprocessorCount = 16;

    [LibraryImport(Lib)] public static partial int cuInit(uint flags);
    [LibraryImport(Lib)] public static partial int cuDriverGetVersion(out int version);
    [LibraryImport(Lib)] public static partial int cuDeviceGetCount(out int count);
    [LibraryImport(Lib)] public static partial int cuDeviceGet(out int device, int ordinal);
    [LibraryImport(Lib)] public static partial int cuDeviceGetAttribute(out int value, int attribute, int device);
    [LibraryImport(Lib)] public static partial int cuDeviceGetName(byte* name, int length, int device);
    [LibraryImport(Lib, EntryPoint = "cuDeviceTotalMem_v2")] public static partial int cuDeviceTotalMem(out nuint bytes, int device);
    [LibraryImport(Lib)] public static partial int cuDevicePrimaryCtxRetain(out IntPtr context, int device);
    [LibraryImport(Lib)] public static partial int cuCtxSetCurrent(IntPtr context);
    [LibraryImport(Lib)] public static partial int cuCtxSynchronize();
    [LibraryImport(Lib)] public static partial int cuGetErrorName(int error, out IntPtr name);
    [LibraryImport(Lib)] public static partial int cuGetErrorString(int error, out IntPtr text);

    [LibraryImport(Lib, EntryPoint = "cuMemAlloc_v2")] public static partial int cuMemAlloc(out ulong pointer, nuint bytes);
    [LibraryImport(Lib, EntryPoint = "cuMemFree_v2")] public static partial int cuMemFree(ulong pointer);
    [LibraryImport(Lib, EntryPoint = "cuMemGetInfo_v2")] public static partial int cuMemGetInfo(out nuint free, out nuint total);
    [LibraryImport(Lib)] public static partial int cuMemHostAlloc(out IntPtr pointer, nuint bytes, uint flags);
    [LibraryImport(Lib)] public static partial int cuMemFreeHost(IntPtr pointer);
    [LibraryImport(Lib, EntryPoint = "cuMemcpyHtoDAsync_v2")] public static partial int cuMemcpyHtoDAsync(ulong dst, void* src, nuint bytes, IntPtr stream);
    [LibraryImport(Lib, EntryPoint = "cuMemcpyDtoHAsync_v2")] public static partial int cuMemcpyDtoHAsync(void* dst, ulong src, nuint bytes, IntPtr stream);
    [LibraryImport(Lib, EntryPoint = "cuMemcpyDtoDAsync_v2")] public static partial int cuMemcpyDtoDAsync(ulong dst, ulong src, nuint bytes, IntPtr stream);
    [LibraryImport(Lib)] public static partial int cuMemsetD8Async(ulong dst, byte value, nuint count, IntPtr stream);
    [LibraryImport(Lib)] public static partial int cuMemsetD16Async(ulong dst, ushort value, nuint count, IntPtr stream);
    [LibraryImport(Lib)] public static partial int cuMemsetD32Async(ulong dst, uint value, nuint count, IntPtr stream);

    [LibraryImport(Lib)] public static partial int cuModuleLoadData(out IntPtr module, void* image);
    [LibraryImport(Lib, StringMarshalling = StringMarshalling.Utf8)] public static partial int cuModuleGetFunction(out IntPtr function, IntPtr module, string name);
    [LibraryImport(Lib)]
    public static partial int cuLaunchKernel(IntPtr function, uint gridX, uint gridY, uint gridZ, uint blockX, uint blockY, uint blockZ,
                                             uint sharedBytes, IntPtr stream, void** parameters, void** extra);
    [LibraryImport(Lib)] public static partial int cuStreamCreate(out IntPtr stream, uint flags);
    [LibraryImport(Lib)] public static partial int cuStreamSynchronize(IntPtr stream);
    /// <summary>0 when the stream's work is done, 600 (CUDA_ERROR_NOT_READY) while it runs.</summary>
    [LibraryImport(Lib)] public static partial int cuStreamQuery(IntPtr stream);

    /// <summary>"cuMemAlloc: CUDA_ERROR_OUT_OF_MEMORY (out of memory)".</summary>
    public static string Describe(string call, int result)
    {
        string name = $"CUresult {result}", text = "";
        try
        {
            if (cuGetErrorName(result, out var n) == 0 && n != IntPtr.Zero) name = Marshal.PtrToStringUTF8(n) ?? name;
            if (cuGetErrorString(result, out var s) == 0 && s != IntPtr.Zero) text = Marshal.PtrToStringUTF8(s) ?? "";
        }
        catch (Exception e) when (e is DllNotFoundException or EntryPointNotFoundException) { }
        return text.Length > 0 ? $"{call}: {name} ({text})" : $"{call}: {name}";
    }

    /// <summary>Throws an EngineException naming the call and the CUDA error unless it succeeded.</summary>
    public static void Check(int result, string call)
    {
        if (result != 0) throw new EngineException("CUDA error in " + Describe(call, result));
    }
}
