using Engine.Kernels.Native;

namespace Engine.Kernels;

// GEMM through cuBLAS (row-major mapping in GemmMapping). A batch with its own C per matrix is
// one strided-batched call (a stride of 0 for A or B repeats that matrix); a batch summed into
// one C (strideC = 0) is a sequence of calls into the same C, beta on the first and 1 after it,
// in batch order, so it is deterministic.
public sealed unsafe partial class CudaBackend
{
    public void Gemm(Tensor a, long offA, long strideA, bool transA,
                     Tensor b, long offB, long strideB, bool transB,
                     Tensor c, long offC, long strideC,
                     int batch, int m, int n, int k, double alpha, double beta)
    {
        gpu.MakeCurrent();
        if (batch == 0 || m == 0 || n == 0) return;
        int size = a.DType.SizeOf();
        ulong pa = P(a) + (ulong)(offA * size), pb = P(b) + (ulong)(offB * size), pc = P(c) + (ulong)(offC * size);
        var map = GemmMapping.RowMajor(transA, transB, m, n, k);
        if (strideC == 0 && batch > 1)
        {
            for (int i = 0; i < batch; i++)
                Call(a, map, pb + (ulong)(i * strideB * size), 0, pa + (ulong)(i * strideA * size), 0, pc, 0, 1, alpha, i == 0 ? beta : 1.0);
        }
        else Call(a, map, pb, strideB, pa, strideA, pc, strideC, batch, alpha, beta);
    }

    /// <summary>One cuBLAS strided-batched call: first operand B, second A (see <see cref="GemmMapping"/>).</summary>
    private void Call(Tensor like, GemmMapping map, ulong first, long strideFirst, ulong second, long strideSecond, ulong c, long strideC, int batch, double alpha, double beta)
    {
        int opFirst = map.TransFirst ? Native.Cublas.OpT : Native.Cublas.OpN, opSecond = map.TransSecond ? Native.Cublas.OpT : Native.Cublas.OpN;
        if (like.DType == DType.F64)
        {
            double al = alpha, be = beta;
            Native.Cublas.Check(Native.Cublas.cublasDgemmStridedBatched(gpu.Cublas, opFirst, opSecond, map.M, map.N, map.K,
                &al, first, map.LdFirst, strideFirst, second, map.LdSecond, strideSecond, &be, c, map.LdC, strideC, batch), "cublasDgemmStridedBatched");
        }
        else if (like.DType == DType.F32)
        {
            float al = (float)alpha, be = (float)beta;
            Native.Cublas.Check(Native.Cublas.cublasSgemmStridedBatched(gpu.Cublas, opFirst, opSecond, map.M, map.N, map.K,
                &al, first, map.LdFirst, strideFirst, second, map.LdSecond, strideSecond, &be, c, map.LdC, strideC, batch), "cublasSgemmStridedBatched");
        }
        else throw new EngineException($"cuda GEMM computes in F32 or F64, not {like.DType}");
    }
}
