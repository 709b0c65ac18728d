using System.Numerics;
using System.Numerics.Tensors;

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
        For(tx.Numel / n, n, r =>
        {
            var x = S<T>(tx).Slice(r * n, n); var y = S<T>(ty).Slice(r * n, n);
            SoftmaxRow(x, y);
        });
    }

    /// <summary>Max-subtracted softmax of one row; a row of −∞ gives NaN, as in PyTorch.</summary>
    private static void SoftmaxRow<T>(ReadOnlySpan<T> x, Span<T> y) where T : unmanaged, IFloatingPointIeee754<T>
    {
        T max = TensorPrimitives.Max(x);
        TensorPrimitives.Subtract(x, max, y);
        TensorPrimitives.Exp(y, y);
        T sum = TensorPrimitives.Sum<T>(y);
        TensorPrimitives.Divide(y, sum, y);
    }

    public void SoftmaxBackward(Tensor y, Tensor dy, Tensor dx)
    {
        if (IsF64(y)) SoftmaxBackward<double>(y, dy, dx); else SoftmaxBackward<float>(y, dy, dx);
    }

    // dx = y ⊙ (dy − Σ y·dy)
    private static void SoftmaxBackward<T>(Tensor ty, Tensor tdy, Tensor tdx) where T : unmanaged, IFloatingPointIeee754<T>
    {
        int n = ty.Dim(-1);
        For(ty.Numel / n, n, r =>
        {
            var y = S<T>(ty).Slice(r * n, n); var dy = S<T>(tdy).Slice(r * n, n); var dx = S<T>(tdx).Slice(r * n, n);
            T dot = TensorPrimitives.Dot<T>(y, dy);
            for (int j = 0; j < n; j++) dx[j] += y[j] * (dy[j] - dot);
        });
    }

    // ------------------------------------------------------------- layer norm

    public void LayerNorm(Tensor x, Tensor w, Tensor b, Tensor y, Tensor mean, Tensor rstd, double eps)
    {
        if (IsF64(x)) LayerNorm<double>(x, w, b, y, mean, rstd, eps); else LayerNorm<float>(x, w, b, y, mean, rstd, eps);
    }

    private static void LayerNorm<T>(Tensor tx, Tensor tw, Tensor tb, Tensor ty, Tensor tmean, Tensor trstd, double eps)
        where T : unmanaged, IFloatingPointIeee754<T>
    {
        int n = tx.Dim(-1);
        For(tx.Numel / n, n, r =>
        {
            var x = S<T>(tx).Slice(r * n, n); var y = S<T>(ty).Slice(r * n, n);
            var w = S<T>(tw); var b = S<T>(tb);
            T mu = TensorPrimitives.Sum<T>(x) / T.CreateTruncating(n);
            T var = T.Zero;
            for (int j = 0; j < n; j++) { T d = x[j] - mu; var += d * d; }
            var /= T.CreateTruncating(n);
            T rs = T.One / T.Sqrt(var + T.CreateTruncating(eps));
            for (int j = 0; j < n; j++) y[j] = (x[j] - mu) * rs * w[j] + b[j];
            S<T>(tmean)[r] = mu;
            S<T>(trstd)[r] = rs;
        });
    }

    public void LayerNormBackward(Tensor x, Tensor w, Tensor mean, Tensor rstd, Tensor dy, Tensor? dx, Tensor? dw, Tensor? db)
    {
        if (IsF64(x)) LayerNormBackward<double>(x, w, mean, rstd, dy, dx, dw, db);
        else LayerNormBackward<float>(x, w, mean, rstd, dy, dx, dw, db);
    }

    // With x̂ = (x − μ)·rstd and g = dy ⊙ w: dx = rstd · (g − mean(g) − x̂ · mean(g ⊙ x̂)); dw += Σ_rows dy ⊙ x̂; db += Σ_rows dy.
    private static void LayerNormBackward<T>(Tensor tx, Tensor tw, Tensor tmean, Tensor trstd, Tensor tdy, Tensor? tdx, Tensor? tdw, Tensor? tdb)
        where T : unmanaged, IFloatingPointIeee754<T>
    {
        int n = tx.Dim(-1);
        long rows = tx.Numel / n;
        if (tdx is not null)
        {
            For(rows, n, r =>
            {
                var x = S<T>(tx).Slice(r * n, n); var dy = S<T>(tdy).Slice(r * n, n); var dx = S<T>(tdx).Slice(r * n, n);
                var w = S<T>(tw);
                T mu = S<T>(tmean)[r], rs = S<T>(trstd)[r];
                T sumG = T.Zero, sumGX = T.Zero;
                for (int j = 0; j < n; j++)
                {
                    T g = dy[j] * w[j];
                    sumG += g;
                    sumGX += g * (x[j] - mu) * rs;
                }
                T inv = T.One / T.CreateTruncating(n);
                for (int j = 0; j < n; j++)
                {
                    T xh = (x[j] - mu) * rs;
                    dx[j] += rs * (dy[j] * w[j] - sumG * inv - xh * sumGX * inv);
                }
            });
        }
        if (tdw is null && tdb is null) return;
        // Column chunks in parallel, each summing its columns over the rows in row order.
        int chunks = (n + ColumnChunk - 1) / ColumnChunk;
        For(chunks, rows * ColumnChunk, chunk =>
        {
            var xs = S<T>(tx); var dys = S<T>(tdy); var means = S<T>(tmean); var rstds = S<T>(trstd);
            var dws = S<T>(tdw, true); var dbs = S<T>(tdb, true);
            int j0 = chunk * ColumnChunk, j1 = Math.Min(n, j0 + ColumnChunk);
            for (int r = 0; r < rows; r++)
            {
                T mu = means[r], rs = rstds[r];
                for (int j = j0; j < j1; j++)
                {
                    T g = dys[r * n + j];
                    if (tdw is not null) dws[j] += g * (xs[r * n + j] - mu) * rs;
                    if (tdb is not null) dbs[j] += g;
                }
            }
        });
    }

    // ------------------------------------------------------------- RMS norm

    public void RmsNorm(Tensor x, Tensor w, Tensor y, Tensor rstd, double eps)
    {
        if (IsF64(x)) RmsNorm<double>(x, w, y, rstd, eps); else RmsNorm<float>(x, w, y, rstd, eps);
    }

    private static void RmsNorm<T>(Tensor tx, Tensor tw, Tensor ty, Tensor trstd, double eps) where T : unmanaged, IFloatingPointIeee754<T>
    {
        int n = tx.Dim(-1);
        For(tx.Numel / n, n, r =>
        {
            var x = S<T>(tx).Slice(r * n, n); var y = S<T>(ty).Slice(r * n, n); var w = S<T>(tw);
            T rs = T.One / T.Sqrt(TensorPrimitives.SumOfSquares<T>(x) / T.CreateTruncating(n) + T.CreateTruncating(eps));
            for (int j = 0; j < n; j++) y[j] = x[j] * rs * w[j];
            S<T>(trstd)[r] = rs;
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
            For(rows, n, r =>
            {
                var x = S<T>(tx).Slice(r * n, n); var dy = S<T>(tdy).Slice(r * n, n); var dx = S<T>(tdx).Slice(r * n, n);
                var w = S<T>(tw);
                T rs = S<T>(trstd)[r];
                T dot = T.Zero;
                for (int j = 0; j < n; j++) dot += dy[j] * w[j] * x[j];
                T c = rs * rs * dot / T.CreateTruncating(n);
                for (int j = 0; j < n; j++) dx[j] += rs * (dy[j] * w[j] - x[j] * c);
            });
        }
        if (tdw is null) return;
        int chunks = (n + ColumnChunk - 1) / ColumnChunk;
        For(chunks, rows * ColumnChunk, chunk =>
        {
            var xs = S<T>(tx); var dys = S<T>(tdy); var rstds = S<T>(trstd); var dws = S<T>(tdw);
            int j0 = chunk * ColumnChunk, j1 = Math.Min(n, j0 + ColumnChunk);
            for (int r = 0; r < rows; r++)
                for (int j = j0; j < j1; j++) dws[j] += dys[r * n + j] * xs[r * n + j] * rstds[r];
        });
    }
}
