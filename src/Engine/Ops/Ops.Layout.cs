using Engine.Autograd;

namespace Engine;

public static partial class Ops
{
    /// <summary>A view with another shape (same storage); one dim may be −1.</summary>
    public static Tensor Reshape(Tensor x, params int[] shape)
    {
        var s = (int[])shape.Clone();
        int infer = Array.IndexOf(s, -1);
        long known = 1;
        for (int i = 0; i < s.Length; i++) if (i != infer) known *= s[i];
        if (infer >= 0 && known > 0 && x.Numel % known == 0) s[infer] = (int)(x.Numel / known);
        if (Shape.Numel(s) != x.Numel || s.Any(d => d < 0))
            throw new EngineException($"reshape: {F(x.Shape)} ({x.Numel} elements) cannot be viewed as {F(shape)}");
        var y = x.View(s);
        return Tape.Record("reshape", y, [x], dy => Tape.AccumulateGrad(x, dy));
    }

    /// <summary>Permutes dims: y.shape[i] = x.shape[perm[i]] (a copy, contiguous).</summary>
    public static Tensor Permute(Tensor x, params int[] perm)
    {
        Same("permute", x);
        if (perm.Length != x.Rank || perm.Order().Where((p, i) => p != i).Any())
            throw new EngineException($"permute: [{string.Join(", ", perm)}] is not a permutation of the dims of {F(x.Shape)}");
        var y = New(perm.Select(p => x.Dim(p)).ToArray(), x);
        x.Backend.Permute(x, perm, y, accumulate: false);
        var inverse = new int[perm.Length];
        for (int i = 0; i < perm.Length; i++) inverse[perm[i]] = i;
        return Tape.Record("permute", y, [x], dy =>
        {
            var dx = Tape.GradToWrite(x, out bool accumulate);
            x.Backend.Permute(dy, inverse, dx, accumulate);
        });
    }

    /// <summary>Swaps two dims (a permute).</summary>
    public static Tensor Transpose(Tensor x, int dim0, int dim1)
    {
        var perm = Enumerable.Range(0, x.Rank).ToArray();
        int a = Shape.Dim(dim0, x.Rank, "transpose"), b = Shape.Dim(dim1, x.Rank, "transpose");
        (perm[a], perm[b]) = (perm[b], perm[a]);
        return Permute(x, perm);
    }

    /// <summary>Concatenates along <paramref name="dim"/>; the other dims must agree.</summary>
    public static Tensor Concat(IReadOnlyList<Tensor> xs, int dim)
    {
        if (xs.Count == 0) throw new EngineException("concat: needs at least one tensor");
        var first = xs[0];
        Same("concat", first, [.. xs]);
        int d = Shape.Dim(dim, first.Rank, "concat");
        int total = 0;
        foreach (var x in xs)
        {
            bool ok = x.Rank == first.Rank;
            for (int i = 0; ok && i < x.Rank; i++) ok = i == d || x.Dim(i) == first.Dim(i);
            if (!ok) throw new EngineException($"concat: {F(x.Shape)} does not match {F(first.Shape)} outside dim {d}");
            total += x.Dim(d);
        }
        var shape = first.ShapeArray;
        shape[d] = total;
        var y = New(shape, first);
        var (outer, _, inner) = Shape.Split(shape, d);
        var be = first.Backend;
        int start = 0;
        var starts = new int[xs.Count];
        for (int i = 0; i < xs.Count; i++)
        {
            starts[i] = start;
            be.CopyBlock(xs[i], xs[i].Dim(d), 0, y, total, start, outer, xs[i].Dim(d), inner, accumulate: false);
            start += xs[i].Dim(d);
        }
        var inputs = xs.ToArray();
        return Tape.Record("concat", y, inputs, dy =>
        {
            for (int i = 0; i < inputs.Length; i++)
                if (inputs[i].RequiresGrad)
                    be.CopyBlock(dy, total, starts[i], Tape.GradOf(inputs[i]), inputs[i].Dim(d), 0, outer, inputs[i].Dim(d), inner, accumulate: true);
        });
    }

    /// <summary>The slice [start, start + length) of <paramref name="dim"/> (a copy).</summary>
    public static Tensor Slice(Tensor x, int dim, int start, int length)
    {
        Same("slice", x);
        int d = Shape.Dim(dim, x.Rank, "slice");
        if (start < 0 || length < 0 || start + length > x.Dim(d))
            throw new EngineException($"slice: [{start}, {start + length}) is outside dim {d} of {F(x.Shape)}");
        var shape = x.ShapeArray;
        shape[d] = length;
        var y = New(shape, x);
        var (outer, size, inner) = Shape.Split(x.Shape, d);
        x.Backend.CopyBlock(x, size, start, y, length, 0, outer, length, inner, accumulate: false);
        return Tape.Record("slice", y, [x], dy => x.Backend.CopyBlock(dy, length, 0, Tape.GradOf(x), size, start, outer, length, inner, accumulate: true));
    }

    /// <summary>One position per row: x [B, T, D], positions [B] (I32) → [B, D]. Pooling at [CLS]
    /// (position 0) or at the last non-pad token.</summary>
    public static Tensor GatherRows(Tensor x, Tensor positions)
    {
        Same("gather_rows", x);
        Indices("gather_rows", positions, x);
        if (x.Rank != 3 || positions.Rank != 1 || positions.Dim(0) != x.Dim(0))
            throw new EngineException($"gather_rows: needs x [B, T, D] and positions [B], got {F(x.Shape)} and {F(positions.Shape)}");
        var y = New([x.Dim(0), x.Dim(2)], x);
        x.Backend.GatherRows(x, positions, y);
        return Tape.Record("gather_rows", y, [x], dy => x.Backend.GatherRowsBackward(positions, dy, Tape.GradOf(x)));
    }

    /// <summary>Token embedding: ids [...] (I32), table [V, D] → [..., D]. Backward scatter-adds into the table.</summary>
    public static Tensor Embedding(Tensor ids, Tensor table)
    {
        Same("embedding", table);
        Indices("embedding", ids, table);
        if (table.Rank != 2) throw new EngineException($"embedding: table must be [vocab, dim], got {F(table.Shape)}");
        var y = New([.. ids.ShapeArray, table.Dim(1)], table);
        table.Backend.Embedding(ids, table, y);
        return Tape.Record("embedding", y, [table], dy => table.Backend.EmbeddingBackward(ids, dy, Tape.GradOf(table)));
    }

    /// <summary>y = Σ_l w[l] · xs[l]: all xs one shape, w [L].</summary>
    public static Tensor WeightedSum(IReadOnlyList<Tensor> xs, Tensor w)
    {
        if (xs.Count == 0) throw new EngineException("weighted_sum: needs at least one tensor");
        Same("weighted_sum", w, [.. xs]);
        if (w.Rank != 1 || w.Dim(0) != xs.Count)
            throw new EngineException($"weighted_sum: {xs.Count} tensors need weights [{xs.Count}], got {F(w.Shape)}");
        foreach (var x in xs)
            if (!Shape.Equal(x.Shape, xs[0].Shape)) throw new EngineException($"weighted_sum: shapes {F(x.Shape)} and {F(xs[0].Shape)} differ");
        var inputs = xs.ToArray();
        var y = Like(inputs[0]);
        w.Backend.WeightedSum(inputs, w, y);
        return Tape.Record("weighted_sum", y, [.. inputs, w], dy =>
            w.Backend.WeightedSumBackward(inputs, w, dy, inputs.Select(GradIf).ToArray(), GradIf(w)));
    }

    /// <summary>Depth-wise pooling's mix: Σ_l softmax(logits)_l · xs[l] (or the raw logits as weights).</summary>
    public static Tensor LayerMix(IReadOnlyList<Tensor> xs, Tensor logits, bool softmax = true) =>
        WeightedSum(xs, softmax ? Softmax(logits) : logits);
}
