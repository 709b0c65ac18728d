using Engine.Backend;
using Engine.Kernels;
using NUnit.Framework;

namespace Engine.Tests.Cuda;

/// <summary>Shared set-up for the CUDA tests: the GPU backend, or a one-line skip without a GPU.</summary>
internal static class CudaTestSupport
{
    /// <summary>The CUDA backend of device 0; Assert.Ignore("CUDA not available: …") without a GPU.</summary>
    public static CudaBackend Backend()
    {
        if (!CudaAvailability.IsAvailable) Assert.Ignore(CudaAvailability.Message);
        CudaBackend.Register();
        return (CudaBackend)Backends.For(Device.Cuda());
    }

    /// <summary>True when NVRTC loads; otherwise Assert.Ignore with the reason, or Assert.Fail when
    /// ENGINE_REQUIRE_NVRTC=1 (CI installs NVRTC, so the compile test must run there).</summary>
    public static void RequireNvrtc()
    {
        if (Engine.Kernels.Native.CudaLibraries.TryLoadNvrtc(out var reason)) return;
        if (Environment.GetEnvironmentVariable("ENGINE_REQUIRE_NVRTC") == "1") Assert.Fail(reason + " (ENGINE_REQUIRE_NVRTC=1)");
        Assert.Ignore(reason);
    }
}
