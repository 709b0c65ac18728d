using System.Numerics;
using System.Numerics.Tensors;

namespace Engine.Backend;

// Embedding lookup, gather of one position per row, block copies (concat, slice), permutes,
// weighted sums over a stack of layers.
public sealed partial class CpuBackend
{
    public void Embedding(Tensor ids, Tensor w, Tensor y)
    {
        if (IsF64(w)) Embedding<double>(ids, w, y); else Embedding<float>(ids, w, y);
    }

    private static void Embedding<T>(Tensor tids, Tensor tw, Tensor ty) where T : unmanaged, IFloatingPointIeee754<T>
    {
        int d = tw.Dim(-1), vocab = tw.Dim(0);
        var ids = S<int>(tids); var w = S<T>(tw); var y = S<T>(ty);
        for (int i = 0; i < ids.Length; i++)
        {
            int id = ids[i];
            if ((uint)id >= (uint)vocab) throw new EngineException($"embedding: token id {id} at position {i} is outside the vocabulary of {vocab}");
            w.Slice(id * d, d).CopyTo(y.Slice(i * d, d));
        }
    }

    public void EmbeddingBackward(Tensor ids, Tensor dy, Tensor dw)
    {
        if (IsF64(dw)) EmbeddingBackward<double>(ids, dy, dw); else EmbeddingBackward<float>(ids, dy, dw);
    }

    private static void EmbeddingBackward<T>(Tensor tids, Tensor tdy, Tensor tdw) where T : unmanaged, IFloatingPointIeee754<T>
    {
        int d = tdw.Dim(-1);
        var ids = S<int>(tids); var dy = S<T>(tdy); var dw = S<T>(tdw);
        for (int i = 0; i < ids.Length; i++)
        {
            var row = dw.Slice(ids[i] * d, d);
            TensorPrimitives.Add(row, dy.Slice(i * d, d), row);
        }
    }

    public void GatherRows(Tensor x, Tensor idx, Tensor y)
    {
        if (IsF64(x)) GatherRows<double>(x, idx, y, accumulate: false); else GatherRows<float>(x, idx, y, accumulate: false);
    }

    public void GatherRowsBackward(Tensor idx, Tensor dy, Tensor dx)
    {
        if (IsF64(dy)) GatherRows<double>(dx, idx, dy, accumulate: true); else GatherRows<float>(dx, idx, dy, accumulate: true);
    }

    /// <summary>Forward: y[b] = x[b, idx[b]]. With accumulate the direction flips: x[b, idx[b]] += y[b].</summary>
    private static void GatherRows<T>(Tensor tx, Tensor tidx, Tensor ty, bool accumulate) where T : unmanaged, IFloatingPointIeee754<T>
    {
        int t = tx.Dim(1), d = tx.Dim(2);
        var idx = S<int>(tidx); var x = S<T>(tx); var y = S<T>(ty);
        for (int b = 0; b < idx.Length; b++)
        {
            int p = idx[b];
            if ((uint)p >= (uint)t) throw new EngineException($"gather_rows: index {p} for row {b} is outside the sequence length {t}");
            var xr = x.Slice((b * t + p) * d, d); var yr = y.Slice(b * d, d);
            if (accumulate) TensorPrimitives.Add(xr, yr, xr); else xr.CopyTo(yr);
        }
    }

    public void CopyBlock(Tensor src, int srcDim, int srcStart, Tensor dst, int dstDim, int dstStart,
                          long outer, int count, long inner, bool accumulate)
    {
        if (IsF64(src)) CopyBlock<double>(src, srcDim, srcStart, dst, dstDim, dstStart, outer, count, inner, accumulate);
        else CopyBlock<float>(src, srcDim, srcStart, dst, dstDim, dstStart, outer, count, inner, accumulate);
    }

    private static void CopyBlock<T>(Tensor tsrc, int srcDim, int srcStart, Tensor tdst, int dstDim, int dstStart,
                                     long outer, int count, long inner, bool accumulate) where T : unmanaged, IFloatingPointIeee754<T>
    {
        var src = S<T>(tsrc); var dst = S<T>(tdst);
        int len = (int)(count * inner);
        for (long o = 0; o < outer; o++)
        {
            var s = src.Slice((int)((o * srcDim + srcStart) * inner), len);
            var d = dst.Slice((int)((o * dstDim + dstStart) * inner), len);
            if (accumulate) TensorPrimitives.Add(d, s, d); else s.CopyTo(d);
        }
    }

    public void Permute(Tensor x, int[] perm, Tensor y, bool accumulate)
    {
        if (IsF64(x)) Permute<double>(x, perm, y, accumulate); else Permute<float>(x, perm, y, accumulate);
    }

    // Walks y in rows of its last dim (blocks of rows in parallel); the matching x offset advances
    // by x's stride along each permuted dim. When the last dim stays last (x stride 1: splitting or
    // merging attention heads), each row is one contiguous SIMD copy or add.
    private static void Permute<T>(Tensor tx, int[] perm, Tensor ty, bool accumulate) where T : unmanaged, IFloatingPointIeee754<T>
    {
        int r = perm.Length;
        var xStrides = Shape.Strides(tx.Shape);
        var yShape = ty.ShapeArray;
        var srcStride = new long[r];
        for (int i = 0; i < r; i++) srcStride[i] = xStrides[perm[i]];
        int last = r == 0 ? 1 : yShape[^1];
        long lastStride = r == 0 ? 1 : srcStride[^1];
        long rows = last == 0 ? 0 : ty.Numel / last;
        ForRowBlocks(rows, last, (r0, r1) =>
        {
            var x = S<T>(tx);
            // The block's first row's index over y's leading dims (divisions once per block), then
            // an odometer: each next row adds one stride, carrying into the outer dims.
            Span<int> idx = stackalloc int[Math.Max(1, r - 1)];
            long off = 0, rem = r0;
            for (int d = r - 2; d >= 0; d--) { idx[d] = (int)(rem % yShape[d]); off += idx[d] * srcStride[d]; rem /= yShape[d]; }
            for (int row = r0; row < r1; row++)
            {
                if (row > r0)
                {
                    for (int d = r - 2; d >= 0; d--)
                    {
                        off += srcStride[d];
                        if (++idx[d] < yShape[d]) break;
                        off -= idx[d] * srcStride[d];
                        idx[d] = 0;
                    }
                }
                var y = S<T>(ty).Slice(row * last, last);
                if (lastStride == 1)
                {
                    var src = x.Slice((int)off, last);
                    if (accumulate) TensorPrimitives.Add(y, src, y); else src.CopyTo(y);
                    continue;
                }
                for (int j = 0; j < last; j++)
                {
                    T v = x[(int)(off + j * lastStride)];
                    if (accumulate) y[j] += v; else y[j] = v;
                }
            }
        });
    }

    public void WeightedSum(Tensor[] xs, Tensor w, Tensor y)
    {
        if (IsF64(w)) WeightedSum<double>(xs, w, y); else WeightedSum<float>(xs, w, y);
    }

    private static void WeightedSum<T>(Tensor[] xs, Tensor tw, Tensor ty) where T : unmanaged, IFloatingPointIeee754<T>
    {
        var w = S<T>(tw); var y = S<T>(ty);
        y.Clear();
        for (int l = 0; l < xs.Length; l++) TensorPrimitives.MultiplyAdd(S<T>(xs[l]), w[l], y, y);
    }

    public void WeightedSumBackward(Tensor[] xs, Tensor w, Tensor dy, Tensor?[] dxs, Tensor? dw)
    {
        if (IsF64(w)) WeightedSumBackward<double>(xs, w, dy, dxs, dw); else WeightedSumBackward<float>(xs, w, dy, dxs, dw);
    }

    private static void WeightedSumBackward<T>(Tensor[] xs, Tensor tw, Tensor tdy, Tensor?[] dxs, Tensor? tdw) where T : unmanaged, IFloatingPointIeee754<T>
    {
        var w = S<T>(tw); var dy = S<T>(tdy);
        for (int l = 0; l < xs.Length; l++)
        {
            if (dxs[l] is { } dx) TensorPrimitives.MultiplyAdd(dy, w[l], S<T>(dx), S<T>(dx));
            if (tdw is not null) S<T>(tdw)[l] += TensorPrimitives.Dot<T>(dy, S<T>(xs[l]));
        }
    }
}
