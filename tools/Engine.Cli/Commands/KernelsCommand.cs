using System.CommandLine;
using Engine.Kernels;

namespace Engine.Cli.Commands;

/// <summary>`engine kernels compile [--arch sm_90]`: compiles every CUDA kernel file with NVRTC
/// (no GPU needed) and lists the kernels each one defines.</summary>
public static class KernelsCommand
{
    public static Command Create()
    {
        var arch = new Option<string?>("--arch") { Description = "target architecture, e.g. sm_80 or sm_90 (default: this GPU's, or sm_90 without one)" };
        var noCache = new Option<bool>("--no-cache") { Description = "compile even when the kernel cache has the image" };
        var compile = new Command("compile", "Compile every kernel file with NVRTC and list its kernels") { arch, noCache };
        compile.SetAction(Cli.Action(parse =>
        {
            var target = parse.GetValue(arch) ?? DefaultArch();
            if (!System.Text.RegularExpressions.Regex.IsMatch(target, @"^(sm|compute)_\d+a?$"))
                throw new EngineException($"--arch '{target}': expected sm_XY (e.g. sm_90)");
            var version = KernelCompiler.NvrtcVersion; // throws "NVRTC not found (...)" → one line, exit 2
            Console.WriteLine($"NVRTC {version} ({Engine.Kernels.Native.CudaLibraries.NvrtcPath}), target {target}, cache {KernelCompiler.CacheDirectory}");
            int total = 0;
            foreach (var family in KernelSources.Families)
            {
                var sw = System.Diagnostics.Stopwatch.StartNew();
                var c = KernelCompiler.Compile(family, target, useCache: !parse.GetValue(noCache));
                total += c.Kernels.Count;
                var how = c.FromCache ? "cached" : $"{sw.Elapsed.TotalSeconds:F1} s";
                Console.WriteLine($"{family + ".cu",-18} {c.Kernels.Count,3} kernels  {c.Image.Length / 1024,5} KiB {(c.IsCubin ? "CUBIN" : "PTX")}  ({how})");
                Console.WriteLine("    " + string.Join(" ", c.Kernels.Order(StringComparer.Ordinal)));
            }
            Console.WriteLine($"{KernelSources.Families.Count} files, {total} kernels compiled for {target}");
            return 0;
        }));
        return new Command("kernels", "CUDA kernel tools") { compile };
    }

    private static string DefaultArch()
    {
        try
        {
            if (CudaAvailability.IsAvailable && Engine.Backend.Backends.For(Device.Cuda()) is CudaBackend b)
                return b.Name.Split('(', ')')[1].Split(", ")[^1];
        }
        catch (EngineException) { }
        return "sm_90";
    }
}
