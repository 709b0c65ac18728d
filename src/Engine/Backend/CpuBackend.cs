using System.Numerics;
using System.Numerics.Tensors;
using System.Runtime.Intrinsics;

namespace Engine.Backend;

/// <summary>
/// The reference backend: every kernel written once, generically, for float and double
/// (C# generic math; the JIT specialises each), so gradient checks run in float64 and training
/// in float32 through the same code. Hot loops use TensorPrimitives (SIMD) and Parallel.For
/// over independent rows; reductions across rows run in a fixed order, so results are
/// deterministic bit for bit.
/// </summary>
public sealed partial class CpuBackend : IBackend
{
    public Device Device => Device.Cpu;
    public string Name => "cpu";

    /// <summary>Below this many element-operations a kernel runs on one thread.</summary>
    private const long ParallelThreshold = 1 << 15;

    private static void For(long count, long workPerItem, Action<int> body)
    {
        if (count <= 1 || Threads == 1 || count * workPerItem < ParallelThreshold)
        {
            for (int i = 0; i < count; i++) body(i);
        }
        else Parallel.For(0, (int)count, body);
    }

    /// <summary>Environment.ProcessorCount (the cores, or DOTNET_PROCESSOR_COUNT). At 1 every kernel runs on
    /// the calling thread: Parallel.For alone still used a pool thread beside it (two cores busy under
    /// DOTNET_PROCESSOR_COUNT=1). Above 1 Parallel.For is left unbounded: bounding it to the core count
    /// measured slower (docs/benchmarks.md).</summary>
    internal static readonly int Threads = Environment.ProcessorCount;

    private static bool IsF64(Tensor t) => t.DType switch
    {
        DType.F64 => true,
        DType.F32 => false,
        _ => throw new EngineException($"cpu kernels compute in F32 or F64, not {t.DType}"),
    };

    private static Span<T> S<T>(Tensor t) where T : unmanaged => t.Span<T>();
    private static Span<T> S<T>(Tensor? t, bool _) where T : unmanaged => t is null ? Span<T>.Empty : t.Span<T>();

    // ------------------------------------------------------------- memory

    public Storage Allocate(DType dtype, long length, bool zero) => CpuStorage.Allocate(dtype, length, zero);

    public void Release(Storage storage)
    {
        if (storage is CpuStorage cpu) cpu.Drop();
    }

    public void Copy(Tensor src, Tensor dst)
    {
        var s = (CpuStorage)src.Storage;
        var d = (CpuStorage)dst.Storage;
        Array.Copy(s.Data, src.Offset, d.Data, dst.Offset, src.Numel);
    }

    public void Synchronize() { }

    public double SumSquares(IReadOnlyList<Tensor> xs)
    {
        double sum = 0;
        foreach (var x in xs) sum += SumSquares(x);
        return sum;
    }

    public void Cast(Tensor src, Tensor dst)
    {
        if (src.DType == dst.DType) { Copy(src, dst); return; }
        var values = src.DType switch
        {
            DType.F32 or DType.F64 or DType.I32 => src.ToDoubleArray(),
            DType.I64 => Array.ConvertAll(src.Span<long>().ToArray(), x => (double)x),
            DType.BF16 => Array.ConvertAll(src.Span<ushort>().ToArray(), x => (double)HalfBits.Bf16ToFloat(x)),
            DType.F16 => Array.ConvertAll(src.Span<ushort>().ToArray(), x => (double)HalfBits.F16ToFloat(x)),
            _ => throw new EngineException($"Cast: no conversion from {src.DType}"),
        };
        switch (dst.DType)
        {
            case DType.F64: values.CopyTo(dst.Span<double>()); break;
            case DType.F32: { var d = dst.Span<float>(); for (int i = 0; i < d.Length; i++) d[i] = (float)values[i]; break; }
            case DType.I32: { var d = dst.Span<int>(); for (int i = 0; i < d.Length; i++) d[i] = checked((int)values[i]); break; }
            case DType.I64: { var d = dst.Span<long>(); for (int i = 0; i < d.Length; i++) d[i] = (long)values[i]; break; }
            case DType.BF16: { var d = dst.Span<ushort>(); for (int i = 0; i < d.Length; i++) d[i] = HalfBits.FloatToBf16((float)values[i]); break; }
            case DType.F16: { var d = dst.Span<ushort>(); for (int i = 0; i < d.Length; i++) d[i] = BitConverter.HalfToUInt16Bits((Half)values[i]); break; }
            default: throw new EngineException($"Cast: no conversion to {dst.DType}");
        }
    }

    /// <summary>Elements per work item of the memory-bound whole-tensor kernels (fill, axpy, scale,
    /// sums of squares, optimizer updates): fixed, so results do not depend on the thread count.</summary>
    private const int Chunk = 1 << 16;

    /// <summary>body(start, length) over [0, n) in fixed chunks (so results do not depend on the thread
    /// count), in parallel when the work (elements × <paramref name="workPerElement"/>) is large.</summary>
    private static void Chunks(long n, Action<int, int> body, int chunk = Chunk, long workPerElement = 1) =>
        For((n + chunk - 1) / chunk, chunk * workPerElement, c => body(c * chunk, (int)Math.Min(chunk, n - (long)c * chunk)));

    public void Fill(Tensor t, double value)
    {
        switch (t.DType)
        {
            case DType.F64: Chunks(t.Numel, (i, n) => S<double>(t).Slice(i, n).Fill(value)); break;
            case DType.F32: Chunks(t.Numel, (i, n) => S<float>(t).Slice(i, n).Fill((float)value)); break;
            case DType.I32: S<int>(t).Fill(checked((int)value)); break;
            default: throw new EngineException($"Fill: unsupported {t.DType}");
        }
    }

    public void AddScalar(Tensor t, double value)
    {
        if (IsF64(t)) TensorPrimitives.Add(S<double>(t), value, S<double>(t));
        else TensorPrimitives.Add(S<float>(t), (float)value, S<float>(t));
    }

    public void Axpy(Tensor x, Tensor y, double alpha)
    {
        if (IsF64(x)) Chunks(x.Numel, (i, n) => TensorPrimitives.MultiplyAdd(S<double>(x).Slice(i, n), alpha, S<double>(y).Slice(i, n), S<double>(y).Slice(i, n)));
        else Chunks(x.Numel, (i, n) => TensorPrimitives.MultiplyAdd(S<float>(x).Slice(i, n), (float)alpha, S<float>(y).Slice(i, n), S<float>(y).Slice(i, n)));
    }

    public void Scale(Tensor x, Tensor y, double alpha)
    {
        if (IsF64(x)) Chunks(x.Numel, (i, n) => TensorPrimitives.Multiply(S<double>(x).Slice(i, n), alpha, S<double>(y).Slice(i, n)));
        else Chunks(x.Numel, (i, n) => TensorPrimitives.Multiply(S<float>(x).Slice(i, n), (float)alpha, S<float>(y).Slice(i, n)));
    }

    /// <summary>Float64 sums: float32 elements are widened (four float64 lanes, eight running sums
    /// per chunk), chunk totals added in chunk order, so the result is the same on any thread count.</summary>
    public double SumSquares(Tensor x)
    {
        if (IsF64(x)) return TensorPrimitives.SumOfSquares<double>(S<double>(x));
        var partials = new double[(x.Numel + Chunk - 1) / Chunk];
        Chunks(x.Numel, (i, n) => partials[i / Chunk] = SumSquaresF32(S<float>(x).Slice(i, n)));
        double s = 0;
        foreach (var p in partials) s += p;
        return s;
    }

    private static double SumSquaresF32(ReadOnlySpan<float> x)
    {
        int i = 0;
        double s = 0;
        if (Vector256.IsHardwareAccelerated && x.Length >= 8)
        {
            Vector256<double> lo = Vector256<double>.Zero, hi = Vector256<double>.Zero;
            for (; i + 8 <= x.Length; i += 8)
            {
                var (a, b) = Vector256.Widen(Vector256.Create(x.Slice(i, 8)));
                lo += a * a;
                hi += b * b;
            }
            s = Vector256.Sum(lo + hi);
        }
        for (; i < x.Length; i++) s += (double)x[i] * x[i];
        return s;
    }
}

/// <summary>Bit-level conversions for the 16-bit float storage types.</summary>
public static class HalfBits
{
    public static float Bf16ToFloat(ushort bits) => BitConverter.UInt32BitsToSingle((uint)bits << 16);

    /// <summary>Round to nearest even, as PyTorch does; NaN stays NaN.</summary>
    public static ushort FloatToBf16(float f)
    {
        uint u = BitConverter.SingleToUInt32Bits(f);
        if (float.IsNaN(f)) return (ushort)((u >> 16) | 0x40);
        uint rounding = 0x7FFF + ((u >> 16) & 1);
        return (ushort)((u + rounding) >> 16);
    }

    /// <summary>dst[i] = src[i] rounded to the nearest bf16 value (ties to even, NaN stays NaN), kept
    /// as a float32: the same bits as Bf16ToFloat(FloatToBf16(src[i])), eight lanes at a time.
    /// src and dst may be the same span.</summary>
    public static void RoundToBf16(ReadOnlySpan<float> src, Span<float> dst)
    {
        if (dst.Length < src.Length) throw new ArgumentException("dst is shorter than src", nameof(dst));
        int i = 0;
        if (Vector256.IsHardwareAccelerated)
        {
            var one = Vector256.Create(1u);
            var half = Vector256.Create(0x7FFFu);
            var top = Vector256.Create(0xFFFF0000u);
            var quiet = Vector256.Create(0x00400000u);
            for (; i <= src.Length - 8; i += 8)
            {
                var x = Vector256.Create(src.Slice(i, 8));
                var u = x.AsUInt32();
                var rounded = (u + half + (Vector256.ShiftRightLogical(u, 16) & one)) & top;
                var nan = ~Vector256.Equals(x, x).AsUInt32();
                Vector256.ConditionalSelect(nan, (u & top) | quiet, rounded).AsSingle().CopyTo(dst.Slice(i, 8));
            }
        }
        for (; i < src.Length; i++) dst[i] = Bf16ToFloat(FloatToBf16(src[i]));
    }

    public static float F16ToFloat(ushort bits) => (float)BitConverter.UInt16BitsToHalf(bits);
}
