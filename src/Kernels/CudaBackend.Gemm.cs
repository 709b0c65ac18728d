using Engine.Kernels.Native;

namespace Engine.Kernels;

// GEMM through cuBLAS (row-major mapping in GemmMapping). A batch with its own C per matrix is
// one strided-batched call (a stride of 0 for A or B repeats that matrix); a batch summed into
// one C (strideC = 0) is a sequence of calls into the same C, beta on the first and 1 after it,
// in batch order, so it is deterministic.
//
// bf16 mixed precision (MixedPrecision.Bf16() open on the calling thread, F32 tensors): the
// matrices of A and B the product reads are packed into bf16 scratch buffers by the pack_bf16
// kernel (round to nearest even, as the CPU reference CpuBackend.GemmBf16.cs), then
// cublasGemmStridedBatchedEx multiplies them with CUDA_R_16BF inputs, a CUDA_R_32F C and
// CUBLAS_COMPUTE_32F (float32 accumulation; tensor cores). C, alpha and beta stay float32.
// F64 GEMMs ignore the setting.
public sealed unsafe partial class CudaBackend
{
    public void Gemm(Tensor a, long offA, long strideA, bool transA,
                     Tensor b, long offB, long strideB, bool transB,
                     Tensor c, long offC, long strideC,
                     int batch, int m, int n, int k, double alpha, double beta)
    {
        gpu.MakeCurrent();
        int size = a.DType.SizeOf();
        ulong pa = P(a) + (ulong)(offA * size), pb = P(b) + (ulong)(offB * size), pc = P(c) + (ulong)(offC * size);
        Gemm(a.DType, pa, pb, pc, new GemmSpec(strideA, transA, strideB, transB, strideC, batch, m, n, k, alpha, beta),
             bf16: a.DType == DType.F32 && MixedPrecision.GemmInBf16);
    }

    /// <summary>The pointer-level GEMM (the attention products call it directly). On a dry-run or
    /// emulated device every matrix the product reads or writes is checked against the live buffers.</summary>
    private void Gemm(DType dtype, ulong pa, ulong pb, ulong pc, GemmSpec g, bool bf16)
    {
        if (g.Batch == 0 || g.M == 0 || g.N == 0) return;
        int size = dtype.SizeOf();
        if (!gpu.IsReal)
        {
            void Check(ulong p, long stride, long count, string what)
            {
                int matrices = stride == 0 ? 1 : g.Batch;
                gpu.Allocator.CheckLive(p, ((matrices - 1) * stride + count) * size, "gemm " + what);
            }
            Check(pa, g.StrideA, (long)g.M * g.K, "A");
            Check(pb, g.StrideB, (long)g.K * g.N, "B");
            Check(pc, g.StrideC, (long)g.M * g.N, "C");
        }
        var map = GemmMapping.RowMajor(g.TransA, g.TransB, g.M, g.N, g.K);
        if (bf16)
        {
            GemmBf16(map, pa, g.StrideA, pb, g.StrideB, pc, g.StrideC, g.Batch, g.M, g.N, g.K, g.Alpha, g.Beta);
            return;
        }
        if (g.StrideC == 0 && g.Batch > 1)
        {
            for (int i = 0; i < g.Batch; i++)
                Call(dtype, map, pb + (ulong)(i * g.StrideB * size), 0, pa + (ulong)(i * g.StrideA * size), 0, pc, 0, 1, g.Alpha, i == 0 ? g.Beta : 1.0);
        }
        else Call(dtype, map, pb, g.StrideB, pa, g.StrideA, pc, g.StrideC, g.Batch, g.Alpha, g.Beta);
    }

    /// <summary>One cuBLAS strided-batched call: first operand B, second A (see <see cref="GemmMapping"/>).</summary>
    private void Call(DType dtype, GemmMapping map, ulong first, long strideFirst, ulong second, long strideSecond, ulong c, long strideC, int batch, double alpha, double beta)
    {
        if (gpu.IsDryRun) return;
        int opFirst = map.TransFirst ? Native.Cublas.OpT : Native.Cublas.OpN, opSecond = map.TransSecond ? Native.Cublas.OpT : Native.Cublas.OpN;
        if (gpu.IsEmulated)
        {
            int type = dtype == DType.F64 ? Native.Cublas.R64F : dtype == DType.F32 ? Native.Cublas.R32F : throw new EngineException($"cuda GEMM computes in F32 or F64, not {dtype}");
            EmulatedBlas.GemmStridedBatched(dtype == DType.F64 ? "cublasDgemmStridedBatched" : "cublasSgemmStridedBatched", opFirst, opSecond, map.M, map.N, map.K,
                alpha, first, type, map.LdFirst, strideFirst, second, type, map.LdSecond, strideSecond, beta, c, type, map.LdC, strideC, batch);
            return;
        }
        if (dtype == DType.F64)
        {
            double al = alpha, be = beta;
            Native.Cublas.Check(Native.Cublas.cublasDgemmStridedBatched(gpu.Cublas, opFirst, opSecond, map.M, map.N, map.K,
                &al, first, map.LdFirst, strideFirst, second, map.LdSecond, strideSecond, &be, c, map.LdC, strideC, batch), "cublasDgemmStridedBatched");
        }
        else if (dtype == DType.F32)
        {
            float al = (float)alpha, be = (float)beta;
            Native.Cublas.Check(Native.Cublas.cublasSgemmStridedBatched(gpu.Cublas, opFirst, opSecond, map.M, map.N, map.K,
                &al, first, map.LdFirst, strideFirst, second, map.LdSecond, strideSecond, &be, c, map.LdC, strideC, batch), "cublasSgemmStridedBatched");
        }
        else throw new EngineException($"cuda GEMM computes in F32 or F64, not {dtype}");
    }

    /// <summary>The bf16 path: pack A and B to bf16 scratch, then bf16 × bf16 → float32 GEMMs.</summary>
    private void GemmBf16(GemmMapping map, ulong pa, long strideA, ulong pb, long strideB, ulong pc, long strideC,
                          int batch, int m, int n, int k, double alpha, double beta)
    {
        long countA = (long)m * k, countB = (long)k * n;
        var sa = PackBf16(pa, strideA, countA, batch);
        var sb = PackBf16(pb, strideB, countB, batch);
        // Packed strides: matrix i at i·count (2 bytes each), or 0 for a shared matrix.
        long packedA = strideA == 0 ? 0 : countA, packedB = strideB == 0 ? 0 : countB;
        if (strideC == 0 && batch > 1)
        {
            for (int i = 0; i < batch; i++)
                CallBf16(map, sb.Pointer + (ulong)(i * packedB * 2), 0, sa.Pointer + (ulong)(i * packedA * 2), 0, pc, 0, 1, alpha, i == 0 ? beta : 1.0);
        }
        else CallBf16(map, sb.Pointer, packedB, sa.Pointer, packedA, pc, strideC, batch, alpha, beta);
        Free(sa);
        Free(sb);
    }

    /// <summary>The matrices i &lt; batch at src + i·stride (count floats each; one for stride 0)
    /// rounded to bf16 into a dense scratch buffer (returned to the cache by the caller; the
    /// stream orders its reuse after the GEMM).</summary>
    private (ulong Pointer, long Rounded) PackBf16(ulong src, long stride, long count, int batch)
    {
        int matrices = stride == 0 ? 1 : batch;
        var scratch = Scratch(Math.Max(2, matrices * count * 2));
        if (count > 0) gpu.Launch("pack_bf16", Blocks(matrices * count), Block, src, stride, count, matrices, scratch.Pointer);
        return scratch;
    }

    /// <summary>One cublasGemmStridedBatchedEx call on packed bf16 operands: first B, second A, C float32.</summary>
    private void CallBf16(GemmMapping map, ulong first, long strideFirst, ulong second, long strideSecond, ulong c, long strideC, int batch, double alpha, double beta)
    {
        if (gpu.IsDryRun) return; // a dry run has no cuBLAS: the packing launches and the pointers were checked
        int opFirst = map.TransFirst ? Native.Cublas.OpT : Native.Cublas.OpN, opSecond = map.TransSecond ? Native.Cublas.OpT : Native.Cublas.OpN;
        if (gpu.IsEmulated)
        {
            EmulatedBlas.GemmStridedBatched("cublasGemmStridedBatchedEx", opFirst, opSecond, map.M, map.N, map.K, (float)alpha,
                first, Native.Cublas.R16BF, map.LdFirst, strideFirst, second, Native.Cublas.R16BF, map.LdSecond, strideSecond,
                (float)beta, c, Native.Cublas.R32F, map.LdC, strideC, batch);
            return;
        }
        float al = (float)alpha, be = (float)beta;
        Native.Cublas.Check(Native.Cublas.cublasGemmStridedBatchedEx(gpu.Cublas, opFirst, opSecond, map.M, map.N, map.K,
            &al, first, Native.Cublas.R16BF, map.LdFirst, strideFirst, second, Native.Cublas.R16BF, map.LdSecond, strideSecond,
            &be, c, Native.Cublas.R32F, map.LdC, strideC, batch, Native.Cublas.Compute32F, Native.Cublas.GemmDefault), "cublasGemmStridedBatchedEx");
    }
}
