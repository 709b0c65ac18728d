using System.Runtime.InteropServices;

namespace Engine.Kernels.Native;

/// <summary>The cuBLAS functions the backend uses (column-major; see <see cref="GemmMapping"/>
/// for how row-major products map onto them).</summary>
internal static unsafe partial class Cublas
{
    private const string Lib = "cublas";

    public const int OpN = 0, OpT = 1;
    public const int DefaultMath = 0, Tf32TensorOpMath = 3;
    /// <summary>cudaDataType_t (library_types.h): CUDA_R_32F 0, CUDA_R_64F 1, CUDA_R_16BF 14.</summary>
    public const int R32F = 0, R64F = 1, R16BF = 14;
    /// <summary>cublasComputeType_t CUBLAS_COMPUTE_32F (float32 accumulation, alpha and beta float).</summary>
    public const int Compute32F = 68;
    /// <summary>cublasGemmAlgo_t CUBLAS_GEMM_DEFAULT.</summary>
    public const int GemmDefault = -1;

    [LibraryImport(Lib, EntryPoint = "cublasCreate_v2")] public static partial int cublasCreate(out IntPtr handle);
    [LibraryImport(Lib, EntryPoint = "cublasSetStream_v2")] public static partial int cublasSetStream(IntPtr handle, IntPtr stream);
    [LibraryImport(Lib)] public static partial int cublasSetMathMode(IntPtr handle, int mode);
    [LibraryImport(Lib)]
    public static partial int cublasSgemmStridedBatched(IntPtr handle, int transA, int transB, int m, int n, int k,
        float* alpha, ulong a, int lda, long strideA, ulong b, int ldb, long strideB,
        float* beta, ulong c, int ldc, long strideC, int batchCount);
    [LibraryImport(Lib)]
    public static partial int cublasDgemmStridedBatched(IntPtr handle, int transA, int transB, int m, int n, int k,
        double* alpha, ulong a, int lda, long strideA, ulong b, int ldb, long strideB,
        double* beta, ulong c, int ldc, long strideC, int batchCount);

    /// <summary>Mixed-type strided-batched GEMM (A, B, C types and the compute type given separately);
    /// alpha and beta point to float for CUBLAS_COMPUTE_32F.</summary>
    [LibraryImport(Lib)]
    public static partial int cublasGemmStridedBatchedEx(IntPtr handle, int transA, int transB, int m, int n, int k,
        void* alpha, ulong a, int aType, int lda, long strideA, ulong b, int bType, int ldb, long strideB,
        void* beta, ulong c, int cType, int ldc, long strideC, int batchCount, int computeType, int algo);

    public static void Check(int status, string call)
    {
        if (status == 0) return;
        string name = status switch
        {
            1 => "CUBLAS_STATUS_NOT_INITIALIZED", 3 => "CUBLAS_STATUS_ALLOC_FAILED", 7 => "CUBLAS_STATUS_INVALID_VALUE",
            8 => "CUBLAS_STATUS_ARCH_MISMATCH", 11 => "CUBLAS_STATUS_MAPPING_ERROR", 13 => "CUBLAS_STATUS_EXECUTION_FAILED",
            14 => "CUBLAS_STATUS_INTERNAL_ERROR", 15 => "CUBLAS_STATUS_NOT_SUPPORTED", _ => $"cublasStatus {status}",
        };
        throw new EngineException($"cuBLAS error in {call}: {name}");
    }
}
