using Engine.Backend;
using Engine.Kernels;
using Engine.Kernels.Native;
using NUnit.Framework;

namespace Engine.Tests.Cuda;

public class ProbingTests
{
    [Test]
    public void LibraryMajorsFollowTheDriverVersion()
    {
        Assert.That(CudaLibraries.NvrtcSonames(13000), Is.EqualTo(new[] { "libnvrtc.so.13", "libnvrtc.so.12", "libnvrtc.so.11.2" }));
        Assert.That(CudaLibraries.NvrtcSonames(12040), Is.EqualTo(new[] { "libnvrtc.so.12", "libnvrtc.so.11.2" }));
        Assert.That(CudaLibraries.NvrtcSonames(0), Is.EqualTo(new[] { "libnvrtc.so.13", "libnvrtc.so.12", "libnvrtc.so.11.2" }));
        Assert.That(CudaLibraries.CublasSonames(12020), Is.EqualTo(new[] { "libcublas.so.12", "libcublas.so.11" }));
    }

    [Test]
    public void TheOverrideFolderIsProbedFirst()
    {
        var dir = Directory.CreateTempSubdirectory("engine-libdir").FullName;
        var old = Environment.GetEnvironmentVariable("ENGINE_CUDA_LIB_DIR");
        try
        {
            Environment.SetEnvironmentVariable("ENGINE_CUDA_LIB_DIR", dir);
            Assert.That(CudaLibraries.ProbeDirectories()[0], Is.EqualTo(dir));
        }
        finally
        {
            Environment.SetEnvironmentVariable("ENGINE_CUDA_LIB_DIR", old);
            Directory.Delete(dir);
        }
    }

    [Test]
    public void InitFailuresAreOneLineEach()
    {
        foreach (var code in new[] { 100, 34, 803, 999 })
        {
            var line = CudaAvailability.DescribeInitFailure(code);
            Assert.That(line, Is.Not.Empty.And.Not.Contain("\n"));
        }
        Assert.That(CudaAvailability.DescribeInitFailure(34), Does.Contain("stub"));
    }

    [Test]
    public void WithoutAGpuTheBackendReportsWhyInOneLine()
    {
        if (CudaAvailability.IsAvailable) Assert.Ignore("a GPU is present: the no-GPU path is not reachable here");
        Assert.That(CudaAvailability.Reason, Is.Not.Empty.And.Not.Contain("\n"));
        if (!File.Exists("/usr/lib/x86_64-linux-gnu/libcuda.so.1") && !File.Exists("/usr/lib64/libcuda.so.1") && !File.Exists("/lib/x86_64-linux-gnu/libcuda.so.1"))
            Assert.That(CudaAvailability.Message, Is.EqualTo("CUDA not available: no NVIDIA driver (libcuda.so.1 not found)"));
        CudaBackend.Register();
        var e = Assert.Throws<EngineException>(() => Backends.For(Device.Cuda(0)))!;
        Assert.That(e.Message, Is.EqualTo(CudaAvailability.Message));
    }
}
