using Engine.Kernels.Native;

namespace Engine.Kernels;

/// <summary>
/// The cuBLAS calls the backend makes, answered on the CPU for an emulated device: strided-batched
/// GEMMs in cuBLAS's own terms (column-major; op(X) = X or Xᵀ by the transpose flags; matrix i of
/// an operand at X + i·stride elements; leading dimensions checked as cuBLAS checks them, an
/// invalid one is CUBLAS_STATUS_INVALID_VALUE). Float32 calls accumulate in float32, float64 in
/// float64, and the bf16 call (<c>cublasGemmStridedBatchedEx</c> with CUDA_R_16BF A and B, a
/// CUDA_R_32F C, CUBLAS_COMPUTE_32F) widens its bf16 inputs to float32 and accumulates in float32.
/// As in cuBLAS, C is not read when beta is 0 (a NaN there does not leak into the result). The
/// order of the k-sum is ascending (cuBLAS's own order is unspecified and differs).
/// </summary>
internal static unsafe class EmulatedBlas
{
    /// <summary>cublasSgemmStridedBatched / cublasDgemmStridedBatched / cublasGemmStridedBatchedEx.</summary>
    public static void GemmStridedBatched(string call, int transA, int transB, int m, int n, int k, double alpha,
        ulong a, int aType, int lda, long strideA, ulong b, int bType, int ldb, long strideB,
        double beta, ulong c, int cType, int ldc, long strideC, int batch)
    {
        bool ta = transA == Cublas.OpT, tb = transB == Cublas.OpT;
        if (transA is not (Cublas.OpN or Cublas.OpT) || transB is not (Cublas.OpN or Cublas.OpT) || m < 0 || n < 0 || k < 0 || batch < 0
            || lda < Math.Max(1, ta ? k : m) || ldb < Math.Max(1, tb ? n : k) || ldc < Math.Max(1, m))
            Cublas.Check(7, call); // CUBLAS_STATUS_INVALID_VALUE
        for (int i = 0; i < batch; i++)
        {
            ulong ai = a + (ulong)(i * strideA * Size(aType)), bi = b + (ulong)(i * strideB * Size(bType)), ci = c + (ulong)(i * strideC * Size(cType));
            if (cType == Cublas.R64F) Gemm<double>(ta, tb, m, n, k, alpha, (double*)ai, lda, (double*)bi, ldb, beta, (double*)ci, ldc);
            else if (aType == Cublas.R16BF) GemmBf16(ta, tb, m, n, k, (float)alpha, (ushort*)ai, lda, (ushort*)bi, ldb, (float)beta, (float*)ci, ldc);
            else Gemm<float>(ta, tb, m, n, k, alpha, (float*)ai, lda, (float*)bi, ldb, beta, (float*)ci, ldc);
        }
    }

    private static int Size(int type) => type switch { Cublas.R64F => 8, Cublas.R16BF => 2, _ => 4 };

    private static void Gemm<T>(bool ta, bool tb, int m, int n, int k, double alpha, T* a, int lda, T* b, int ldb, double beta, T* c, int ldc)
        where T : unmanaged, System.Numerics.IFloatingPointIeee754<T>
    {
        T al = T.CreateTruncating(alpha), be = T.CreateTruncating(beta);
        for (int j = 0; j < n; j++)
            for (int i = 0; i < m; i++)
            {
                T acc = T.Zero;
                for (int l = 0; l < k; l++) acc += (ta ? a[l + (long)i * lda] : a[i + (long)l * lda]) * (tb ? b[j + (long)l * ldb] : b[l + (long)j * ldb]);
                T* ij = c + i + (long)j * ldc;
                *ij = beta == 0 ? al * acc : al * acc + be * *ij;
            }
    }

    private static float Widen(ushort bf16) => BitConverter.Int32BitsToSingle(bf16 << 16);

    private static void GemmBf16(bool ta, bool tb, int m, int n, int k, float alpha, ushort* a, int lda, ushort* b, int ldb, float beta, float* c, int ldc)
    {
        for (int j = 0; j < n; j++)
            for (int i = 0; i < m; i++)
            {
                float acc = 0;
                for (int l = 0; l < k; l++) acc += Widen(ta ? a[l + (long)i * lda] : a[i + (long)l * lda]) * Widen(tb ? b[j + (long)l * ldb] : b[l + (long)j * ldb]);
                float* ij = c + i + (long)j * ldc;
                *ij = beta == 0 ? alpha * acc : alpha * acc + beta * *ij;
            }
    }
}
