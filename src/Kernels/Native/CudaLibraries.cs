using System.Reflection;
using System.Runtime.InteropServices;

namespace Engine.Kernels.Native;

/// <summary>
/// Finds and loads the CUDA libraries: the driver (always <c>libcuda.so.1</c>, never the
/// unversioned name, which can be the toolkit's stub), NVRTC and cuBLAS/cuBLASLt. The major
/// version is picked from the driver (<c>cuDriverGetVersion</c>: 13xxx → .so.13 first, 12xxx →
/// .so.12 first, then the older ones); without a driver (a CPU-only machine compiling kernels)
/// every known major is tried. Folders are probed in this order:
/// ENGINE_CUDA_LIB_DIR, CUDA_PATH and CUDA_HOME (lib64, targets/x86_64-linux/lib),
/// /usr/local/cuda (same two), Python site-packages (system, ~/.local, venv/conda, pyenv versions) nvidia/cu13/lib and nvidia/*/lib (pip
/// wheels), then the plain soname through the system loader (LD_LIBRARY_PATH, ldconfig).
/// One <see cref="NativeLibrary.SetDllImportResolver"/> for this assembly maps the logical names
/// "cuda", "nvrtc", "cublasLt" and "cublas" of the bindings to the handles loaded here.
/// </summary>
public static class CudaLibraries
{
    private static readonly object gate = new();
    private static bool resolverSet;
    private static IntPtr driver, nvrtc, cublas, cublasLt;
    private static string? nvrtcPath, cublasPath;
    private static int driverVersion = -1;

    /// <summary>The driver's CUDA version (e.g. 13000), or 0 when no driver is loaded.</summary>
    public static int DriverVersion
    {
        get { lock (gate) { EnsureResolver(); TryLoadDriver(out _); return Math.Max(driverVersion, 0); } }
    }

    /// <summary>The file NVRTC was loaded from, once loaded.</summary>
    public static string? NvrtcPath => nvrtcPath;
    /// <summary>The file cuBLAS was loaded from, once loaded.</summary>
    public static string? CublasPath => cublasPath;

    internal static void EnsureResolver()
    {
        lock (gate)
        {
            if (resolverSet) return;
            NativeLibrary.SetDllImportResolver(typeof(CudaLibraries).Assembly, Resolve);
            resolverSet = true;
        }
    }

    private static IntPtr Resolve(string name, Assembly assembly, DllImportSearchPath? path) => name switch
    {
        "cuda" => driver,
        "nvrtc" => nvrtc,
        "cublas" => cublas,
        "cublasLt" => cublasLt,
        _ => IntPtr.Zero,
    };

    /// <summary>Loads libcuda.so.1 (once). False, with the reason, when there is no driver.</summary>
    internal static bool TryLoadDriver(out string reason)
    {
        lock (gate)
        {
            EnsureResolver();
            reason = "";
            if (driver != IntPtr.Zero) return true;
            var dir = Environment.GetEnvironmentVariable("ENGINE_CUDA_LIB_DIR");
            if (!string.IsNullOrEmpty(dir) && File.Exists(Path.Combine(dir, "libcuda.so.1")))
                NativeLibrary.TryLoad(Path.Combine(dir, "libcuda.so.1"), out driver);
            if (driver == IntPtr.Zero) NativeLibrary.TryLoad("libcuda.so.1", out driver);
            if (driver == IntPtr.Zero)
            {
                reason = "no NVIDIA driver (libcuda.so.1 not found)";
                driverVersion = 0;
                return false;
            }
            // cuDriverGetVersion may be called before cuInit.
            unsafe
            {
                if (NativeLibrary.TryGetExport(driver, "cuDriverGetVersion", out var fn))
                {
                    int v = 0;
                    driverVersion = ((delegate* unmanaged<int*, int>)fn)(&v) == 0 ? v : 0;
                }
            }
            return true;
        }
    }

    /// <summary>Library majors to try, newest matching the driver first.</summary>
    public static string[] NvrtcSonames(int driverVersion) =>
        Majors(driverVersion).Select(m => m == 11 ? "libnvrtc.so.11.2" : $"libnvrtc.so.{m}").ToArray();

    public static string[] CublasSonames(int driverVersion) => Majors(driverVersion).Select(m => $"libcublas.so.{m}").ToArray();

    private static int[] Majors(int driverVersion) => (driverVersion / 1000) switch
    {
        >= 13 => [13, 12, 11],
        12 => [12, 11],
        11 => [11],
        _ => [13, 12, 11],
    };

    /// <summary>The folders probed for NVRTC and cuBLAS, in order (existing ones only).</summary>
    public static IReadOnlyList<string> ProbeDirectories()
    {
        var dirs = new List<string>();
        void Add(string? d)
        {
            if (!string.IsNullOrEmpty(d) && Directory.Exists(d) && !dirs.Contains(d)) dirs.Add(d);
        }
        Add(Environment.GetEnvironmentVariable("ENGINE_CUDA_LIB_DIR"));
        foreach (var root in new[] { Environment.GetEnvironmentVariable("CUDA_PATH"), Environment.GetEnvironmentVariable("CUDA_HOME"), "/usr/local/cuda" })
        {
            if (string.IsNullOrEmpty(root)) continue;
            Add(Path.Combine(root, "lib64"));
            Add(Path.Combine(root, "targets/x86_64-linux/lib"));
        }
        foreach (var site in SitePackages())
        {
            Add(Path.Combine(site, "nvidia/cu13/lib"));
            var nv = Path.Combine(site, "nvidia");
            if (!Directory.Exists(nv)) continue;
            foreach (var sub in Directory.GetDirectories(nv).Order(StringComparer.Ordinal)) Add(Path.Combine(sub, "lib"));
        }
        return dirs;
    }

    /// <summary>Python site-packages folders where pip puts the nvidia-* wheels.</summary>
    private static IEnumerable<string> SitePackages()
    {
        var roots = new List<string>();
        foreach (var env in new[] { "VIRTUAL_ENV", "CONDA_PREFIX" })
            if (Environment.GetEnvironmentVariable(env) is { Length: > 0 } p) roots.Add(Path.Combine(p, "lib"));
        var home = Environment.GetEnvironmentVariable("HOME");
        if (!string.IsNullOrEmpty(home)) roots.Add(Path.Combine(home, ".local/lib"));
        // pyenv interpreters (the GPU hosts' python3 may be one): PYENV_ROOT or ~/.pyenv, every version.
        var pyenv = Environment.GetEnvironmentVariable("PYENV_ROOT") is { Length: > 0 } pr ? pr : string.IsNullOrEmpty(home) ? null : Path.Combine(home, ".pyenv");
        if (pyenv is not null && Directory.Exists(Path.Combine(pyenv, "versions")))
            foreach (var version in Directory.GetDirectories(Path.Combine(pyenv, "versions")).Order(StringComparer.Ordinal))
                roots.Add(Path.Combine(version, "lib"));
        roots.AddRange(["/usr/local/lib", "/usr/lib", "/opt/conda/lib"]);
        foreach (var root in roots)
        {
            if (!Directory.Exists(root)) continue;
            foreach (var py in Directory.GetDirectories(root, "python3*").Order(StringComparer.Ordinal))
                foreach (var leaf in new[] { "site-packages", "dist-packages" })
                    if (Directory.Exists(Path.Combine(py, leaf))) yield return Path.Combine(py, leaf);
        }
        if (Directory.Exists("/usr/lib/python3/dist-packages")) yield return "/usr/lib/python3/dist-packages";
    }

    /// <summary>Loads NVRTC (once): a driver is not needed. False, with the reason, when none is found.</summary>
    public static bool TryLoadNvrtc(out string reason)
    {
        lock (gate)
        {
            EnsureResolver();
            reason = "";
            if (nvrtc != IntPtr.Zero) return true;
            TryLoadDriver(out _);
            var names = NvrtcSonames(Math.Max(driverVersion, 0));
            (nvrtc, nvrtcPath) = Probe(names, dir =>
            {
                // The CUDA 13 pip wheel has no RUNPATH: load its builtins library first.
                foreach (var b in Directory.GetFiles(dir, "libnvrtc-builtins.so.*").Order(StringComparer.Ordinal))
                    if (NativeLibrary.TryLoad(b, out _)) break;
            });
            if (nvrtc != IntPtr.Zero) return true;
            reason = $"NVRTC not found ({string.Join(", ", names)} in ENGINE_CUDA_LIB_DIR, CUDA_PATH, CUDA_HOME, /usr/local/cuda, pip nvidia/* folders or the loader path)";
            return false;
        }
    }

    /// <summary>Loads cuBLASLt then cuBLAS (once).</summary>
    internal static bool TryLoadCublas(out string reason)
    {
        lock (gate)
        {
            EnsureResolver();
            reason = "";
            if (cublas != IntPtr.Zero) return true;
            TryLoadDriver(out _);
            var names = CublasSonames(Math.Max(driverVersion, 0));
            (cublas, cublasPath) = Probe(names, dir =>
            {
                var lt = Directory.GetFiles(dir, "libcublasLt.so.*").Order(StringComparer.Ordinal).FirstOrDefault();
                if (lt is not null && NativeLibrary.TryLoad(lt, out var h)) cublasLt = h;
            }, soname => NativeLibrary.TryLoad(soname.Replace("libcublas", "libcublasLt"), out cublasLt));
            if (cublas != IntPtr.Zero) return true;
            reason = $"cuBLAS not found ({string.Join(", ", names)})";
            return false;
        }
    }

    /// <summary>Loads NCCL (libnccl.so.2) from the same folders as cuBLAS (pip's nvidia/nccl/lib
    /// included), once. False, with the reason, when it is not there.</summary>
    internal static bool TryLoadNccl(out IntPtr handle, out string reason)
    {
        lock (gate)
        {
            reason = "";
            if (nccl == IntPtr.Zero) (nccl, _) = Probe(["libnccl.so.2"], _ => { });
            handle = nccl;
            if (nccl != IntPtr.Zero) return true;
            reason = "NCCL not available: libnccl.so.2 not found (ENGINE_CUDA_LIB_DIR, CUDA_PATH, CUDA_HOME, /usr/local/cuda, pip nvidia/nccl, the loader path)";
            return false;
        }
    }

    private static IntPtr nccl;

    private static (IntPtr, string?) Probe(string[] sonames, Action<string> beforeLoadInDir, Func<string, bool>? beforeLoadSoname = null)
    {
        var dirs = ProbeDirectories();
        foreach (var soname in sonames)
        {
            foreach (var dir in dirs)
            {
                var file = Path.Combine(dir, soname);
                if (!File.Exists(file)) continue;
                beforeLoadInDir(dir);
                if (NativeLibrary.TryLoad(file, out var h)) return (h, file);
            }
            beforeLoadSoname?.Invoke(soname);
            if (NativeLibrary.TryLoad(soname, out var hs)) return (hs, soname);
        }
        return (IntPtr.Zero, null);
    }
}
