using System.Buffers;
using System.Runtime.Intrinsics;

namespace Engine.Backend;

// The float32 GEMM: packed operands and a 4×16 register-blocked micro-kernel.
//
// A is first brought to plain row-major form ([M, K]; a transposed A is copied once per matrix
// into pooled scratch) and op(B) is packed into column panels of 16 (PackPanels). C is then
// computed in tiles of 4 rows × 16 columns: for each p of K, two 8-wide vectors of B's row p are multiplied
// by four broadcast values of A's column p and added into 8 accumulators held in registers;
// the tile is written once at the end (C += alpha·acc, after C was scaled by beta). Blocks of
// rows run in parallel; each writes only its own rows, so results do not depend on the thread
// count. Float64 keeps the simple generic kernel (CpuBackend.Matmul.cs): it serves checks.
// With AVX-512 or AVX2+FMA, GEMMs from 40³ multiply-adds take the blocked path instead (12×32 or
// 6×16 kernel, CpuBackend.GemmBlocked.cs); this one serves tiny products, attention's per-head
// tiles and machines with neither (ENGINE_GEMM=tile8/tile4 forces it, for side-by-side timing).
public sealed partial class CpuBackend
{
    /// <summary>Rows per parallel work item (a multiple of the 4-row tile).</summary>
    private const int RowBlock = 32;

    /// <summary>ENGINE_GEMM=simple selects the generic kernel for float32 too (for side-by-side timing).</summary>
    private static readonly bool SimpleGemm = Environment.GetEnvironmentVariable("ENGINE_GEMM") == "simple";

    private static unsafe void GemmF32(Span<float> allA, long offA, long strideA, bool transA,
                                       Span<float> allB, long offB, long strideB, bool transB,
                                       Span<float> allC, long offC, long strideC,
                                       int batch, int m, int n, int k, float alpha, float beta)
    {
        if (UsesBlocked(m, n, k))
        {
            GemmBlocked(allA, offA, strideA, transA, allB, offB, strideB, transB, allC, offC, strideC, batch, m, n, k, alpha, beta);
            return;
        }
        var pool = ArrayPool<float>.Shared;
        float[]? packA = transA ? pool.Rent(m * k) : null;
        int panels = (n + 15) / 16;
        float[] packB = pool.Rent(Math.Max(1, panels * 16 * k));
        try
        {
            for (int bi = 0; bi < batch; bi++)
            {
                var a = allA.Slice((int)(offA + bi * strideA), m * k);
                var b = allB.Slice((int)(offB + bi * strideB), k * n);
                var c = allC.Slice((int)(offC + bi * strideC), m * n);
                if (transA) { Transpose(a, packA!, k, m); a = packA.AsSpan(0, m * k); }
                if (bi == 0 || strideB != 0) PackPanels(b, transB, k, n, packB);

                // A shared C (stride 0) sums the batch: beta applies once, before the first matrix.
                float bt = strideC == 0 && bi > 0 ? 1f : beta;
                if (bt == 0f) c.Clear();
                else if (bt != 1f) System.Numerics.Tensors.TensorPrimitives.Multiply(c, bt, c);

                fixed (float* pa = a, pb = packB, pc = c)
                {
                    float* A = pa, B = pb, C = pc;
                    // Work item: a block of RowBlock rows. Within it, column panels of 16 go outermost,
                    // so a panel of B (K×16) stays in cache while the block's rows (K·RowBlock floats)
                    // pass over it; all of B is read once per row block, not once per 4 rows.
                    int blocks = (m + RowBlock - 1) / RowBlock;
                    For(blocks, (long)RowBlock * n * k, block => MultiplyRows(A, B, C, block * RowBlock, Math.Min(m, (block + 1) * RowBlock), n, k, alpha));
                }
            }
        }
        finally
        {
            if (packA is not null) pool.Return(packA);
            pool.Return(packB);
        }
    }

    /// <summary>C[r0..r1, :] += alpha · A[r0..r1, :] · op(B) on one thread: A row-major [m, k], op(B) packed
    /// by <see cref="PackPanels"/> (n columns), C row stride n. Column panels of 16 go outermost, so
    /// a panel of B (K×16) stays in cache while the rows (K·(r1 − r0) floats) pass over it.</summary>
    private static unsafe void MultiplyRows(float* A, float* B, float* C, int r0, int r1, int n, int k, float alpha)
    {
        for (int j0 = 0; j0 < n; j0 += 16)
        {
            int cols = Math.Min(16, n - j0);
            float* panel = B + (long)j0 * k; // panel j0/16 starts at (j0/16)·16·k
            for (int i0 = r0; i0 < r1; i0 += 4)
            {
                int rows = Math.Min(4, r1 - i0);
                if (Wide && cols == 16 && r1 - i0 >= 8) { Tile8x16(A + (long)i0 * k, panel, C + (long)i0 * n + j0, n, k, alpha); i0 += 4; }
                else if (rows == 4 && cols == 16) Tile4x16(A + (long)i0 * k, panel, C + (long)i0 * n + j0, n, k, alpha);
                else TileEdge(A + (long)i0 * k, panel, C + (long)i0 * n + j0, n, k, rows, cols, alpha);
            }
        }
    }

    /// <summary>dst [cols, rows] = srcᵀ for src [rows, cols], in 32×32 tiles (both sides of a tile
    /// stay in cache; the naive loop wrote a new cache line per element), stripes of 32 source rows
    /// in parallel (each writes its own columns of dst).</summary>
    private static unsafe void Transpose(ReadOnlySpan<float> src, Span<float> dst, int rows, int cols)
    {
        const int Tile = 32;
        fixed (float* ps = src, pd = dst)
        {
            float* s = ps, d = pd;
            For((rows + Tile - 1) / Tile, (long)Tile * cols, stripe => TransposeRows(s, d, rows, cols, stripe * Tile, Math.Min(rows, (stripe + 1) * Tile)));
        }
    }

    /// <summary>Rows r0..r1 of the transpose (dst [cols, rows] = srcᵀ), on one thread, in 32-column tiles.</summary>
    private static unsafe void TransposeRows(float* s, float* d, int rows, int cols, int r0, int r1)
    {
        const int Tile = 32;
        for (int c0 = 0; c0 < cols; c0 += Tile)
        {
            int c1 = Math.Min(cols, c0 + Tile);
            for (int r = r0; r < r1; r++)
            {
                float* row = s + (long)r * cols;
                for (int c = c0; c < c1; c++) d[(long)c * rows + r] = row[c];
            }
        }
    }

    /// <summary>
    /// op(B) [K, N] copied into column panels of 16: panel q holds columns 16q..16q+15 as K rows of
    /// 16 consecutive floats (the last panel's missing columns are never read). The micro-kernel
    /// then walks one contiguous K×16 block instead of 16 floats from each of K rows N apart, which
    /// for wide N touched a new page per row. Panels are packed in parallel.
    /// </summary>
    private static unsafe void PackPanels(ReadOnlySpan<float> b, bool trans, int k, int n, Span<float> dst)
    {
        fixed (float* ps = b, pd = dst)
        {
            float* s = ps, d = pd;
            For((n + 15) / 16, 16L * k, q => PackPanel(s, trans, k, n, q, d));
        }
    }

    /// <summary>Panel q of <see cref="PackPanels"/> (columns 16q..16q+15 of op(B)), on one thread.</summary>
    private static unsafe void PackPanel(float* s, bool trans, int k, int n, int q, float* d)
    {
        int j0 = q * 16, cols = Math.Min(16, n - j0);
        float* panel = d + (long)j0 * k;
        if (!trans)
        {
            for (int p = 0; p < k; p++)
            {
                float* row = s + (long)p * n + j0;
                if (cols == 16) { Vector256.Load(row).Store(panel + p * 16); Vector256.Load(row + 8).Store(panel + p * 16 + 8); }
                else for (int c = 0; c < cols; c++) panel[p * 16 + c] = row[c];
            }
        }
        else
        {
            // B stored [N, K]: column j of op(B) is stored row j, contiguous over p.
            for (int c = 0; c < cols; c++)
            {
                float* col = s + (long)(j0 + c) * k;
                for (int p = 0; p < k; p++) panel[p * 16 + c] = col[p];
            }
        }
    }

    /// <summary>Use the 8×16 AVX-512 tile (ENGINE_GEMM=tile4 keeps the 4×16 one, for side-by-side timing).</summary>
    private static readonly bool Wide = Vector512.IsHardwareAccelerated && Environment.GetEnvironmentVariable("ENGINE_GEMM") != "tile4";

    /// <summary>C[0..8, 0..16] += alpha · A[0..8, :] · B[:, 0..16] with one 16-wide vector per row:
    /// 8 accumulators, one load of B and 8 broadcasts per 8 FMAs (the 4×16 tile needs 2 loads and
    /// 4 broadcasts per 8 FMAs of half the width). Each element is summed over p in the same order
    /// as in <see cref="Tile4x16"/>, so the two give the same bits.</summary>
    internal static unsafe void Tile8x16(float* a, float* b, float* c, int n, int k, float alpha)
    {
        Vector512<float> c0 = default, c1 = default, c2 = default, c3 = default, c4 = default, c5 = default, c6 = default, c7 = default;
        long k2 = 2L * k, k4 = 4L * k;
        float* a0 = a, a2 = a + k2, a4 = a + k4, a6 = a4 + k2;
        for (int p = 0; p < k; p++)
        {
            var bv = Vector512.Load(b + p * 16);
            c0 = Vector512.FusedMultiplyAdd(Vector512.Create(a0[p]), bv, c0);
            c1 = Vector512.FusedMultiplyAdd(Vector512.Create(a0[p + k]), bv, c1);
            c2 = Vector512.FusedMultiplyAdd(Vector512.Create(a2[p]), bv, c2);
            c3 = Vector512.FusedMultiplyAdd(Vector512.Create(a2[p + k]), bv, c3);
            c4 = Vector512.FusedMultiplyAdd(Vector512.Create(a4[p]), bv, c4);
            c5 = Vector512.FusedMultiplyAdd(Vector512.Create(a4[p + k]), bv, c5);
            c6 = Vector512.FusedMultiplyAdd(Vector512.Create(a6[p]), bv, c6);
            c7 = Vector512.FusedMultiplyAdd(Vector512.Create(a6[p + k]), bv, c7);
        }
        var al = Vector512.Create(alpha);
        Vector512.FusedMultiplyAdd(c0, al, Vector512.Load(c)).Store(c);
        Vector512.FusedMultiplyAdd(c1, al, Vector512.Load(c + n)).Store(c + n);
        Vector512.FusedMultiplyAdd(c2, al, Vector512.Load(c + 2 * n)).Store(c + 2 * n);
        Vector512.FusedMultiplyAdd(c3, al, Vector512.Load(c + 3 * n)).Store(c + 3 * n);
        Vector512.FusedMultiplyAdd(c4, al, Vector512.Load(c + 4 * n)).Store(c + 4 * n);
        Vector512.FusedMultiplyAdd(c5, al, Vector512.Load(c + 5 * n)).Store(c + 5 * n);
        Vector512.FusedMultiplyAdd(c6, al, Vector512.Load(c + 6 * n)).Store(c + 6 * n);
        Vector512.FusedMultiplyAdd(c7, al, Vector512.Load(c + 7 * n)).Store(c + 7 * n);
    }

    /// <summary>C[0..4, 0..16] += alpha · A[0..4, :] · B[:, 0..16] (A row stride k, B a packed panel
    /// of rows of 16, C row stride n).</summary>
    internal static unsafe void Tile4x16(float* a, float* b, float* c, int n, int k, float alpha)
    {
        Vector256<float> c00 = default, c01 = default, c10 = default, c11 = default;
        Vector256<float> c20 = default, c21 = default, c30 = default, c31 = default;
        float* a0 = a, a1 = a + k, a2 = a + 2 * k, a3 = a + 3 * k;
        for (int p = 0; p < k; p++)
        {
            var b0 = Vector256.Load(b + p * 16);
            var b1 = Vector256.Load(b + p * 16 + 8);
            var x = Vector256.Create(a0[p]);
            c00 = Vector256.FusedMultiplyAdd(x, b0, c00); c01 = Vector256.FusedMultiplyAdd(x, b1, c01);
            x = Vector256.Create(a1[p]);
            c10 = Vector256.FusedMultiplyAdd(x, b0, c10); c11 = Vector256.FusedMultiplyAdd(x, b1, c11);
            x = Vector256.Create(a2[p]);
            c20 = Vector256.FusedMultiplyAdd(x, b0, c20); c21 = Vector256.FusedMultiplyAdd(x, b1, c21);
            x = Vector256.Create(a3[p]);
            c30 = Vector256.FusedMultiplyAdd(x, b0, c30); c31 = Vector256.FusedMultiplyAdd(x, b1, c31);
        }
        var al = Vector256.Create(alpha);
        Store(c, c00, c01, al);
        Store(c + n, c10, c11, al);
        Store(c + 2 * n, c20, c21, al);
        Store(c + 3 * n, c30, c31, al);
    }

    private static unsafe void Store(float* c, Vector256<float> lo, Vector256<float> hi, Vector256<float> alpha)
    {
        Vector256.FusedMultiplyAdd(lo, alpha, Vector256.Load(c)).Store(c);
        Vector256.FusedMultiplyAdd(hi, alpha, Vector256.Load(c + 8)).Store(c + 8);
    }

    /// <summary>The partial tiles at the bottom and right edges, one scalar sum per element.</summary>
    private static unsafe void TileEdge(float* a, float* b, float* c, int n, int k, int rows, int cols, float alpha)
    {
        float* acc = stackalloc float[64];
        new Span<float>(acc, 64).Clear();
        for (int p = 0; p < k; p++)
        {
            float* brow = b + p * 16;
            for (int r = 0; r < rows; r++)
            {
                float av = a[(long)r * k + p];
                for (int j = 0; j < cols; j++) acc[r * 16 + j] += av * brow[j];
            }
        }
        for (int r = 0; r < rows; r++)
            for (int j = 0; j < cols; j++) c[(long)r * n + j] += alpha * acc[r * 16 + j];
    }
}
