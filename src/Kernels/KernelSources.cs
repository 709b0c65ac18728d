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

    /// <summary>The parameter kinds of every extern "C" kernel a family declares, read from its
    /// source: what <see cref="CudaDevice.Launch(string, uint, uint, uint, ReadOnlySpan{KernelArg})"/>
    /// checks each launch's arguments against (count, order, 4- or 8-byte integer, float or
    /// double, pointer, struct).</summary>
    internal static IReadOnlyDictionary<string, KernelArgKind[]> Signatures(string family)
    {
        var result = new Dictionary<string, KernelArgKind[]>();
        foreach (Match m in KernelSignature().Matches(Source(family)))
        {
            var list = m.Groups[2].Value.Trim();
            result[m.Groups[1].Value] = list.Length == 0 ? [] : list.Split(',').Select(p => ParameterKind(m.Groups[1].Value, p)).ToArray();
        }
        return result;
    }

    /// <summary>The kind of one C parameter ("const float* x", "i64 n", "Layout L").</summary>
    internal static KernelArgKind ParameterKind(string kernel, string parameter)
    {
        var p = Regex.Replace(parameter, @"\b(const|volatile|__restrict__)\b", " ").Trim();
        if (p.Contains('*')) return KernelArgKind.Pointer;
        var type = Regex.Replace(Regex.Replace(p, @"\s*\b\w+$", ""), @"\s+", " ").Trim();
        return type switch
        {
            "int" or "unsigned int" or "unsigned" => KernelArgKind.Int32,
            "i64" or "u64" or "long long" or "unsigned long long" => KernelArgKind.Int64,
            "float" => KernelArgKind.Float32,
            "double" => KernelArgKind.Float64,
            "Layout" => KernelArgKind.Layout,
            _ => throw new EngineException($"kernel {kernel}: parameter '{parameter.Trim()}' has a type the launcher does not know ({type})"),
        };
    }

    [GeneratedRegex(@"extern\s+""C""\s+__global__\s+void\s+(\w+)\s*\(([^)]*)\)")]
    private static partial Regex KernelSignature();

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
