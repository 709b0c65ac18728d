using Engine.Kernels;
using NUnit.Framework;

namespace Engine.Tests.Cuda;

/// <summary>Every kernel file compiles with NVRTC (no GPU needed) for Ampere and Hopper, and
/// defines every kernel the backend launches.</summary>
public class NvrtcCompileTests
{
    public static IEnumerable<TestCaseData> Targets() =>
        from arch in new[] { "sm_80", "sm_90" }
        from family in KernelSources.Families
        select new TestCaseData(family, arch).SetName($"Compiles({family}.cu, {arch})");

    [TestCaseSource(nameof(Targets))]
    public void Compiles(string family, string arch)
    {
        CudaTestSupport.RequireNvrtc();
        var c = KernelCompiler.Compile(family, arch, useCache: false);
        Assert.That(c.IsCubin, Is.True);
        Assert.That(CubinSymbols.IsElf(c.Image), Is.True, "NVRTC returned a CUBIN that is not an ELF image");
        var declared = KernelSources.DeclaredKernels(family);
        Assert.That(declared, Is.Not.Empty);
        Assert.That(c.Kernels, Is.SupersetOf(declared), $"{family}.cu: kernels declared in the source but missing from the CUBIN");
    }

    [Test]
    public void EveryKernelTheBackendLaunchesIsDeclaredByAKernelFile()
    {
        var declared = KernelSources.Families.SelectMany(KernelSources.DeclaredKernels).ToHashSet();
        var launched = CudaBackend.TypedKernels.SelectMany(k => new[] { k + "_f32", k + "_f64" }).Concat(CudaBackend.UntypedKernels);
        foreach (var k in launched) Assert.That(declared, Does.Contain(k), $"the backend launches {k}, which no .cu file declares");
        Assert.That(declared.Count, Is.EqualTo(declared.Distinct().Count()));
    }

    [Test]
    public void EveryKernelFileStatesTheConventionsAndIncludesTheSharedHeader()
    {
        foreach (var family in KernelSources.Families)
        {
            var src = KernelSources.Source(family);
            Assert.That(src.TrimStart(), Does.StartWith($"// {family}.cu:"), family);
            Assert.That(src, Does.Contain("#include \"common.cuh\""), family);
            Assert.That(src, Does.Contain("ccumulate"), $"{family}.cu must state the overwrite/accumulate convention");
            Assert.That(src, Does.Not.Contain("cuda_fp16.h").And.Not.Contain("cuda_bf16.h"), family);
        }
    }

    [Test]
    public void NvrtcReportsItsVersionAndSupportsHopper()
    {
        CudaTestSupport.RequireNvrtc();
        Assert.That(KernelCompiler.NvrtcVersion, Does.Match(@"^\d+\.\d+$"));
        Assert.That(KernelCompiler.SupportedArchs(), Does.Contain(80).And.Contain(90));
    }
}
