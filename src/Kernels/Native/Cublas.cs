using System.Runtime.InteropServices;

namespace Engine.Kernels.Native;

/// <summary>The cuBLAS functions the backend uses (column-major; see <see cref="GemmMapping"/>
/// for how row-major products map onto them).</summary>
internal static unsafe partial class Cublas
{
    private const string Lib = "cublas";

    public const int OpN = 0, OpT = 1;
    public const int DefaultMath = 0, Tf32TensorOpMath = 3;

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
