using System.Runtime.InteropServices;
using System.Security.Cryptography;
using System.Text;
using Engine.Kernels.Native;

namespace Engine.Kernels;

/// <summary>One compiled kernel family: the image (CUBIN, or PTX when NVRTC cannot target the
/// arch directly), the arch, the kernels it defines and NVRTC's log.</summary>
public sealed record CompiledKernels(string Family, string Arch, byte[] Image, bool IsCubin, IReadOnlyList<string> Kernels, string Log, bool FromCache);

/// <summary>
/// Compiles the kernel files with NVRTC for one GPU architecture (sm_XY) and caches the images
/// on disk. The cache key is a SHA-256 of (source, header, options, NVRTC version, arch); files
/// are written atomically (a temporary file in the same folder, then a rename), so concurrent
/// processes never read a half-written image. The folder is ENGINE_KERNEL_CACHE, else
/// $XDG_CACHE_HOME/engine/kernels, else ~/.cache/engine/kernels.
/// </summary>
public static unsafe class KernelCompiler
{
    /// <summary>Options every family is compiled with (besides the architecture).</summary>
    public static IReadOnlyList<string> BaseOptions { get; } = ["--std=c++17"];

    public static string CacheDirectory
    {
        get
        {
            if (Environment.GetEnvironmentVariable("ENGINE_KERNEL_CACHE") is { Length: > 0 } over) return over;
            var xdg = Environment.GetEnvironmentVariable("XDG_CACHE_HOME");
            if (string.IsNullOrEmpty(xdg))
                xdg = Path.Combine(Environment.GetFolderPath(Environment.SpecialFolder.UserProfile), ".cache");
            return Path.Combine(xdg, "engine", "kernels");
        }
    }

    /// <summary>NVRTC's version as "major.minor" (loads NVRTC; throws when it is absent).</summary>
    public static string NvrtcVersion
    {
        get
        {
            RequireNvrtc();
            Nvrtc.Check(Nvrtc.nvrtcVersion(out int major, out int minor), "nvrtcVersion");
            return $"{major}.{minor}";
        }
    }

    /// <summary>The real architectures this NVRTC can emit a CUBIN for (e.g. 50 … 90).</summary>
    public static IReadOnlyList<int> SupportedArchs()
    {
        RequireNvrtc();
        Nvrtc.Check(Nvrtc.nvrtcGetNumSupportedArchs(out int n), "nvrtcGetNumSupportedArchs");
        var archs = new int[n];
        fixed (int* p = archs) Nvrtc.Check(Nvrtc.nvrtcGetSupportedArchs(p), "nvrtcGetSupportedArchs");
        return archs;
    }

    /// <summary>The cache key: hex SHA-256 of everything that determines the image.</summary>
    public static string CacheKey(string source, string header, IEnumerable<string> options, string nvrtcVersion, string arch)
    {
        var text = new StringBuilder();
        text.Append("source\0").Append(source).Append("\0header\0").Append(header).Append("\0options\0");
        foreach (var o in options) text.Append(o).Append('\0');
        text.Append("nvrtc\0").Append(nvrtcVersion).Append("\0arch\0").Append(arch);
        return Convert.ToHexStringLower(SHA256.HashData(Encoding.UTF8.GetBytes(text.ToString())));
    }

    /// <summary>Writes <paramref name="bytes"/> to <paramref name="path"/> atomically: a unique
    /// temporary file in the same folder, then a rename over the destination.</summary>
    public static void WriteAtomically(string path, byte[] bytes)
    {
        var dir = Path.GetDirectoryName(Path.GetFullPath(path))!;
        Directory.CreateDirectory(dir);
        var tmp = Path.Combine(dir, $".{Path.GetFileName(path)}.{Environment.ProcessId}.{Guid.NewGuid():N}.tmp");
        try
        {
            File.WriteAllBytes(tmp, bytes);
            File.Move(tmp, path, overwrite: true);
        }
        finally
        {
            if (File.Exists(tmp)) File.Delete(tmp);
        }
    }

    /// <summary>Compiles one family for <paramref name="arch"/> ("sm_90"), through the cache.</summary>
    public static CompiledKernels Compile(string family, string arch, bool useCache = true)
    {
        RequireNvrtc();
        var source = KernelSources.Source(family);
        var header = KernelSources.Header;
        var options = BaseOptions.Append($"--gpu-architecture={arch}").ToArray();
        var version = NvrtcVersion;
        bool cubin = arch.StartsWith("sm_", StringComparison.Ordinal);
        var key = CacheKey(source, header, options, version, arch);
        var file = Path.Combine(CacheDirectory, $"{family}-{arch}-{key[..24]}.{(cubin ? "cubin" : "ptx")}");
        if (useCache && File.Exists(file))
        {
            var cached = File.ReadAllBytes(file);
            if (cached.Length > 0) return new(family, arch, cached, cubin, ListKernels(family, cached, cubin), "", FromCache: true);
        }
        var (image, log) = Run(family, source, header, options, cubin);
        if (useCache)
        {
            try { WriteAtomically(file, image); }
            catch (Exception e) when (e is IOException or UnauthorizedAccessException) { /* a read-only cache only costs a recompile */ }
        }
        return new(family, arch, image, cubin, ListKernels(family, image, cubin), log, FromCache: false);
    }

    private static IReadOnlyList<string> ListKernels(string family, byte[] image, bool cubin) =>
        cubin && CubinSymbols.IsElf(image) ? CubinSymbols.GlobalFunctions(image) : KernelSources.DeclaredKernels(family);

    private static void RequireNvrtc()
    {
        if (!CudaLibraries.TryLoadNvrtc(out var reason)) throw new EngineException(reason);
    }

    private static (byte[] Image, string Log) Run(string family, string source, string header, string[] options, bool cubin)
    {
        var strings = new List<IntPtr>();
        IntPtr Utf8(string s) { var p = Marshal.StringToCoTaskMemUTF8(s); strings.Add(p); return p; }
        IntPtr program = IntPtr.Zero;
        try
        {
            var headers = stackalloc byte*[1];
            var includeNames = stackalloc byte*[1];
            headers[0] = (byte*)Utf8(header);
            includeNames[0] = (byte*)Utf8(KernelSources.HeaderName);
            Nvrtc.Check(Nvrtc.nvrtcCreateProgram(out program, (byte*)Utf8(source), (byte*)Utf8(family + ".cu"), 1, headers, includeNames), "nvrtcCreateProgram");
            var opts = stackalloc byte*[options.Length];
            for (int i = 0; i < options.Length; i++) opts[i] = (byte*)Utf8(options[i]);
            int result = Nvrtc.nvrtcCompileProgram(program, options.Length, opts);
            var log = ProgramLog(program);
            if (result != 0)
                throw new EngineException($"NVRTC could not compile {family}.cu ({string.Join(" ", options)}):\n{log}");
            byte[] image;
            if (cubin)
            {
                Nvrtc.Check(Nvrtc.nvrtcGetCUBINSize(program, out var size), "nvrtcGetCUBINSize");
                image = new byte[(int)size];
                fixed (byte* p = image) Nvrtc.Check(Nvrtc.nvrtcGetCUBIN(program, p), "nvrtcGetCUBIN");
            }
            else
            {
                Nvrtc.Check(Nvrtc.nvrtcGetPTXSize(program, out var size), "nvrtcGetPTXSize"); // includes the NUL
                image = new byte[(int)size];
                fixed (byte* p = image) Nvrtc.Check(Nvrtc.nvrtcGetPTX(program, p), "nvrtcGetPTX");
            }
            return (image, log);
        }
        finally
        {
            if (program != IntPtr.Zero) Nvrtc.nvrtcDestroyProgram(ref program);
            foreach (var p in strings) Marshal.FreeCoTaskMem(p);
        }
    }

    private static string ProgramLog(IntPtr program)
    {
        if (Nvrtc.nvrtcGetProgramLogSize(program, out var size) != 0 || size <= 1) return "";
        var buf = new byte[(int)size];
        fixed (byte* p = buf) if (Nvrtc.nvrtcGetProgramLog(program, p) != 0) return "";
        return Encoding.UTF8.GetString(buf, 0, buf.Length - 1).Trim();
    }
}
