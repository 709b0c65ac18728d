namespace Engine.Kernels;

/// <summary>
/// Row-major GEMM on column-major cuBLAS. cuBLAS reads a row-major X[r×c] as the column-major
/// Xᵀ, so C = op(A)·op(B) (C row-major M×N) is computed as Cᵀ = op(B)ᵀ·op(A)ᵀ: cuBLAS's first
/// operand is B, its second A, with m = N, n = M, k = K and ldc = N. B is stored K×N (ld N) or,
/// transposed, N×K (ld K, op T); A is stored M×K (ld K) or, transposed, K×M (ld M, op T).
/// Leading dimensions are at least 1, as cuBLAS requires even for empty matrices.
/// </summary>
public readonly record struct GemmMapping(bool TransFirst, bool TransSecond, int M, int N, int K, int LdFirst, int LdSecond, int LdC)
{
    /// <summary>The cuBLAS call for row-major C[m×n] = op(A)[m×k]·op(B)[k×n]; first operand B, second A.</summary>
    public static GemmMapping RowMajor(bool transA, bool transB, int m, int n, int k) =>
        new(TransFirst: transB, TransSecond: transA, M: n, N: m, K: k,
            LdFirst: Math.Max(1, transB ? k : n), LdSecond: Math.Max(1, transA ? m : k), LdC: Math.Max(1, n));
}
