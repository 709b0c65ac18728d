using Engine.Backend;
using Engine.Kernels;
using NUnit.Framework;

namespace Engine.Tests.Cuda;

/// <summary>Shared set-up for the CUDA tests: the GPU backend when there is a GPU, else the CUDA
/// backend on a device emulated on the CPU (the kernels compiled as C++, docs/cuda.md), else a
/// one-line skip.</summary>
internal static class CudaTestSupport
{
    /// <summary>The device index the emulated backend is served as in this process (cuda:0 stays
    /// "CUDA not available" without a GPU; the dry run is 13, the mirror 15).</summary>
    public const int EmulatedIndex = 12;

    /// <summary>The orders every emulated launch runs in: each launch is a race check.</summary>
    public static readonly ThreadOrder[] RaceCheck = [ThreadOrder.Forward, ThreadOrder.Reverse, ThreadOrder.Shuffle];

    private static CudaBackend? emulated;

    /// <summary>The CUDA backend of device 0 on a GPU; without one, <see cref="Emulated"/>.</summary>
    public static CudaBackend Backend()
    {
        if (!CudaAvailability.IsAvailable) return Emulated();
        CudaBackend.Register();
        return (CudaBackend)Backends.For(Device.Cuda());
    }

    /// <summary>The CUDA backend on the CPU emulator (race-checked), served as cuda:12. Skips with
    /// the reason when the emulator is not built, or fails when ENGINE_REQUIRE_EMULATOR=1 (CI).</summary>
    public static CudaBackend Emulated()
    {
        lock (RaceCheck)
        {
            if (emulated is null)
            {
                if (!EmulatorLibrary.TryLoadDefault(out var library, out var reason))
                {
                    if (Environment.GetEnvironmentVariable("ENGINE_REQUIRE_EMULATOR") == "1") Assert.Fail(reason + " (ENGINE_REQUIRE_EMULATOR=1)");
                    Assert.Ignore(CudaAvailability.Message + "; " + reason);
                }
                emulated = new CudaBackend(CudaDevice.Emulated(new CudaEmulator([library!], RaceCheck), EmulatedIndex), Device.Cuda(EmulatedIndex));
            }
            Backends.Register(emulated);
            return emulated;
        }
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
