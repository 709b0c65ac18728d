using System.Runtime.InteropServices;

namespace Engine.Kernels.Native;

/// <summary>The NVRTC functions the kernel compiler uses (no GPU or driver needed).</summary>
internal static unsafe partial class Nvrtc
{
    private const string Lib = "nvrtc";

    [LibraryImport(Lib)] public static partial int nvrtcVersion(out int major, out int minor);
    [LibraryImport(Lib)] public static partial IntPtr nvrtcGetErrorString(int result);
    [LibraryImport(Lib)] public static partial int nvrtcCreateProgram(out IntPtr program, byte* source, byte* name, int headerCount, byte** headers, byte** includeNames);
    [LibraryImport(Lib)] public static partial int nvrtcCompileProgram(IntPtr program, int optionCount, byte** options);
    [LibraryImport(Lib)] public static partial int nvrtcDestroyProgram(ref IntPtr program);
    [LibraryImport(Lib)] public static partial int nvrtcGetProgramLogSize(IntPtr program, out nuint size);
    [LibraryImport(Lib)] public static partial int nvrtcGetProgramLog(IntPtr program, byte* log);
    [LibraryImport(Lib)] public static partial int nvrtcGetCUBINSize(IntPtr program, out nuint size);
    [LibraryImport(Lib)] public static partial int nvrtcGetCUBIN(IntPtr program, byte* cubin);
    [LibraryImport(Lib)] public static partial int nvrtcGetPTXSize(IntPtr program, out nuint size);
    [LibraryImport(Lib)] public static partial int nvrtcGetPTX(IntPtr program, byte* ptx);
    [LibraryImport(Lib)] public static partial int nvrtcGetNumSupportedArchs(out int count);
    [LibraryImport(Lib)] public static partial int nvrtcGetSupportedArchs(int* archs);

    public static void Check(int result, string call)
    {
        if (result == 0) return;
        var text = Marshal.PtrToStringUTF8(nvrtcGetErrorString(result)) ?? $"nvrtcResult {result}";
        throw new EngineException($"NVRTC error in {call}: {text}");
    }
}
