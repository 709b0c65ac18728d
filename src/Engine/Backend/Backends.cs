namespace Engine.Backend;

/// <summary>
/// Which backend serves which device. The CPU backend is always here; the CUDA backend
/// (src/Kernels) registers itself, so the core never names CUDA.
/// </summary>
public static class Backends
{
    private static readonly object gate = new();
    private static Func<int, IBackend>? cudaFactory;
    private static readonly Dictionary<int, IBackend> cuda = new();

    public static CpuBackend Cpu { get; } = new();

    /// <summary>Called by a GPU backend's assembly to make itself available.</summary>
    public static void RegisterCuda(Func<int, IBackend> factory)
    {
        lock (gate) cudaFactory = factory;
    }

    /// <summary>Serves <paramref name="backend"/>'s own (non-CPU) device with it, ahead of the
    /// registered factory (tests put a CPU-backed stand-in for a GPU in place this way).</summary>
    public static void Register(IBackend backend)
    {
        if (backend.Device.Kind == DeviceKind.Cpu) throw new ArgumentException("the CPU backend is built in");
        lock (gate) cuda[backend.Device.Index] = backend;
    }

    public static IBackend For(Device device)
    {
        if (device.Kind == DeviceKind.Cpu) return Cpu;
        lock (gate)
        {
            if (cuda.TryGetValue(device.Index, out var b)) return b;
            if (cudaFactory is null) throw new EngineException("CUDA not available: the CUDA backend is not loaded");
            b = cudaFactory(device.Index);
            cuda[device.Index] = b;
            return b;
        }
    }

    /// <summary>Copies between any two devices (the non-CPU side's backend does the transfer).</summary>
    public static void Copy(Tensor src, Tensor dst)
    {
        if (src.Numel != dst.Numel || src.DType != dst.DType)
            throw new ArgumentException($"Copy: {src.DType}{Shape.Format(src.Shape)} into {dst.DType}{Shape.Format(dst.Shape)}");
        var side = src.Device.Kind != DeviceKind.Cpu ? src.Device : dst.Device;
        For(side).Copy(src, dst);
    }
}
