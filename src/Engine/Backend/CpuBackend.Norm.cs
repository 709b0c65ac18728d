using System.Numerics;
using System.Numerics.Tensors;
using System.Runtime.InteropServices;
using System.Runtime.Intrinsics;

namespace Engine.Backend;

// Reductions over the last dim, softmax, layer norm and RMS norm. Rows are independent and run
// in parallel; parameter gradients (dw, db) run in parallel over chunks of columns, each column
// summed over the rows in row order (the same result for any thread count).
public sealed partial class CpuBackend
{
    private const int ColumnChunk = 64;

    public void SumLast(Tensor x, Tensor y, bool mean)
    {
        if (IsF64(x)) SumLast<double>(x, y, mean); else SumLast<float>(x, y, mean);
    }

    private static void SumLast<T>(Tensor tx, Tensor ty, bool mean) where T : unmanaged, IFloatingPointIeee754<T>
    {
        int n = tx.Dim(-1);
        var xs = S<T>(tx); var ys = S<T>(ty);
        T div = T.CreateTruncating(mean ? n : 1);
        for (int r = 0; r < ys.Length; r++) ys[r] = TensorPrimitives.Sum<T>(xs.Slice(r * n, n)) / div;
    }

    public void SumLastBackward(Tensor dy, Tensor dx, bool mean)
    {
        if (IsF64(dy)) SumLastBackward<double>(dy, dx, mean); else SumLastBackward<float>(dy, dx, mean);
    }

    private static void SumLastBackward<T>(Tensor tdy, Tensor tdx, bool mean) where T : unmanaged, IFloatingPointIeee754<T>
    {
        int n = tdx.Dim(-1);
        var dys = S<T>(tdy); var dxs = S<T>(tdx);
        T div = T.CreateTruncating(mean ? n : 1);
        for (int r = 0; r < dys.Length; r++) TensorPrimitives.Add(dxs.Slice(r * n, n), dys[r] / div, dxs.Slice(r * n, n));
    }

    public void Softmax(Tensor x, Tensor y)
    {
        if (IsF64(x)) Softmax<double>(x, y); else Softmax<float>(x, y);
    }

    private static void Softmax<T>(Tensor tx, Tensor ty) where T : unmanaged, IFloatingPointIeee754<T>
    {
        int n = tx.Dim(-1);
        ForRowBlocks(tx.Numel / n, 4L * n, (r0, r1) =>
        {
            for (int r = r0; r < r1; r++) SoftmaxRow(S<T>(tx).Slice(r * n, n), S<T>(ty).Slice(r * n, n));
        });
    }

    /// <summary>Max-subtracted softmax of one row; a row of −∞ gives NaN, as in PyTorch. float32:
    /// exp and the sum in one pass (<see cref="ExpF32"/>); float64: TensorPrimitives' exp.</summary>
    private static void SoftmaxRow<T>(ReadOnlySpan<T> x, Span<T> y) where T : unmanaged, IFloatingPointIeee754<T>
    {
        T max = TensorPrimitives.Max(x);
        T sum;
        if (typeof(T) == typeof(float) && Vector256.IsHardwareAccelerated)
        {
            var xf = MemoryMarshal.Cast<T, float>(x); var yf = MemoryMarshal.Cast<T, float>(y);
            float m = float.CreateTruncating(max);
            int i = 0;
            float s = 0;
            ref float rx = ref MemoryMarshal.GetReference(xf); ref float ry = ref MemoryMarshal.GetReference(yf);
            if (Vector512.IsHardwareAccelerated && xf.Length >= 16)
            {
                var acc16 = Vector512<float>.Zero; var mv16 = Vector512.Create(m);
                for (; i <= xf.Length - 16; i += 16)
                {
                    var e = ExpF32x16(Vector512.LoadUnsafe(ref rx, (nuint)i) - mv16);
                    e.StoreUnsafe(ref ry, (nuint)i);
                    acc16 += e;
                }
                s = Vector512.Sum(acc16);
            }
            var acc = Vector256<float>.Zero; var mv = Vector256.Create(m);
            for (; i <= xf.Length - 8; i += 8)
            {
                var e = ExpF32(Vector256.LoadUnsafe(ref rx, (nuint)i) - mv);
                e.StoreUnsafe(ref ry, (nuint)i);
                acc += e;
            }
            s += Vector256.Sum(acc);
            for (; i < xf.Length; i++) s += yf[i] = MathF.Exp(xf[i] - m);
            sum = T.CreateTruncating(s);
        }
        else
        {
            TensorPrimitives.Subtract(x, max, y);
            TensorPrimitives.Exp(y, y);
            sum = TensorPrimitives.Sum<T>(y);
        }
        TensorPrimitives.Divide(y, sum, y);
    }

    public void SoftmaxBackward(Tensor y, Tensor dy, Tensor dx)
    {
        if (IsF64(y)) SoftmaxBackward<double>(y, dy, dx); else SoftmaxBackward<float>(y, dy, dx);
    }

    // dx += y ⊙ (dy − Σ y·dy)
    private static void SoftmaxBackward<T>(Tensor ty, Tensor tdy, Tensor tdx) where T : unmanaged, IFloatingPointIeee754<T>
    {
        int n = ty.Dim(-1);
        ForRowBlocks(ty.Numel / n, 4L * n, (r0, r1) =>
        {
            for (int r = r0; r < r1; r++)
            {
                var y = S<T>(ty).Slice(r * n, n); var dy = S<T>(tdy).Slice(r * n, n); var dx = S<T>(tdx).Slice(r * n, n);
                T dot = TensorPrimitives.Dot<T>(y, dy);
                int j = 0;
                if (Vector256.IsHardwareAccelerated)
                {
                    ref T ry = ref MemoryMarshal.GetReference(y); ref T rdy = ref MemoryMarshal.GetReference(dy); ref T rdx = ref MemoryMarshal.GetReference(dx);
                    var d = Vector256.Create(dot);
                    for (; j <= n - Vector256<T>.Count; j += Vector256<T>.Count)
                        (Vector256.LoadUnsafe(ref rdx, (nuint)j) + Vector256.LoadUnsafe(ref ry, (nuint)j) * (Vector256.LoadUnsafe(ref rdy, (nuint)j) - d)).StoreUnsafe(ref rdx, (nuint)j);
                }
                for (; j < n; j++) dx[j] += y[j] * (dy[j] - dot);
            }
        });
    }

    // ------------------------------------------------------------- layer norm

    /// <summary>Rows [0, rows) in blocks of about <see cref="ParallelThreshold"/> element-operations,
    /// the blocks in parallel: one scheduled item per block, not per row (a row of a few hundred
    /// elements costs less than scheduling it). body(first, end) handles rows first..end−1.</summary>
    private static void ForRowBlocks(long rows, long workPerRow, Action<int, int> body)
    {
        long per = Math.Max(1, ParallelThreshold / Math.Max(1, workPerRow));
        long blocks = (rows + per - 1) / per;
        For(blocks, per * workPerRow, blk => body((int)(blk * per), (int)Math.Min(rows, (blk + 1) * per)));
    }

    /// <summary>Column-chunk width for the parameter gradients: about four chunks per core, at
    /// least 64 columns. Any width gives the same bits (each column is summed in row order alone).</summary>
    private static int ColumnChunkFor(int n) => Math.Max(ColumnChunk, (n / (4 * Environment.ProcessorCount) + 15) / 16 * 16);

    public void LayerNorm(Tensor x, Tensor w, Tensor b, Tensor y, Tensor mean, Tensor rstd, double eps)
    {
        if (IsF64(x)) LayerNorm<double>(x, w, b, y, mean, rstd, eps); else LayerNorm<float>(x, w, b, y, mean, rstd, eps);
    }

    // y = (x − μ)·rstd·w + b per row, each step a SIMD pass over the row (it stays in L1).
    private static void LayerNorm<T>(Tensor tx, Tensor tw, Tensor tb, Tensor ty, Tensor tmean, Tensor trstd, double eps)
        where T : unmanaged, IFloatingPointIeee754<T>
    {
        int n = tx.Dim(-1);
        T invN = T.One / T.CreateTruncating(n), e = T.CreateTruncating(eps);
        ForRowBlocks(tx.Numel / n, 4L * n, (r0, r1) =>
        {
            var w = S<T>(tw); var b = S<T>(tb);
            for (int r = r0; r < r1; r++)
            {
                var x = S<T>(tx).Slice(r * n, n); var y = S<T>(ty).Slice(r * n, n);
                T mu = TensorPrimitives.Sum<T>(x) * invN;
                TensorPrimitives.Subtract(x, mu, y);                          // y = x − μ
                T rs = T.One / T.Sqrt(TensorPrimitives.SumOfSquares<T>(y) * invN + e);
                TensorPrimitives.Multiply(y, rs, y);                          // y = x̂
                TensorPrimitives.MultiplyAdd(y, w, b, y);                     // y = x̂·w + b
                S<T>(tmean)[r] = mu;
                S<T>(trstd)[r] = rs;
            }
        });
    }

    public void LayerNormBackward(Tensor x, Tensor w, Tensor mean, Tensor rstd, Tensor dy, Tensor? dx, Tensor? dw, Tensor? db)
    {
        if (IsF64(x)) LayerNormBackward<double>(x, w, mean, rstd, dy, dx, dw, db);
        else LayerNormBackward<float>(x, w, mean, rstd, dy, dx, dw, db);
    }

    // With x̂ = (x − μ)·rstd and g = dy ⊙ w: dx = rstd · (g − mean(g) − x̂ · mean(g ⊙ x̂)); dw += Σ_rows dy ⊙ x̂; db += Σ_rows dy.
    // dx: two fused SIMD passes per row (LayerNormInputGradRow); dw, db: one fused pass per row's
    // piece of a column chunk (NormParamGradRow).
    private static void LayerNormBackward<T>(Tensor tx, Tensor tw, Tensor tmean, Tensor trstd, Tensor tdy, Tensor? tdx, Tensor? tdw, Tensor? tdb)
        where T : unmanaged, IFloatingPointIeee754<T>
    {
        int n = tx.Dim(-1);
        long rows = tx.Numel / n;
        if (tdx is not null)
        {
            ForRowBlocks(rows, 8L * n, (r0, r1) =>
            {
                var w = S<T>(tw);
                for (int r = r0; r < r1; r++)
                    LayerNormInputGradRow(S<T>(tx).Slice(r * n, n), w, S<T>(tdy).Slice(r * n, n), S<T>(tmean)[r], S<T>(trstd)[r], S<T>(tdx).Slice(r * n, n));
            });
        }
        if (tdw is null && tdb is null) return;
        // Column chunks in parallel, each summing its columns over the rows in row order.
        int width = ColumnChunkFor(n);
        int chunks = (n + width - 1) / width;
        For(chunks, rows * width, chunk =>
        {
            int j0 = chunk * width, len = Math.Min(n, j0 + width) - j0;
            var xs = S<T>(tx); var dys = S<T>(tdy); var means = S<T>(tmean); var rstds = S<T>(trstd);
            var dw = tdw is null ? Span<T>.Empty : S<T>(tdw).Slice(j0, len);
            var db = tdb is null ? Span<T>.Empty : S<T>(tdb).Slice(j0, len);
            for (int r = 0; r < rows; r++)
                NormParamGradRow(xs.Slice(r * n + j0, len), dys.Slice(r * n + j0, len), means[r], rstds[r], dw, db);
        });
    }

    /// <summary>One row of the layer-norm input gradient in two SIMD passes: Σg and Σg·x̂ (g = dy ⊙ w,
    /// x̂ = (x − μ)·rstd), then dx += rstd·(g − mean(g) − x̂·mean(g x̂)) recomputing g and x̂.</summary>
    private static void LayerNormInputGradRow<T>(ReadOnlySpan<T> x, ReadOnlySpan<T> w, ReadOnlySpan<T> dy, T mu, T rs, Span<T> dx)
        where T : unmanaged, IFloatingPointIeee754<T>
    {
        int n = x.Length, i = 0, V = Vector256<T>.Count;
        T sumG = T.Zero, sumGX = T.Zero;
        ref T rx = ref MemoryMarshal.GetReference(x); ref T rw = ref MemoryMarshal.GetReference(w);
        ref T rdy = ref MemoryMarshal.GetReference(dy); ref T rdx = ref MemoryMarshal.GetReference(dx);
        var m = Vector256.Create(mu); var s = Vector256.Create(rs);
        if (Vector256.IsHardwareAccelerated)
        {
            Vector256<T> accG = Vector256<T>.Zero, accGX = Vector256<T>.Zero;
            for (; i <= n - V; i += V)
            {
                var g = Vector256.LoadUnsafe(ref rdy, (nuint)i) * Vector256.LoadUnsafe(ref rw, (nuint)i);
                accG += g;
                accGX += g * ((Vector256.LoadUnsafe(ref rx, (nuint)i) - m) * s);
            }
            sumG = Vector256.Sum(accG); sumGX = Vector256.Sum(accGX);
        }
        for (; i < n; i++) { T g = dy[i] * w[i]; sumG += g; sumGX += g * ((x[i] - mu) * rs); }
        T invN = T.One / T.CreateTruncating(n);
        T meanG = sumG * invN, meanGX = sumGX * invN;
        i = 0;
        if (Vector256.IsHardwareAccelerated)
        {
            var mg = Vector256.Create(meanG); var mgx = Vector256.Create(meanGX);
            for (; i <= n - V; i += V)
            {
                var g = Vector256.LoadUnsafe(ref rdy, (nuint)i) * Vector256.LoadUnsafe(ref rw, (nuint)i);
                var xh = (Vector256.LoadUnsafe(ref rx, (nuint)i) - m) * s;
                (Vector256.LoadUnsafe(ref rdx, (nuint)i) + s * (g - mg - xh * mgx)).StoreUnsafe(ref rdx, (nuint)i);
            }
        }
        for (; i < n; i++) dx[i] += rs * (dy[i] * w[i] - meanG - (x[i] - mu) * rs * meanGX);
    }

    /// <summary>One row's piece of the norm parameter gradients: dw += dy ⊙ (x − μ)·rstd and
    /// db += dy, in one SIMD pass (either may be empty: not wanted).</summary>
    private static void NormParamGradRow<T>(ReadOnlySpan<T> x, ReadOnlySpan<T> dy, T mu, T rs, Span<T> dw, Span<T> db)
        where T : unmanaged, IFloatingPointIeee754<T>
    {
        bool wantW = !dw.IsEmpty, wantB = !db.IsEmpty;
        int len = dy.Length, i = 0;
        if (Vector256.IsHardwareAccelerated)
        {
            ref T rx = ref MemoryMarshal.GetReference(x); ref T rdy = ref MemoryMarshal.GetReference(dy);
            ref T rdw = ref MemoryMarshal.GetReference(dw); ref T rdb = ref MemoryMarshal.GetReference(db);
            var m = Vector256.Create(mu); var s = Vector256.Create(rs);
            for (; i <= len - Vector256<T>.Count; i += Vector256<T>.Count)
            {
                var g = Vector256.LoadUnsafe(ref rdy, (nuint)i);
                if (wantW) (Vector256.LoadUnsafe(ref rdw, (nuint)i) + g * ((Vector256.LoadUnsafe(ref rx, (nuint)i) - m) * s)).StoreUnsafe(ref rdw, (nuint)i);
                if (wantB) (Vector256.LoadUnsafe(ref rdb, (nuint)i) + g).StoreUnsafe(ref rdb, (nuint)i);
            }
        }
        for (; i < len; i++)
        {
            if (wantW) dw[i] += dy[i] * ((x[i] - mu) * rs);
            if (wantB) db[i] += dy[i];
        }
    }

    // ------------------------------------------------------------- RMS norm

    public void RmsNorm(Tensor x, Tensor w, Tensor y, Tensor rstd, double eps)
    {
        if (IsF64(x)) RmsNorm<double>(x, w, y, rstd, eps); else RmsNorm<float>(x, w, y, rstd, eps);
    }

    private static void RmsNorm<T>(Tensor tx, Tensor tw, Tensor ty, Tensor trstd, double eps) where T : unmanaged, IFloatingPointIeee754<T>
    {
        int n = tx.Dim(-1);
        T invN = T.One / T.CreateTruncating(n), e = T.CreateTruncating(eps);
        ForRowBlocks(tx.Numel / n, 3L * n, (r0, r1) =>
        {
            var w = S<T>(tw);
            for (int r = r0; r < r1; r++)
            {
                var x = S<T>(tx).Slice(r * n, n); var y = S<T>(ty).Slice(r * n, n);
                T rs = T.One / T.Sqrt(TensorPrimitives.SumOfSquares<T>(x) * invN + e);
                TensorPrimitives.Multiply(x, rs, y);
                TensorPrimitives.Multiply(y, w, y);
                S<T>(trstd)[r] = rs;
            }
        });
    }

    public void RmsNormBackward(Tensor x, Tensor w, Tensor rstd, Tensor dy, Tensor? dx, Tensor? dw)
    {
        if (IsF64(x)) RmsNormBackward<double>(x, w, rstd, dy, dx, dw); else RmsNormBackward<float>(x, w, rstd, dy, dx, dw);
    }

    // With g = dy ⊙ w: dx = rstd · (g − x · rstd² · mean(g ⊙ x)); dw += Σ_rows dy ⊙ x · rstd.
    private static void RmsNormBackward<T>(Tensor tx, Tensor tw, Tensor trstd, Tensor tdy, Tensor? tdx, Tensor? tdw)
        where T : unmanaged, IFloatingPointIeee754<T>
    {
        int n = tx.Dim(-1);
        long rows = tx.Numel / n;
        if (tdx is not null)
        {
            ForRowBlocks(rows, 6L * n, (r0, r1) =>
            {
                var w = S<T>(tw);
                for (int r = r0; r < r1; r++)
                {
                    var x = S<T>(tx).Slice(r * n, n); var dy = S<T>(tdy).Slice(r * n, n); var dx = S<T>(tdx).Slice(r * n, n);
                    T rs = S<T>(trstd)[r];
                    T c = rs * rs * RmsDot(dy, w, x) / T.CreateTruncating(n);
                    RmsInputGradRow(x, w, dy, rs, c, dx);
                }
            });
        }
        if (tdw is null) return;
        // Column chunks in parallel, each summing its columns over the rows in row order.
        int width = ColumnChunkFor(n);
        int chunks = (n + width - 1) / width;
        For(chunks, rows * width, chunk =>
        {
            int j0 = chunk * width, len = Math.Min(n, j0 + width) - j0;
            var xs = S<T>(tx); var dys = S<T>(tdy); var rstds = S<T>(trstd); var dw = S<T>(tdw).Slice(j0, len);
            for (int r = 0; r < rows; r++)
                NormParamGradRow(xs.Slice(r * n + j0, len), dys.Slice(r * n + j0, len), T.Zero, rstds[r], dw, Span<T>.Empty);
        });
    }

    /// <summary>Σ dy·w·x over one row, SIMD.</summary>
    private static T RmsDot<T>(ReadOnlySpan<T> dy, ReadOnlySpan<T> w, ReadOnlySpan<T> x) where T : unmanaged, IFloatingPointIeee754<T>
    {
        int n = x.Length, i = 0;
        T dot = T.Zero;
        if (Vector256.IsHardwareAccelerated)
        {
            ref T rx = ref MemoryMarshal.GetReference(x); ref T rw = ref MemoryMarshal.GetReference(w); ref T rdy = ref MemoryMarshal.GetReference(dy);
            var acc = Vector256<T>.Zero;
            for (; i <= n - Vector256<T>.Count; i += Vector256<T>.Count)
                acc += Vector256.LoadUnsafe(ref rdy, (nuint)i) * Vector256.LoadUnsafe(ref rw, (nuint)i) * Vector256.LoadUnsafe(ref rx, (nuint)i);
            dot = Vector256.Sum(acc);
        }
        for (; i < n; i++) dot += dy[i] * w[i] * x[i];
        return dot;
    }

    /// <summary>dx += rstd·(dy·w − x·c) over one row, SIMD.</summary>
    private static void RmsInputGradRow<T>(ReadOnlySpan<T> x, ReadOnlySpan<T> w, ReadOnlySpan<T> dy, T rs, T c, Span<T> dx)
        where T : unmanaged, IFloatingPointIeee754<T>
    {
        int n = x.Length, i = 0;
        if (Vector256.IsHardwareAccelerated)
        {
            ref T rx = ref MemoryMarshal.GetReference(x); ref T rw = ref MemoryMarshal.GetReference(w);
            ref T rdy = ref MemoryMarshal.GetReference(dy); ref T rdx = ref MemoryMarshal.GetReference(dx);
            var s = Vector256.Create(rs); var cv = Vector256.Create(c);
            for (; i <= n - Vector256<T>.Count; i += Vector256<T>.Count)
            {
                var g = Vector256.LoadUnsafe(ref rdy, (nuint)i) * Vector256.LoadUnsafe(ref rw, (nuint)i);
                (Vector256.LoadUnsafe(ref rdx, (nuint)i) + s * (g - Vector256.LoadUnsafe(ref rx, (nuint)i) * cv)).StoreUnsafe(ref rdx, (nuint)i);
            }
        }
        for (; i < n; i++) dx[i] += rs * (dy[i] * w[i] - x[i] * c);
    }
}
