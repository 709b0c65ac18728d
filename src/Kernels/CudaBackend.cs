using System.Runtime.InteropServices;
using Engine.Backend;
using Engine.Kernels.Native;

namespace Engine.Kernels;

/// <summary>
/// The CUDA backend: every kernel of <see cref="IBackend"/> on one GPU, with the same semantics
/// as the CPU reference (forward kernels overwrite, backward kernels add into gradients and skip
/// null ones). Elementwise, reduction, norm, softmax/loss, attention, layout, rotary and optimizer
/// kernels are the CUDA C files in Cuda/ (compiled by NVRTC for the device's architecture and
/// cached on disk); GEMMs go to cuBLAS. F32 is the training type; F64 runs the same kernels for
/// exact parity checks. All work runs in order on one stream; copies to the host wait for it.
/// </summary>
public sealed unsafe partial class CudaBackend : IBackend
{
    private readonly CudaDevice gpu;
    private bool allowTf32;

    /// <summary>Makes the CUDA backend available to <see cref="Backends.For"/> (call once at startup).
    /// Without a GPU and with ENGINE_CUDA_EMULATOR=1, cuda:N is a device emulated on the CPU
    /// (<see cref="Emulated"/>; slow, for checking the kernels' arithmetic).</summary>
    public static void Register()
    {
        Backends.RegisterCuda(index =>
            !CudaAvailability.IsAvailable && Environment.GetEnvironmentVariable("ENGINE_CUDA_EMULATOR") == "1" ? Emulated(index) : new CudaBackend(index));
        Engine.Distributed.Collectives.RegisterGpu(NcclCollectives.Create);
    }

    /// <summary>The backend on a device emulated on the CPU (<see cref="CudaDevice.Emulated"/>) with
    /// the default emulator build, served as cuda:<paramref name="index"/>; throws
    /// "CUDA not available: …" when the emulator is not built.</summary>
    public static CudaBackend Emulated(int index = 0, params ThreadOrder[] orders)
    {
        if (!EmulatorLibrary.TryLoadDefault(out var library, out var reason)) throw new EngineException($"CUDA not available: {CudaAvailability.Reason}; {reason}");
        return new CudaBackend(CudaDevice.Emulated(new CudaEmulator([library!], orders), index), Device.Cuda(index));
    }

    /// <summary>Opens GPU <paramref name="index"/>; throws EngineException("CUDA not available: …") when it cannot.
    /// TF32 tensor-core GEMMs are off unless ENGINE_CUDA_TF32=1 or <see cref="AllowTf32"/> is set.</summary>
    public CudaBackend(int index = 0)
    {
        if (!CudaAvailability.IsAvailable) throw new EngineException(CudaAvailability.Message);
        gpu = new CudaDevice(index);
        Device = Device.Cuda(index);
        AllowTf32 = Environment.GetEnvironmentVariable("ENGINE_CUDA_TF32") == "1";
    }

    /// <summary>The backend on a dry-run device (<see cref="CudaDevice.DryRun"/>: every kernel
    /// launch, copy and memset is checked and recorded instead of run; GEMMs are only
    /// bounds-checked) or an emulated one (<see cref="CudaDevice.Emulated"/>: everything runs on the CPU).</summary>
    internal CudaBackend(CudaDevice hostSide, Device device)
    {
        if (hostSide.IsReal) throw new ArgumentException("a dry-run or emulated device was expected", nameof(hostSide));
        gpu = hostSide;
        Device = device;
    }

    /// <summary>The emulator under an emulated device (null on a GPU or a dry run).</summary>
    public CudaEmulator? Emulator => gpu.Emulator;

    public Device Device { get; }
    public string Name => $"cuda ({gpu.Name}, {gpu.Arch})";

    /// <summary>The device under the backend (its stream, allocator and context).</summary>
    internal CudaDevice Gpu => gpu;

    /// <summary>Lets cuBLAS use TF32 tensor cores for F32 GEMMs (faster, ~1e-3 relative error). Off by default.</summary>
    public bool AllowTf32
    {
        get => allowTf32;
        set
        {
            gpu.MakeCurrent();
            if (gpu.IsReal) Native.Cublas.Check(Native.Cublas.cublasSetMathMode(gpu.Cublas, value ? Native.Cublas.Tf32TensorOpMath : Native.Cublas.DefaultMath), "cublasSetMathMode");
            allowTf32 = value;
        }
    }

    /// <summary>How many times the allocator called cuMemAlloc (flat across steady-state training steps).</summary>
    public long DriverAllocations => gpu.Allocator.DriverAllocations;

    /// <summary>Waits until every queued kernel has finished.</summary>
    public void Synchronize() { gpu.MakeCurrent(); gpu.Synchronize(); }

    // ------------------------------------------------------------- kernel names and launch shapes

    /// <summary>The kernels launched as &lt;name&gt;_f32 / &lt;name&gt;_f64 (checked against the sources by a test).</summary>
    public static IReadOnlyList<string> TypedKernels { get; } =
    [
        "add_scalar", "axpy", "axpy_indexed", "scale", "binary", "binary_backward", "unary", "unary_backward", "dropout",
        "sum_last", "sum_last_backward", "sum_squares_partials", "dot_partials", "finish_sum", "column_sum_finish",
        "layer_norm", "layer_norm_backward_input", "layer_norm_backward_params", "rms_norm", "rms_norm_backward_input", "rms_norm_backward_weight",
        "softmax", "softmax_backward", "cross_entropy_rows", "cross_entropy_finish", "cross_entropy_backward",
        "mse_partials", "mse_backward", "bce_partials", "bce_backward",
        "attention_softmax",
        "embedding", "embedding_backward", "gather_rows", "copy_block", "permute", "rope", "adamw", "sgd",
    ];

    /// <summary>Kernels with one entry point for every type.</summary>
    public static IReadOnlyList<string> UntypedKernels { get; } = ["fill_f64", "cast", "pack_bf16", "count_targets", "rng_uniform_f32"];

    private const uint Block = 256;

    private static string K(string name, Tensor like)
    {
        var suffix = like.DType switch
        {
            DType.F32 => "_f32",
            DType.F64 => "_f64",
            _ => throw new EngineException($"cuda kernels compute in F32 or F64, not {like.DType}"),
        };
        return name + suffix;
    }

    /// <summary>Blocks for a grid-stride loop over n elements.</summary>
    private uint Blocks(long n) => (uint)Math.Clamp((n + Block - 1) / Block, 1, (long)gpu.Multiprocessors * 32);

    /// <summary>Blocks for one-block-per-row kernels.</summary>
    private static uint RowBlocks(long rows) => (uint)Math.Clamp(rows, 1, 1 << 20);

    /// <summary>Threads per block for a row of n elements: a multiple of 32 up to 256.</summary>
    private static uint RowThreads(long n) => (uint)Math.Clamp((n + 31) / 32 * 32, 32, 256);

    private static ulong P(Tensor t)
    {
        if (t.Storage is not CudaStorage s) throw new EngineException($"a {t.Device} tensor was expected on the CUDA backend");
        return s.Pointer + (ulong)(t.Offset * t.DType.SizeOf());
    }

    private static ulong P(Tensor? t, bool optional) => t is null ? 0UL : P(t);

    /// <summary>A scratch buffer for one kernel sequence (returned to the cache right after; the
    /// stream orders its reuse).</summary>
    private (ulong Pointer, long Rounded) Scratch(long bytes)
    {
        ulong p = gpu.Allocator.Allocate(bytes, out long rounded);
        return (p, rounded);
    }

    private void Free((ulong Pointer, long Rounded) scratch) => gpu.Allocator.Return(scratch.Pointer, scratch.Rounded);

    // ------------------------------------------------------------- memory

    public Storage Allocate(DType dtype, long length, bool zero)
    {
        gpu.MakeCurrent();
        long bytes = length * dtype.SizeOf();
        ulong p = gpu.Allocator.Allocate(bytes, out long rounded);
        if (zero) gpu.MemsetD8(p, 0, bytes);
        return new CudaStorage(Device, dtype, length, p, rounded);
    }

    public void Release(Storage storage)
    {
        if (storage is not CudaStorage s || s.Returned) return;
        s.Returned = true;
        gpu.Allocator.Return(s.Pointer, s.AllocatedBytes);
    }

    public void Copy(Tensor src, Tensor dst)
    {
        gpu.MakeCurrent();
        long bytes = src.Numel * src.DType.SizeOf();
        if (bytes == 0) return;
        bool srcGpu = src.Storage is CudaStorage, dstGpu = dst.Storage is CudaStorage;
        if (srcGpu && dstGpu)
        {
            gpu.CopyDeviceToDevice(P(dst), P(src), bytes);
            return;
        }
        if (dstGpu)
        {
            var host = (CpuStorage)src.Storage;
            fixed (byte* h = &MemoryMarshal.GetArrayDataReference(host.Data))
                gpu.CopyFromHost(P(dst), h + src.Offset * src.DType.SizeOf(), bytes);
        }
        else
        {
            var host = (CpuStorage)dst.Storage;
            fixed (byte* h = &MemoryMarshal.GetArrayDataReference(host.Data))
                gpu.CopyToHost(h + dst.Offset * dst.DType.SizeOf(), P(src), bytes);
        }
    }

    /// <summary>Type codes of the cast kernel (elementwise.cu).</summary>
    private static int CastCode(DType t) => t switch
    {
        DType.F32 => 0, DType.F64 => 1, DType.BF16 => 2, DType.F16 => 3, DType.I32 => 4, DType.I64 => 5,
        _ => throw new EngineException($"Cast: no conversion for {t} on CUDA"),
    };

    public void Cast(Tensor src, Tensor dst)
    {
        if (src.DType == dst.DType) { Copy(src, dst); return; }
        gpu.MakeCurrent();
        gpu.Launch("cast", Blocks(src.Numel), Block, P(src), CastCode(src.DType), P(dst), CastCode(dst.DType), src.Numel);
    }

    public void Fill(Tensor t, double value)
    {
        gpu.MakeCurrent();
        if (t.Numel == 0) return;
        switch (t.DType)
        {
            case DType.F32: gpu.MemsetD32(P(t), BitConverter.SingleToUInt32Bits((float)value), t.Numel); break;
            case DType.I32: gpu.MemsetD32(P(t), (uint)checked((int)value), t.Numel); break;
            case DType.F64: gpu.Launch("fill_f64", Blocks(t.Numel), Block, P(t), t.Numel, value); break;
            case DType.BF16: gpu.MemsetD16(P(t), HalfBits.FloatToBf16((float)value), t.Numel); break;
            case DType.F16: gpu.MemsetD16(P(t), BitConverter.HalfToUInt16Bits((Half)value), t.Numel); break;
            default: throw new EngineException($"Fill: unsupported {t.DType}");
        }
    }

    /// <summary>A scalar of the tensor's type as a kernel argument. (Both branches are cast to
    /// KernelArg: a bare `f64 ? value : (float)value` is a double expression, which would hand
    /// the F32 kernels 8 bytes of a double where they read a 4-byte float.)</summary>
    private static KernelArg Scalar(Tensor like, double value) => like.DType == DType.F64 ? (KernelArg)value : (KernelArg)(float)value;

    public void AddScalar(Tensor t, double value)
    {
        gpu.MakeCurrent();
        gpu.Launch(K("add_scalar", t), Blocks(t.Numel), Block, P(t), t.Numel, Scalar(t, value));
    }

    public void Axpy(Tensor x, Tensor y, double alpha)
    {
        gpu.MakeCurrent();
        gpu.Launch(K("axpy", x), Blocks(x.Numel), Block, P(x), P(y), x.Numel, Scalar(x, alpha));
    }

    public void Scale(Tensor x, Tensor y, double alpha)
    {
        gpu.MakeCurrent();
        gpu.Launch(K("scale", x), Blocks(x.Numel), Block, P(x), P(y), x.Numel, Scalar(x, alpha));
    }

    public double SumSquares(Tensor x) => SumSquares([x]);

    /// <summary>Per tensor, float64 block partials (sum_squares_partials) and their total (finish_sum)
    /// into one device array, read back once (a sync per list, not per tensor) and added in list order.</summary>
    public double SumSquares(IReadOnlyList<Tensor> xs)
    {
        gpu.MakeCurrent();
        if (xs.Count == 0) return 0;
        var blocks = xs.Select(x => Math.Min(Blocks(x.Numel), 1024u)).ToArray();
        long partialCount = blocks.Sum(b => (long)b);
        var scratch = Scratch((partialCount + xs.Count) * 8);
        ulong totals = scratch.Pointer + (ulong)(partialCount * 8), at = scratch.Pointer;
        for (int i = 0; i < xs.Count; i++)
        {
            gpu.Launch(K("sum_squares_partials", xs[i]), blocks[i], Block, P(xs[i]), xs[i].Numel, at);
            gpu.Launch(K("finish_sum", xs[i]), 1, Block, at, (int)blocks[i], 1.0, 0UL, 0, totals + (ulong)i * 8);
            at += blocks[i] * 8UL;
        }
        var host = new double[xs.Count];
        fixed (double* h = host) gpu.CopyToHost((byte*)h, totals, xs.Count * 8L);
        Free(scratch);
        double sum = 0;
        foreach (var t in host) sum += t;
        return sum;
    }

    /// <summary>out[0] (+)= Σ a ⊙ b in two deterministic passes (float64 partials).</summary>
    private void Dot(Tensor a, Tensor b, ulong output, bool accumulate)
    {
        uint blocks = Math.Min(Blocks(a.Numel), 1024u);
        var partials = Scratch(blocks * 8L);
        gpu.Launch(K("dot_partials", a), blocks, Block, P(a), P(b), a.Numel, partials.Pointer);
        gpu.Launch(K("finish_sum", a), 1, Block, partials.Pointer, (int)blocks, 1.0, output, accumulate ? 1 : 0, 0UL);
        Free(partials);
    }
}
