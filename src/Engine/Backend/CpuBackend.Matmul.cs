using System.Numerics;
using System.Numerics.Tensors;

namespace Engine.Backend;

// GEMM, the generic kernel (float64, and float32 with ENGINE_GEMM=simple; the float32 default is
// CpuBackend.Gemm32.cs / CpuBackend.GemmBlocked.cs, and under MixedPrecision.Bf16() CpuBackend.GemmBf16.cs, which always uses it). One output row per work item (rows of all batches run in parallel unless the batch
// writes one shared C, stride 0, which then runs serially). For op(B) = B the row is built as
// a sum of scaled rows of B (SIMD axpy); for op(B) = Bᵀ each element is a SIMD dot product.
// op(A) = Aᵀ reads a column of A into a scratch row first.
public sealed partial class CpuBackend
{
    public void Gemm(Tensor a, long offA, long strideA, bool transA,
                     Tensor b, long offB, long strideB, bool transB,
                     Tensor c, long offC, long strideC,
                     int batch, int m, int n, int k, double alpha, double beta)
    {
        // Float64 ignores MixedPrecision (it is the checking type); a bf16 scope rounds float32 inputs.
        if (IsF64(a)) Gemm<double>(a, offA, strideA, transA, b, offB, strideB, transB, c, offC, strideC, batch, m, n, k, alpha, beta);
        else if (MixedPrecision.GemmInBf16) GemmBf16(a, offA, strideA, transA, b, offB, strideB, transB, c, offC, strideC, batch, m, n, k, (float)alpha, (float)beta);
        else if (SimpleGemm) Gemm<float>(a, offA, strideA, transA, b, offB, strideB, transB, c, offC, strideC, batch, m, n, k, alpha, beta);
        else GemmF32(S<float>(a), offA, strideA, transA, S<float>(b), offB, strideB, transB, S<float>(c), offC, strideC, batch, m, n, k, (float)alpha, (float)beta);
    }

    private static void Gemm<T>(Tensor ta, long offA, long strideA, bool transA,
                                Tensor tb, long offB, long strideB, bool transB,
                                Tensor tc, long offC, long strideC,
                                int batch, int m, int n, int k, double alphaD, double betaD)
        where T : unmanaged, IFloatingPointIeee754<T>
    {
        T alpha = T.CreateTruncating(alphaD), beta = T.CreateTruncating(betaD);
        void Row(int item)
        {
            int bi = item / m, i = item % m;
            var a = S<T>(ta); var b = S<T>(tb);
            var c = S<T>(tc).Slice((int)(offC + bi * strideC + (long)i * n), n);
            long baseA = offA + bi * strideA, baseB = offB + bi * strideB;
            Span<T> arow = k <= 1024 ? stackalloc T[k] : new T[k];
            if (transA) for (int p = 0; p < k; p++) arow[p] = a[(int)(baseA + (long)p * m + i)];
            else a.Slice((int)(baseA + (long)i * k), k).CopyTo(arow);

            // A shared C (stride 0) sums the batch: beta applies once, before the first matrix.
            T bt = strideC == 0 && bi > 0 ? T.One : beta;
            if (bt == T.Zero) c.Clear();
            else if (bt != T.One) TensorPrimitives.Multiply(c, bt, c);

            if (transB)
            {
                for (int j = 0; j < n; j++)
                    c[j] += alpha * TensorPrimitives.Dot<T>(arow, b.Slice((int)(baseB + (long)j * k), k));
            }
            else
            {
                for (int p = 0; p < k; p++)
                {
                    T s = alpha * arow[p];
                    if (s == T.Zero) continue;
                    TensorPrimitives.MultiplyAdd(b.Slice((int)(baseB + (long)p * n), n), s, c, c);
                }
            }
        }
        long items = (long)batch * m;
        if (strideC == 0 && batch > 1) for (int it = 0; it < items; it++) Row(it);
        else For(items, (long)n * k, Row);
    }
}
