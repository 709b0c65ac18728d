using Engine.Kernels.Native;

namespace Engine.Kernels;

/// <summary>
/// Whether this machine can run the CUDA backend, decided before any other CUDA call: the
/// driver library must load, cuInit must succeed and at least one device must be visible.
/// <see cref="Reason"/> is one line for a person ("no NVIDIA driver (libcuda.so.1 not found)").
/// </summary>
public static class CudaAvailability
{
    private static readonly Lazy<(bool Available, string Reason)> status = new(Detect);

    public static bool IsAvailable => status.Value.Available;

    /// <summary>Why CUDA is unavailable (empty when it is available).</summary>
    public static string Reason => status.Value.Reason;

    /// <summary>"CUDA not available: &lt;reason&gt;", the message tests and commands print.</summary>
    public static string Message => "CUDA not available: " + Reason;

    /// <summary>One line for a cuInit failure code.</summary>
    public static string DescribeInitFailure(int result) => result switch
    {
        100 => "no CUDA-capable device (cuInit: CUDA_ERROR_NO_DEVICE)",
        34 => "libcuda.so.1 is the CUDA toolkit's stub library, not a driver (cuInit: CUDA_ERROR_STUB_LIBRARY)",
        803 => "the NVIDIA driver does not match the kernel module or this CUDA version (cuInit: CUDA_ERROR_SYSTEM_DRIVER_MISMATCH)",
        999 => "the driver failed to initialise; in a container, is the GPU passed through? (cuInit: CUDA_ERROR_UNKNOWN)",
        _ => $"cuInit failed with CUresult {result}",
    };

    private static (bool, string) Detect()
    {
        if (!CudaLibraries.TryLoadDriver(out var reason)) return (false, reason);
        try
        {
            int r = Driver.cuInit(0);
            if (r != 0) return (false, DescribeInitFailure(r));
            r = Driver.cuDeviceGetCount(out int count);
            if (r != 0) return (false, Driver.Describe("cuDeviceGetCount", r));
            if (count == 0) return (false, "no CUDA device visible (cuDeviceGetCount returned 0)");
            return (true, "");
        }
        catch (Exception e) when (e is DllNotFoundException or EntryPointNotFoundException)
        {
            return (false, $"the NVIDIA driver library is unusable ({e.Message})");
        }
    }
}
