using System.Buffers;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;

namespace Engine.Backend;

// The float32 GEMM in the GotoBLAS/BLIS layout (the design of OpenBLAS's own kernels): op(A) is
// packed into micro-panels of MR rows and op(B) into panels of NR columns, both k-major (for each
// p the panel's MR or NR values lie together) and zero-padded at the edges, so one register-blocked
// micro-kernel serves every tile. Two kernels, one per vector width:
// - AVX-512, 12×32: per step of K it loads two 16-wide vectors of B, broadcasts 12 values of A and
//   does 24 FMAs into 24 zmm accumulators (24 + 2 + 1 of the 32 registers): 24 FMAs per 14 loads,
//   against the 8×16 tile's 8 per 9 (measured alone: the core's FMA peak).
// - AVX2 + FMA, 6×16 (BLIS's Haswell/Zen shape): two 8-wide vectors of B, 6 broadcasts, 12 FMAs
//   into 12 ymm accumulators (12 + 2 + 1 of the 16 registers): 12 FMAs per 8 loads, against the
//   4×16 tile's 8 per 6, and 12 independent sums where two FMA ports of latency 4 need 8.
// Both sum each C element in the same order (below), so the two kernels give the same bits.
//
// K is cut into blocks of at most BlockK so that the current K-block of one B panel (≤ 32 KB)
// stays in L1 while the block's A micro-panels (in L2) pass over it; C is cut into fixed blocks
// of BlockM × BlockN (smaller for a small C) that run in parallel. Each C element is summed in one
// fixed order — within a K-block p ascending, then C += alpha·(block sum), K-blocks in order —
// whatever block holds it, so results are bit-for-bit repeatable and independent of the thread count.
// Tiny GEMMs (below 40³ multiply-adds) stay on the 8×16 / 4×16 tiles of CpuBackend.Gemm32.cs,
// where packing would cost more than it saves; attention's per-head products call those tiles directly.
public sealed partial class CpuBackend
{
    /// <summary>Rows of a micro-tile (broadcast values of A) and columns (two vectors of B): 12×32 with
    /// 16-lane vectors (AVX-512), 6×16 with 8-lane ones (AVX2).</summary>
    internal const int MRWide = 12, NRWide = 32, MRNarrow = 6, NRNarrow = 16;

    private static (int MR, int NR) TileShape(bool wide) => wide ? (MRWide, NRWide) : (MRNarrow, NRNarrow);

    /// <summary>Upper bound on a K-block: a B panel's block, BlockK × 32 floats (32 KB; 16 KB for the
    /// 6×16 kernel), stays in the 48 KB L1 (32 KB on AMD Zen 3) with room for the A micro-panel
    /// streaming past it. (320 and 192 measured the same within the noise of a shared machine.) The
    /// same for both kernels, so they sum in the same order.</summary>
    private const int BlockK = 256;

    /// <summary>Rows and columns of one parallel C block (multiples of MR and NR); 192 × 128, 96 × 768,
    /// 384 × 128 measured the same within noise. A small C gets smaller blocks (<see cref="CBlocks"/>).</summary>
    private const int BlockM = 96, BlockN = 256;

    /// <summary>The C blocks of an m × n product: BlockM × BlockN, halved (the longer side in tiles first,
    /// whole tiles only) while there are fewer than four per core, so that a small C summed over a long K
    /// — a weight gradient such as llama-mini's 64 × 256 key projection over 4,096 tokens, which was one
    /// block on one core — spreads over the cores. The bits do not depend on the blocks: each C element
    /// is summed in the same order in any block (the K-blocks depend on k alone).</summary>
    internal static (int BM, int BN) CBlocks(int m, int n, int MR, int NR, int cores)
    {
        int bm = Math.Min(BlockM, (m + MR - 1) / MR * MR), bn = Math.Min(BlockN, (n + NR - 1) / NR * NR);
        while ((long)((m + bm - 1) / bm) * ((n + bn - 1) / bn) < 4L * cores)
        {
            int tm = bm / MR, tn = bn / NR;
            if (tn >= tm && tn > 1) bn = (tn + 1) / 2 * NR;
            else if (tm > 1) bm = (tm + 1) / 2 * MR;
            else break;
        }
        return (bm, bn);
    }

    /// <summary>Below this many multiply-adds (M·N·K, 40³) the unpacked 8×16 (4×16) tiles are used: measured
    /// faster at 16³ and 32³ (packing and renting cost more than they save), slower from 48³ up.</summary>
    private const long BlockedMinWork = 1 << 16;

    /// <summary>Below this many multiply-adds per matrix (256³) a batch with its own C per matrix runs
    /// whole matrices in parallel instead of the blocks of each matrix in turn.</summary>
    private const long BatchParallelWork = 1 << 24;

    /// <summary>The blocked path runs with AVX-512, or AVX2 with FMA (ENGINE_GEMM=tile8 or tile4 keeps the
    /// older tiles, for side-by-side timing).</summary>
    private static readonly bool Blocked = (Vector512.IsHardwareAccelerated || (Vector256.IsHardwareAccelerated && Fma.IsSupported))
                                           && Environment.GetEnvironmentVariable("ENGINE_GEMM") is not ("tile8" or "tile4");

    /// <summary>Whether the blocked path uses the 12×32 AVX-512 kernel (else the 6×16 AVX2 one).</summary>
    internal static readonly bool BlockedWide = Vector512.IsHardwareAccelerated;

    /// <summary>Whether <see cref="GemmF32"/> takes the blocked path for this shape.</summary>
    internal static bool UsesBlocked(int m, int n, int k) => Blocked && (long)m * n * k >= BlockedMinWork;

    /// <summary>C = alpha·op(A)·op(B) + beta·C for each matrix of the batch (the layout of
    /// <see cref="GemmF32"/>), blocked and packed. <paramref name="parallel"/> = false runs the C
    /// blocks on the calling thread only (the tests compare the two: same bits). <paramref name="wide"/>
    /// picks the kernel (12×32 or 6×16; by default the machine's, <see cref="BlockedWide"/>).</summary>
    internal static unsafe void GemmBlocked(Span<float> allA, long offA, long strideA, bool transA,
                                            Span<float> allB, long offB, long strideB, bool transB,
                                            Span<float> allC, long offC, long strideC,
                                            int batch, int m, int n, int k, float alpha, float beta, bool parallel = true, bool? wide = null)
    {
        // Without AVX-512 Vector512 is emulated (correct, slow): GemmF32 never asks for the wide
        // kernel then, but the tests do, so both kernels' arithmetic is checked on every machine.
        bool w = wide ?? BlockedWide;
        var (MR, NR) = TileShape(w);
        if (parallel && batch > 1 && strideC != 0 && (long)m * n * k < BatchParallelWork)
        {
            // Many small independent products (attention's batched matmuls): whole matrices per
            // thread, each on one thread — the same bits as below, without two parallel loops
            // and their waits per matrix.
            int lengthA = allA.Length, lengthB = allB.Length, lengthC = allC.Length;
            fixed (float* pa = allA, pb = allB, pc = allC)
            {
                float* xa = pa, xb = pb, xc = pc;
                For(batch, (long)m * n * k, bi => GemmBlocked(new Span<float>(xa, lengthA), offA + bi * strideA, 0, transA,
                                                               new Span<float>(xb, lengthB), offB + bi * strideB, 0, transB,
                                                               new Span<float>(xc, lengthC), offC + bi * strideC, 0,
                                                               1, m, n, k, alpha, beta, parallel: false, wide: w));
            }
            return;
        }
        var pool = ArrayPool<float>.Shared;
        int panelsA = (m + MR - 1) / MR, panelsB = (n + NR - 1) / NR;
        // 16 floats spare, to start each packed operand on a 64-byte boundary: a misaligned
        // 64-byte load of B spans two cache lines, which costs two loads on every step of K.
        float[] packA = pool.Rent(panelsA * MR * k + 16), packB = pool.Rent(panelsB * NR * k + 16);
        // K-blocks of (nearly) equal size — the last at most kBlocks − 1 shorter — so no block is a short remainder.
        int kBlocks = Math.Max(1, (k + BlockK - 1) / BlockK), kc = (k + kBlocks - 1) / kBlocks;
        var (bm, bn) = CBlocks(m, n, MR, NR, parallel ? Threads : 1);
        int blocksM = (m + bm - 1) / bm, blocksN = (n + bn - 1) / bn;
        try
        {
            // One pinning for the whole call: the aligned pointers stay valid throughout.
            fixed (float* qa = packA, qb = packB)
            {
                float* A = Align64(qa), B = Align64(qb);
                for (int bi = 0; bi < batch; bi++)
                {
                    var a = allA.Slice((int)(offA + bi * strideA), m * k);
                    var b = allB.Slice((int)(offB + bi * strideB), k * n);
                    var c = allC.Slice((int)(offC + bi * strideC), m * n);

                    fixed (float* pa = a, pb = b)
                    {
                        float* sa = pa, sb = pb;
                        // op(A)[i, p] is A[i·k + p] (rows along p) or, transposed, A[p·m + i]; op(B)[p, j]
                        // is B[p·n + j] or, transposed, B[j·k + p].
                        // Both operands' panel groups in one parallel loop (one wait for the slowest thread, not two).
                        int groupsA = bi == 0 || strideA != 0 ? (panelsA + PackGroup - 1) / PackGroup : 0;
                        int groupsB = bi == 0 || strideB != 0 ? (panelsB + PackGroup - 1) / PackGroup : 0;
                        Run(parallel, groupsA + groupsB, (long)PackGroup * NR * k, g =>
                        {
                            if (g < groupsA)
                                PackGroupOf(sa, transA ? 1 : k, transA ? m : 1, m, MR, k, A, g * PackGroup, Math.Min(panelsA, (g + 1) * PackGroup));
                            else
                            {
                                g -= groupsA;
                                PackGroupOf(sb, transB ? k : 1, transB ? 1 : n, n, NR, k, B, g * PackGroup, Math.Min(panelsB, (g + 1) * PackGroup));
                            }
                        });
                    }

                    // A shared C (stride 0) sums the batch: beta applies once, before the first matrix.
                    float bt = strideC == 0 && bi > 0 ? 1f : beta;
                    // beta = 0: the first K-block writes C instead of adding to it (no pass to clear it first).
                    bool overwrite = bt == 0f && k > 0;
                    if (bt == 0f && k == 0) c.Clear();
                    else if (bt != 0f && bt != 1f) System.Numerics.Tensors.TensorPrimitives.Multiply(c, bt, c);

                    fixed (float* pc = c)
                    {
                        float* C = pc;
                        Run(parallel, blocksM * blocksN, (long)bm * bn * k, t =>
                        {
                            int i0 = t / blocksN * bm, j0 = t % blocksN * bn;
                            MultiplyBlock(A, B, C, i0, Math.Min(m, i0 + bm), j0, Math.Min(n, j0 + bn), m, n, k, kc, alpha, overwrite, w);
                        });
                    }
                }
            }
        }
        finally
        {
            pool.Return(packA);
            pool.Return(packB);
        }
    }

    private static unsafe float* Align64(float* p) => (float*)(((nuint)p + 63) & ~(nuint)63);

    private static void Run(bool parallel, int count, long workPerItem, Action<int> body)
    {
        if (parallel) For(count, workPerItem, body);
        else for (int i = 0; i < count; i++) body(i);
    }

    /// <summary>Panels packed per parallel work item (a group reads its lines' runs together).</summary>
    private const int PackGroup = 8;

    /// <summary>
    /// Panels q0..q1 of a packed operand: panel q holds the lines q·width.. (at most width of the
    /// <paramref name="lines"/>) of a matrix whose element (line i, step p) is
    /// src[i·<paramref name="lineStride"/> + p·<paramref name="stepStride"/>], written k-major from
    /// dst + q·width·k as [p·width + (i − q·width)], the missing lines of an edge panel as zeros.
    /// </summary>
    private static unsafe void PackGroupOf(float* src, long lineStride, long stepStride, int lines, int width, int k, float* dst, int q0, int q1)
    {
        if (lineStride == 1)
        {
            // The lines lie together for each p: for each p, one short copy per panel, so the
            // group's run of each source row is read in one pass.
            for (int p = 0; p < k; p++)
            {
                float* row = src + p * stepStride;
                for (int q = q0; q < q1; q++)
                {
                    int count = Math.Min(width, lines - q * width);
                    float* s = row + q * width, d = dst + ((long)q * k + p) * width;
                    int i = 0;
                    for (; i + 16 <= count; i += 16) Vector512.Load(s + i).Store(d + i);
                    for (; i + 8 <= count; i += 8) Vector256.Load(s + i).Store(d + i);
                    for (; i + 4 <= count; i += 4) Vector128.Load(s + i).Store(d + i);
                    for (; i < count; i++) d[i] = s[i];
                    for (; i < width; i++) d[i] = 0f;
                }
            }
            return;
        }
        for (int q = q0; q < q1; q++)
            TransposePanel(src + q * width * lineStride, lineStride, Math.Min(width, lines - q * width), width, k, dst + (long)q * width * k);
    }

    /// <summary>One panel from lines contiguous along p (count ≤ width lines of stride lineStride).</summary>
    private static unsafe void TransposePanel(float* src, long lineStride, int count, int width, int k, float* dst)
    {
        // Each line is contiguous along p: a transpose, 4 lines × 4 steps at a time in registers
        // (SSE unpack/move), in runs of 64 p so the destination rows being written (64 × width
        // floats) stay in L1 while the lines are read across them.
        const int Step = 64;
        for (int p0 = 0; p0 < k; p0 += Step)
        {
            int p1 = Math.Min(k, p0 + Step), i = 0;
            if (Sse.IsSupported)
            {
                for (; i + 4 <= count; i += 4)
                {
                    float* s0 = src + i * lineStride, s1 = s0 + lineStride, s2 = s1 + lineStride, s3 = s2 + lineStride;
                    int p = p0;
                    for (; p + 4 <= p1; p += 4)
                    {
                        var r0 = Vector128.Load(s0 + p);
                        var r1 = Vector128.Load(s1 + p);
                        var r2 = Vector128.Load(s2 + p);
                        var r3 = Vector128.Load(s3 + p);
                        var t0 = Sse.UnpackLow(r0, r1);  // r0[0] r1[0] r0[1] r1[1]
                        var t1 = Sse.UnpackHigh(r0, r1); // r0[2] r1[2] r0[3] r1[3]
                        var t2 = Sse.UnpackLow(r2, r3);
                        var t3 = Sse.UnpackHigh(r2, r3);
                        float* d = dst + (long)p * width + i;
                        Sse.MoveLowToHigh(t0, t2).Store(d);             // step p:   r0 r1 r2 r3
                        Sse.MoveHighToLow(t2, t0).Store(d + width);     // step p+1
                        Sse.MoveLowToHigh(t1, t3).Store(d + 2 * width); // step p+2
                        Sse.MoveHighToLow(t3, t1).Store(d + 3 * width); // step p+3
                    }
                    for (; p < p1; p++)
                    {
                        float* d = dst + (long)p * width + i;
                        d[0] = s0[p]; d[1] = s1[p]; d[2] = s2[p]; d[3] = s3[p];
                    }
                }
            }
            for (; i < count; i++)
            {
                float* s = src + i * lineStride;
                for (int p = p0; p < p1; p++) dst[(long)p * width + i] = s[p];
            }
            for (; i < width; i++)
                for (int p = p0; p < p1; p++) dst[(long)p * width + i] = 0f;
        }
    }

    /// <summary>C[i0..i1, j0..j1] += alpha · op(A)[i0..i1, :] · op(B)[:, j0..j1] on one thread, from the
    /// packed operands (i0 a multiple of MR, j0 of NR), K in blocks of kc, by the 12×32 kernel
    /// (<paramref name="wide"/>) or the 6×16 one.</summary>
    private static unsafe void MultiplyBlock(float* A, float* B, float* C, int i0, int i1, int j0, int j1, int m, int n, int k, int kc, float alpha, bool overwrite, bool wide)
    {
        var (MR, NR) = TileShape(wide);
        for (int p0 = 0; p0 < k; p0 += kc)
        {
            int steps = Math.Min(kc, k - p0);
            // The K-block of one B panel (steps × NR floats) stays in L1 while the block's A
            // micro-panels pass over it.
            for (int j = j0; j < j1; j += NR)
            {
                float* b = B + (long)j * k + (long)p0 * NR; // panel j/NR starts at (j/NR)·NR·k
                for (int i = i0; i < i1; i += MR)
                    Tile(A + (long)i * k + (long)p0 * MR, b, C + (long)i * n + j, n, steps, Math.Min(MR, m - i), Math.Min(NR, n - j), alpha, overwrite && p0 == 0, wide);
            }
        }
    }

    /// <summary>One micro-tile: straight into C when it is whole, through an MR×NR scratch tile
    /// (C's part copied in and back) at the edges, so edge elements get the same arithmetic.</summary>
    private static unsafe void Tile(float* a, float* b, float* c, int ldc, int steps, int rows, int cols, float alpha, bool overwrite, bool wide)
    {
        var (MR, NR) = TileShape(wide);
        if (rows == MR && cols == NR) { Kernel(wide, a, b, c, ldc, steps, alpha, overwrite); return; }
        float* t = stackalloc float[MRWide * NRWide];
        for (int r = 0; r < MR; r++)
            for (int j = 0; j < NR; j++) t[r * NR + j] = r < rows && j < cols ? c[(long)r * ldc + j] : 0f;
        Kernel(wide, a, b, t, NR, steps, alpha, overwrite);
        for (int r = 0; r < rows; r++)
            for (int j = 0; j < cols; j++) c[(long)r * ldc + j] = t[r * NR + j];
    }

    private static unsafe void Kernel(bool wide, float* a, float* b, float* c, int ldc, int steps, float alpha, bool overwrite)
    {
        if (wide) Kernel12x32(a, b, c, ldc, steps, alpha, overwrite);
        else Kernel6x16(a, b, c, ldc, steps, alpha, overwrite);
    }

    /// <summary>C[0..12, 0..32] (+)= alpha · Σ_p a[p·12 + r] · b[p·32 + j] over p &lt; steps (a and b packed
    /// k-major; C row stride ldc). The 24 sums live in registers (locals, unrolled by hand).</summary>
    internal static unsafe void Kernel12x32(float* a, float* b, float* c, int ldc, int steps, float alpha, bool overwrite)
    {
        Vector512<float> c00 = default, c01 = default, c10 = default, c11 = default, c20 = default, c21 = default;
        Vector512<float> c30 = default, c31 = default, c40 = default, c41 = default, c50 = default, c51 = default;
        Vector512<float> c60 = default, c61 = default, c70 = default, c71 = default, c80 = default, c81 = default;
        Vector512<float> c90 = default, c91 = default, ca0 = default, ca1 = default, cb0 = default, cb1 = default;
        for (int p = 0; p < steps; p++)
        {
            var b0 = Vector512.Load(b);
            var b1 = Vector512.Load(b + 16);
            var x = Vector512.Create(a[0]);
            c00 = Vector512.FusedMultiplyAdd(x, b0, c00); c01 = Vector512.FusedMultiplyAdd(x, b1, c01);
            x = Vector512.Create(a[1]);
            c10 = Vector512.FusedMultiplyAdd(x, b0, c10); c11 = Vector512.FusedMultiplyAdd(x, b1, c11);
            x = Vector512.Create(a[2]);
            c20 = Vector512.FusedMultiplyAdd(x, b0, c20); c21 = Vector512.FusedMultiplyAdd(x, b1, c21);
            x = Vector512.Create(a[3]);
            c30 = Vector512.FusedMultiplyAdd(x, b0, c30); c31 = Vector512.FusedMultiplyAdd(x, b1, c31);
            x = Vector512.Create(a[4]);
            c40 = Vector512.FusedMultiplyAdd(x, b0, c40); c41 = Vector512.FusedMultiplyAdd(x, b1, c41);
            x = Vector512.Create(a[5]);
            c50 = Vector512.FusedMultiplyAdd(x, b0, c50); c51 = Vector512.FusedMultiplyAdd(x, b1, c51);
            x = Vector512.Create(a[6]);
            c60 = Vector512.FusedMultiplyAdd(x, b0, c60); c61 = Vector512.FusedMultiplyAdd(x, b1, c61);
            x = Vector512.Create(a[7]);
            c70 = Vector512.FusedMultiplyAdd(x, b0, c70); c71 = Vector512.FusedMultiplyAdd(x, b1, c71);
            x = Vector512.Create(a[8]);
            c80 = Vector512.FusedMultiplyAdd(x, b0, c80); c81 = Vector512.FusedMultiplyAdd(x, b1, c81);
            x = Vector512.Create(a[9]);
            c90 = Vector512.FusedMultiplyAdd(x, b0, c90); c91 = Vector512.FusedMultiplyAdd(x, b1, c91);
            x = Vector512.Create(a[10]);
            ca0 = Vector512.FusedMultiplyAdd(x, b0, ca0); ca1 = Vector512.FusedMultiplyAdd(x, b1, ca1);
            x = Vector512.Create(a[11]);
            cb0 = Vector512.FusedMultiplyAdd(x, b0, cb0); cb1 = Vector512.FusedMultiplyAdd(x, b1, cb1);
            a += MRWide;
            b += NRWide;
        }
        var al = Vector512.Create(alpha);
        Store2(c, c00, c01, al, overwrite); c += ldc;
        Store2(c, c10, c11, al, overwrite); c += ldc;
        Store2(c, c20, c21, al, overwrite); c += ldc;
        Store2(c, c30, c31, al, overwrite); c += ldc;
        Store2(c, c40, c41, al, overwrite); c += ldc;
        Store2(c, c50, c51, al, overwrite); c += ldc;
        Store2(c, c60, c61, al, overwrite); c += ldc;
        Store2(c, c70, c71, al, overwrite); c += ldc;
        Store2(c, c80, c81, al, overwrite); c += ldc;
        Store2(c, c90, c91, al, overwrite); c += ldc;
        Store2(c, ca0, ca1, al, overwrite); c += ldc;
        Store2(c, cb0, cb1, al, overwrite);
    }

    /// <summary>c[0..32] = alpha·(lo, hi) + c[0..32], or + 0 when overwriting (the same bits as clearing C first).</summary>
    private static unsafe void Store2(float* c, Vector512<float> lo, Vector512<float> hi, Vector512<float> alpha, bool overwrite)
    {
        Vector512.FusedMultiplyAdd(lo, alpha, overwrite ? Vector512<float>.Zero : Vector512.Load(c)).Store(c);
        Vector512.FusedMultiplyAdd(hi, alpha, overwrite ? Vector512<float>.Zero : Vector512.Load(c + 16)).Store(c + 16);
    }

    /// <summary>C[0..6, 0..16] (+)= alpha · Σ_p a[p·6 + r] · b[p·16 + j] over p &lt; steps (a and b packed
    /// k-major; C row stride ldc): the AVX2 kernel, 12 ymm sums. Each element is summed as in
    /// <see cref="Kernel12x32"/> (p ascending, one FMA per step, then alpha·sum + C), so the same bits.</summary>
    internal static unsafe void Kernel6x16(float* a, float* b, float* c, int ldc, int steps, float alpha, bool overwrite)
    {
        Vector256<float> c00 = default, c01 = default, c10 = default, c11 = default, c20 = default, c21 = default;
        Vector256<float> c30 = default, c31 = default, c40 = default, c41 = default, c50 = default, c51 = default;
        for (int p = 0; p < steps; p++)
        {
            var b0 = Vector256.Load(b);
            var b1 = Vector256.Load(b + 8);
            var x = Vector256.Create(a[0]);
            c00 = Vector256.FusedMultiplyAdd(x, b0, c00); c01 = Vector256.FusedMultiplyAdd(x, b1, c01);
            x = Vector256.Create(a[1]);
            c10 = Vector256.FusedMultiplyAdd(x, b0, c10); c11 = Vector256.FusedMultiplyAdd(x, b1, c11);
            x = Vector256.Create(a[2]);
            c20 = Vector256.FusedMultiplyAdd(x, b0, c20); c21 = Vector256.FusedMultiplyAdd(x, b1, c21);
            x = Vector256.Create(a[3]);
            c30 = Vector256.FusedMultiplyAdd(x, b0, c30); c31 = Vector256.FusedMultiplyAdd(x, b1, c31);
            x = Vector256.Create(a[4]);
            c40 = Vector256.FusedMultiplyAdd(x, b0, c40); c41 = Vector256.FusedMultiplyAdd(x, b1, c41);
            x = Vector256.Create(a[5]);
            c50 = Vector256.FusedMultiplyAdd(x, b0, c50); c51 = Vector256.FusedMultiplyAdd(x, b1, c51);
            a += MRNarrow;
            b += NRNarrow;
        }
        var al = Vector256.Create(alpha);
        Store2(c, c00, c01, al, overwrite); c += ldc;
        Store2(c, c10, c11, al, overwrite); c += ldc;
        Store2(c, c20, c21, al, overwrite); c += ldc;
        Store2(c, c30, c31, al, overwrite); c += ldc;
        Store2(c, c40, c41, al, overwrite); c += ldc;
        Store2(c, c50, c51, al, overwrite);
    }

    /// <summary>c[0..16] = alpha·(lo, hi) + c[0..16], or + 0 when overwriting.</summary>
    private static unsafe void Store2(float* c, Vector256<float> lo, Vector256<float> hi, Vector256<float> alpha, bool overwrite)
    {
        Vector256.FusedMultiplyAdd(lo, alpha, overwrite ? Vector256<float>.Zero : Vector256.Load(c)).Store(c);
        Vector256.FusedMultiplyAdd(hi, alpha, overwrite ? Vector256<float>.Zero : Vector256.Load(c + 8)).Store(c + 8);
    }
}
