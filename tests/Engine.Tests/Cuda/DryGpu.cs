using System.Reflection;
using System.Runtime.ExceptionServices;
using Engine.Backend;
using Engine.Kernels;

namespace Engine.Tests.Cuda;

/// <summary>
/// The CUDA backend on a dry-run device (<see cref="CudaDevice.DryRun"/>), served as cuda:13: it
/// runs the backend's whole host side (argument marshalling, launch shapes, scratch buffers,
/// copies) with every launch checked against the kernel's C signature and every device address
/// checked against the live buffers, and computes nothing (values read back are zeros). GEMMs
/// go to cuBLAS, which a dry run cannot call: they are only bounds-checked.
/// </summary>
internal sealed class DryGpu
{
    /// <summary>The device index the dry-run backend claims (a stand-in, like the mirror's 15).</summary>
    public const int Index = 13;

    public readonly List<KernelLaunch> Launches = new();
    public readonly CudaBackend Backend;
    public readonly Device Device = Device.Cuda(Index);
    public readonly IBackend Served;

    /// <summary>A fresh dry-run device, registered for cuda:13 (replacing any earlier one).</summary>
    public DryGpu()
    {
        var device = CudaDevice.DryRun(l => { lock (Launches) Launches.Add(l); }, Index);
        Backend = new CudaBackend(device, Device);
        Served = GemmlessProxy.Wrap(Backend);
        Backends.Register(Served);
    }

    public Tensor Empty(int[] shape, DType dtype = DType.F32) => Tensor.Empty(shape, dtype, Device);
    public Tensor Zeros(int[] shape, DType dtype = DType.F32) => Tensor.Zeros(shape, dtype, Device);

    /// <summary>The dry-run device under the backend.</summary>
    public CudaDevice Gpu =>
        (CudaDevice)typeof(CudaBackend).GetField("gpu", BindingFlags.NonPublic | BindingFlags.Instance)!.GetValue(Backend)!;
}

/// <summary>An IBackend whose Gemm only checks that the operands fit their tensors; everything
/// else goes to the wrapped backend.</summary>
public class GemmlessProxy : DispatchProxy
{
    private IBackend inner = null!;

    internal static IBackend Wrap(IBackend backend)
    {
        var proxy = Create<IBackend, GemmlessProxy>();
        ((GemmlessProxy)(object)proxy).inner = backend;
        return proxy;
    }

    protected override object? Invoke(MethodInfo? method, object?[]? args)
    {
        if (method!.Name == nameof(IBackend.Gemm)) { CheckGemm(args!); return null; }
        try { return method.Invoke(inner, args); }
        catch (TargetInvocationException e) when (e.InnerException is not null)
        {
            ExceptionDispatchInfo.Capture(e.InnerException).Throw();
            throw;
        }
    }

    private static void CheckGemm(object?[] a)
    {
        var (ta, offA, strideA) = ((Tensor)a[0]!, (long)a[1]!, (long)a[2]!);
        var (tb, offB, strideB) = ((Tensor)a[4]!, (long)a[5]!, (long)a[6]!);
        var (tc, offC, strideC) = ((Tensor)a[8]!, (long)a[9]!, (long)a[10]!);
        int batch = (int)a[11]!, m = (int)a[12]!, n = (int)a[13]!, k = (int)a[14]!;
        if (batch == 0 || m == 0 || n == 0) return;
        foreach (var t in new[] { ta, tb, tc })
            if (t.Storage is not CudaStorage) throw new EngineException($"Gemm: a {t.Device} operand on the dry-run device");
        void Fits(Tensor t, long off, long stride, long size, string name)
        {
            long end = off + (batch - 1) * stride + size;
            if (off < 0 || stride < 0 || end > t.Numel) throw new EngineException($"Gemm: {name} [{off}, {end}) outside its {t.Numel} elements");
        }
        Fits(ta, offA, strideA, (long)m * k, "A");
        Fits(tb, offB, strideB, (long)k * n, "B");
        Fits(tc, offC, strideC, (long)m * n, "C");
    }
}
