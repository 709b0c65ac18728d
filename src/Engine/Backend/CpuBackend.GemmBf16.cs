using System.Buffers;

namespace Engine.Backend;

// bf16 mixed-precision GEMM (MixedPrecision.Bf16()): the reference for what the CUDA backend does
// with bf16 inputs and float32 accumulation. The matrices of A and B that the product reads are
// rounded to bfloat16 (nearest even) into pooled float32 scratch — each value is exactly a bf16
// number, held in a float — and the float32 GEMM (CpuBackend.Gemm32.cs) runs on the scratch.
// The product of two bf16 values is exact in float32 (8 + 8 significant bits), so the result
// differs from a bf16-input, float32-accumulating GPU GEMM only by the order of the float32 sums.
// Rounding costs one read and one write per input element; the GEMM itself is unchanged, so on
// the CPU bf16 mode is slower than float32, never faster (it exists to match the GPU's numbers).
public sealed partial class CpuBackend
{
    /// <summary>Elements per rounding work item.</summary>
    private const int RoundChunk = 1 << 15;

    private static void GemmBf16(Tensor ta, long offA, long strideA, bool transA,
                                 Tensor tb, long offB, long strideB, bool transB,
                                 Tensor tc, long offC, long strideC,
                                 int batch, int m, int n, int k, float alpha, float beta)
    {
        var pool = ArrayPool<float>.Shared;
        var a = RoundedCopy(ta, offA, strideA, batch, m * k, pool);
        float[]? b = null;
        try
        {
            b = RoundedCopy(tb, offB, strideB, batch, k * n, pool);
            // The copies are packed: matrix i at i·count, or one matrix for a stride of 0.
            GemmF32(a, 0, strideA == 0 ? 0 : (long)m * k, transA, b, 0, strideB == 0 ? 0 : (long)k * n, transB,
                    S<float>(tc), offC, strideC, batch, m, n, k, alpha, beta);
        }
        finally
        {
            pool.Return(a);
            if (b is not null) pool.Return(b);
        }
    }

    /// <summary>The matrices i &lt; batch of <paramref name="t"/> (count elements each, starting at
    /// off + i·stride; just one when stride is 0) rounded to bf16 values, packed one after another
    /// into a rented array.</summary>
    private static float[] RoundedCopy(Tensor t, long off, long stride, int batch, int count, ArrayPool<float> pool)
    {
        int matrices = stride == 0 ? Math.Min(batch, 1) : batch;
        var dst = pool.Rent(checked(matrices * count));
        if (stride == count)
        {
            // Back-to-back matrices (the usual case): one contiguous range, rounded in chunks.
            count *= matrices;
            matrices = 1;
        }
        int chunks = (count + RoundChunk - 1) / RoundChunk;
        For((long)matrices * chunks, RoundChunk, item =>
        {
            int mat = item / chunks, start = item % chunks * RoundChunk, len = Math.Min(RoundChunk, count - start);
            HalfBits.RoundToBf16(S<float>(t).Slice((int)(off + mat * stride + start), len), dst.AsSpan(mat * count + start, len));
        });
        return dst;
    }
}
