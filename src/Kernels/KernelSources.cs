using System.Reflection;
using System.Text.RegularExpressions;

namespace Engine.Kernels;

/// <summary>
/// The CUDA C kernel files embedded in this assembly (src/Kernels/Cuda/*.cu): one per family,
/// plus the shared header common.cuh that NVRTC receives as a named include.
/// </summary>
public static partial class KernelSources
{
    public const string HeaderName = "common.cuh";

    /// <summary>The families, in compile order (file name without .cu).</summary>
    public static IReadOnlyList<string> Families { get; } =
        ["elementwise", "reduce", "norm", "softmax_loss", "attention", "embedding", "rope", "optimizer"];

    public static string Header => Read(HeaderName);

    public static string Source(string family) => Read(family + ".cu");

    /// <summary>Names of the extern "C" __global__ functions a family's source declares.</summary>
    public static IReadOnlyList<string> DeclaredKernels(string family) =>
        KernelDeclaration().Matches(Source(family)).Select(m => m.Groups[1].Value).ToArray();

    [GeneratedRegex(@"extern\s+""C""\s+__global__\s+void\s+(\w+)\s*\(")]
    private static partial Regex KernelDeclaration();

    private static string Read(string file)
    {
        var asm = typeof(KernelSources).Assembly;
        var name = asm.GetManifestResourceNames().FirstOrDefault(n => n.EndsWith("." + file, StringComparison.Ordinal) || n == file)
                   ?? throw new EngineException($"kernel source {file} is not embedded in {asm.GetName().Name}");
        using var s = asm.GetManifestResourceStream(name)!;
        using var r = new StreamReader(s);
        return r.ReadToEnd();
    }
}
