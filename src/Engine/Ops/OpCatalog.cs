namespace Engine;

/// <summary>One random instance of an op: inputs, which of them are differentiable, the call,
/// and the output shape the op's shape rule must give for these inputs.</summary>
public sealed record OpCase(string Description, Tensor[] Inputs, bool[] Differentiable, Func<Tensor[], Tensor> Apply, int[] ExpectedShape);

/// <summary>A catalog entry: the op's name (as its autograd node is named), its kernel family,
/// and a generator of valid random inputs of random shapes for a given seed and type.</summary>
public sealed record OpEntry(string Name, string Family, string Summary, Func<Random, DType, OpCase> Generate);

/// <summary>
/// The one list of every differentiable op. The gradient checks (NUnit and
/// <c>engine gradcheck</c>) walk it; a test fails when a public op of <see cref="Ops"/> is
/// missing from it. Each entry's generator draws shapes from the seed, and keeps inputs away
/// from the points where an op is not differentiable (ReLU at 0).
/// </summary>
public static class OpCatalog
{
    public static IReadOnlyList<OpEntry> All { get; } = Build();

    public static OpEntry? Find(string name) => All.FirstOrDefault(e => e.Name == name);

    private static Tensor N(Random r, DType t, params int[] shape) => Tensor.Randn(shape, r, t);
    private static int D(Random r, int lo = 1, int hi = 4) => r.Next(lo, hi + 1);
    private static bool Coin(Random r) => r.Next(2) == 0;

    /// <summary>Values with |x| in [lo, hi] and a random sign.</summary>
    private static Tensor AwayFromZero(Random r, DType t, double lo, double hi, params int[] shape)
    {
        var v = new double[Shape.Numel(shape)];
        for (int i = 0; i < v.Length; i++) v[i] = (lo + (hi - lo) * r.NextDouble()) * (Coin(r) ? 1 : -1);
        return Tensor.FromDoubles(v, shape, t);
    }

    private static Tensor Ints(Random r, int count, int lo, int hi) =>
        Tensor.FromArray(Enumerable.Range(0, count).Select(_ => r.Next(lo, hi)).ToArray(), count);

    private static OpCase Case(string desc, Tensor[] inputs, bool[] diff, Func<Tensor[], Tensor> apply, int[] shape) =>
        new(desc, inputs, diff, apply, shape);

    private static OpCase Unary(Random r, DType t, Func<Tensor, Tensor> f, bool avoidZero = false)
    {
        int[] s = [D(r), D(r, 2, 5), D(r, 2, 6)];
        var x = avoidZero ? AwayFromZero(r, t, 0.05, 2.0, s) : N(r, t, s);
        return Case($"x {Shape.Format(s)}", [x], [true], i => f(i[0]), s);
    }

    private static OpCase Binary(Random r, DType t, Func<Tensor, Tensor, Tensor> f, bool divisor = false)
    {
        int b = D(r), tt = D(r, 2, 4), d = D(r, 2, 5);
        int[] full = [b, tt, d];
        int[][] bShapes = [[b, tt, d], [d], [b, tt, 1], [1, tt, d], [tt, 1]];
        var bs = bShapes[r.Next(bShapes.Length)];
        bool swap = Coin(r);
        var a = N(r, t, full);
        var y = divisor ? AwayFromZero(r, t, 0.5, 2.0, bs) : N(r, t, bs);
        if (swap && !divisor) (a, y) = (y, a);
        return Case($"a {Shape.Format(a.Shape)}, b {Shape.Format(y.Shape)}", [a, y], [true, true], i => f(i[0], i[1]), full);
    }

    private static OpCase MatMulCase(Random r, DType t)
    {
        int m = D(r, 1, 4), k = D(r, 1, 5), n = D(r, 1, 4);
        bool ta = Coin(r), tb = Coin(r);
        int[] batch = r.Next(3) switch { 0 => [], 1 => [D(r, 1, 3)], _ => [D(r, 1, 2), D(r, 1, 3)] };
        bool sharedB = batch.Length > 0 && Coin(r);
        int[] aShape = [.. batch, ta ? k : m, ta ? m : k];
        int[] bShape = sharedB ? [tb ? n : k, tb ? k : n] : [.. batch, tb ? n : k, tb ? k : n];
        return Case($"a {Shape.Format(aShape)}{(ta ? "ᵀ" : "")} · b {Shape.Format(bShape)}{(tb ? "ᵀ" : "")}",
            [N(r, t, aShape), N(r, t, bShape)], [true, true], i => Ops.MatMul(i[0], i[1], ta, tb), [.. batch, m, n]);
    }

    private static OpCase AttentionCase(Random r, DType t)
    {
        int b = D(r, 1, 2), hkv = D(r, 1, 2), group = D(r, 1, 2), tq = D(r, 1, 4), dh = D(r, 2, 4);
        bool causal = Coin(r);
        int s = tq + (Coin(r) ? r.Next(0, 3) : 0); // extra keys: prefix tokens
        if (!causal && Coin(r)) s = D(r, 1, 5);
        int h = hkv * group;
        bool masked = Coin(r);
        var inputs = new List<Tensor> { N(r, t, b, h, tq, dh), N(r, t, b, hkv, s, dh), N(r, t, b, hkv, s, dh) };
        if (masked)
        {
            // Pad a random number of trailing keys per row, keeping at least one visible key.
            var m = new double[b * s];
            for (int bi = 0; bi < b; bi++)
                for (int j = s - r.Next(0, Math.Max(1, s - tq)); j < s; j++) m[bi * s + j] = -1e9;
            inputs.Add(Tensor.FromDoubles(m, [b, s], t));
        }
        return Case($"q [{b}, {h}, {tq}, {dh}], kv heads {hkv}, keys {s}{(causal ? ", causal" : "")}{(masked ? ", padding mask" : "")}",
            [.. inputs], [true, true, true, false],
            i => Ops.Attention(i[0], i[1], i[2], masked ? i[3] : null, causal), [b, h, tq, dh]);
    }

    private static OpCase RopeCase(Random r, DType t)
    {
        int b = D(r, 1, 2), h = D(r, 1, 2), tn = D(r, 1, 4), dh = 2 * D(r, 1, 3);
        Tensor cos, sin;
        if (Coin(r)) (cos, sin) = Ops.RopeTables(tn, dh, 10000.0, t);
        else
        {
            // Per-batch tables from random position ids (left padding shifts positions).
            var angles = new double[b * tn * dh];
            for (int bi = 0; bi < b; bi++)
                for (int p = 0; p < tn; p++)
                    for (int i = 0; i < dh / 2; i++)
                        angles[(bi * tn + p) * dh + i] = angles[(bi * tn + p) * dh + i + dh / 2] = r.Next(0, 50) * Math.Pow(10000, -2.0 * i / dh);
            cos = Tensor.FromDoubles(angles.Select(Math.Cos).ToArray(), [b, tn, dh], t);
            sin = Tensor.FromDoubles(angles.Select(Math.Sin).ToArray(), [b, tn, dh], t);
        }
        return Case($"x [{b}, {h}, {tn}, {dh}], tables {Shape.Format(cos.Shape)}", [N(r, t, b, h, tn, dh), cos, sin], [true, false, false],
            i => Ops.Rope(i[0], i[1], i[2]), [b, h, tn, dh]);
    }

    private static OpCase ConcatCase(Random r, DType t)
    {
        int rank = D(r, 1, 3), dim = r.Next(rank), count = D(r, 1, 3);
        var baseShape = Enumerable.Range(0, rank).Select(_ => D(r, 1, 3)).ToArray();
        var xs = new Tensor[count];
        int total = 0;
        for (int i = 0; i < count; i++)
        {
            var s = (int[])baseShape.Clone();
            s[dim] = D(r, 1, 3);
            total += s[dim];
            xs[i] = N(r, t, s);
        }
        var outShape = (int[])baseShape.Clone();
        outShape[dim] = total;
        return Case($"{count} tensors along dim {dim}", xs, xs.Select(_ => true).ToArray(), i => Ops.Concat(i, dim), outShape);
    }

    private static OpCase SliceCase(Random r, DType t)
    {
        int[] s = [D(r, 1, 2), D(r, 2, 5), D(r, 1, 3)];
        int dim = r.Next(3), start = r.Next(s[dim]), len = r.Next(0, s[dim] - start) + 1;
        var o = (int[])s.Clone();
        o[dim] = len;
        return Case($"x {Shape.Format(s)}, dim {dim} [{start}, {start + len})", [N(r, t, s)], [true], i => Ops.Slice(i[0], dim, start, len), o);
    }

    private static OpCase PermuteCase(Random r, DType t)
    {
        int rank = D(r, 2, 4);
        var s = Enumerable.Range(0, rank).Select(_ => D(r, 1, 3)).ToArray();
        var perm = Enumerable.Range(0, rank).OrderBy(_ => r.Next()).ToArray();
        return Case($"x {Shape.Format(s)}, perm [{string.Join(", ", perm)}]", [N(r, t, s)], [true],
            i => Ops.Permute(i[0], perm), perm.Select(p => s[p]).ToArray());
    }

    private static OpCase StackCase(Random r, DType t, Func<Tensor[], Tensor, Tensor> f, string what)
    {
        int l = D(r, 1, 4), b = D(r, 1, 3), d = D(r, 1, 4);
        var xs = Enumerable.Range(0, l).Select(_ => N(r, t, b, d)).ToList();
        xs.Add(N(r, t, l));
        return Case($"{l} layers of [{b}, {d}], {what}", [.. xs], xs.Select(_ => true).ToArray(), i => f(i[..^1], i[^1]), [b, d]);
    }

    private static List<OpEntry> Build() =>
    [
        new("add", "elementwise", "a + b with broadcasting", (r, t) => Binary(r, t, Ops.Add)),
        new("sub", "elementwise", "a − b with broadcasting", (r, t) => Binary(r, t, Ops.Sub)),
        new("mul", "elementwise", "a ⊙ b with broadcasting", (r, t) => Binary(r, t, Ops.Mul)),
        new("div", "elementwise", "a ÷ b with broadcasting", (r, t) => Binary(r, t, Ops.Div, divisor: true)),
        new("scale", "elementwise", "alpha · x", (r, t) => { double a = r.NextDouble() * 4 - 2; return Unary(r, t, x => Ops.Scale(x, a)); }),
        new("relu", "elementwise", "max(x, 0)", (r, t) => Unary(r, t, Ops.Relu, avoidZero: true)),
        new("tanh", "elementwise", "tanh(x)", (r, t) => Unary(r, t, Ops.Tanh)),
        new("silu", "elementwise", "x · σ(x)", (r, t) => Unary(r, t, Ops.Silu)),
        new("gelu", "elementwise", "GELU, erf form", (r, t) => Unary(r, t, Ops.Gelu)),
        new("gelu_tanh", "elementwise", "GELU, tanh approximation", (r, t) => Unary(r, t, Ops.GeluTanh)),
        new("dropout", "elementwise", "inverted dropout, seeded mask", (r, t) =>
        {
            double p = 0.1 + 0.5 * r.NextDouble();
            ulong seed = (ulong)r.NextInt64();
            return Unary(r, t, x => Ops.Dropout(x, p, seed));
        }),
        new("sum", "reduce", "sum over the last dim", (r, t) =>
        {
            int[] s = [D(r), D(r, 1, 5)];
            return Case($"x {Shape.Format(s)}", [N(r, t, s)], [true], i => Ops.Sum(i[0]), [s[0]]);
        }),
        new("mean", "reduce", "mean over the last dim", (r, t) =>
        {
            int[] s = [D(r), D(r), D(r, 1, 5)];
            return Case($"x {Shape.Format(s)}", [N(r, t, s)], [true], i => Ops.Mean(i[0]), [s[0], s[1]]);
        }),
        new("softmax", "softmax", "softmax over the last dim", (r, t) => Unary(r, t, Ops.Softmax)),
        new("layer_norm", "norm", "layer norm over the last dim, weight and bias", (r, t) =>
        {
            int[] s = [D(r), D(r), D(r, 2, 6)];
            return Case($"x {Shape.Format(s)}", [N(r, t, s), N(r, t, s[2]), N(r, t, s[2])], [true, true, true],
                i => Ops.LayerNorm(i[0], i[1], i[2], 1e-5), s);
        }),
        new("rms_norm", "norm", "RMS norm over the last dim, weight", (r, t) =>
        {
            int[] s = [D(r), D(r), D(r, 2, 6)];
            return Case($"x {Shape.Format(s)}", [N(r, t, s), N(r, t, s[2])], [true, true], i => Ops.RmsNorm(i[0], i[1], 1e-6), s);
        }),
        new("matmul", "matmul", "batched matrix product with transpose flags", MatMulCase),
        new("linear", "matmul", "x · wᵀ + b (composite: matmul, add)", (r, t) =>
        {
            int b = D(r), tt = D(r), i = D(r, 1, 5), o = D(r, 1, 4);
            return Case($"x [{b}, {tt}, {i}] → {o}", [N(r, t, b, tt, i), N(r, t, o, i), N(r, t, o)], [true, true, true],
                x => Ops.Linear(x[0], x[1], x[2]), [b, tt, o]);
        }),
        new("embedding", "embedding", "table lookup, scatter-add backward", (r, t) =>
        {
            int v = D(r, 2, 6), d = D(r, 1, 4), b = D(r), tt = D(r, 1, 5);
            var ids = Ints(r, b * tt, 0, v).Reshape(b, tt);
            return Case($"ids [{b}, {tt}] into [{v}, {d}]", [ids, N(r, t, v, d)], [false, true], i => Ops.Embedding(i[0], i[1]), [b, tt, d]);
        }),
        new("gather_rows", "pooling", "one position per row", (r, t) =>
        {
            int b = D(r), tt = D(r, 1, 5), d = D(r, 1, 4);
            return Case($"x [{b}, {tt}, {d}]", [N(r, t, b, tt, d), Ints(r, b, 0, tt)], [true, false], i => Ops.GatherRows(i[0], i[1]), [b, d]);
        }),
        new("attention", "attention", "scaled dot-product attention: padding mask, causal, grouped-query", AttentionCase),
        new("rope", "rope", "rotary embedding, rotate-half convention", RopeCase),
        new("cross_entropy", "loss", "mean cross-entropy with an ignore index", (r, t) =>
        {
            int n = D(r, 2, 6), c = D(r, 2, 5);
            var tg = Enumerable.Range(0, n).Select(k => k == 0 || r.Next(4) != 0 ? r.Next(c) : -100).ToArray();
            return Case($"logits [{n}, {c}], {tg.Count(x => x == -100)} ignored", [N(r, t, n, c), Tensor.FromArray(tg, n)], [true, false],
                i => Ops.CrossEntropy(i[0], i[1]), []);
        }),
        new("mse", "loss", "mean squared error", (r, t) =>
        {
            int n = D(r, 1, 6);
            return Case($"pred [{n}]", [N(r, t, n), N(r, t, n)], [true, false], i => Ops.Mse(i[0], i[1]), []);
        }),
        new("bce_with_logits", "loss", "mean binary cross-entropy on logits", (r, t) =>
        {
            int n = D(r, 1, 4), c = D(r, 1, 3);
            return Case($"logits [{n}, {c}]", [N(r, t, n, c), Tensor.Uniform([n, c], r, 0, 1, t)], [true, false],
                i => Ops.BceWithLogits(i[0], i[1]), []);
        }),
        new("concat", "layout", "concatenation along a dim", ConcatCase),
        new("slice", "layout", "a range of one dim", SliceCase),
        new("permute", "layout", "dims permuted", PermuteCase),
        new("transpose", "layout", "two dims swapped (heads: [B, T, H, D] ↔ [B, H, T, D])", (r, t) =>
        {
            int[] s = [D(r), D(r), D(r), D(r)];
            return Case($"x {Shape.Format(s)}", [N(r, t, s)], [true], i => Ops.Transpose(i[0], 1, 2), [s[0], s[2], s[1], s[3]]);
        }),
        new("reshape", "layout", "a view with another shape", (r, t) =>
        {
            int a = D(r), b = D(r), c = D(r);
            return Case($"x [{a}, {b}, {c}]", [N(r, t, a, b, c)], [true], i => Ops.Reshape(i[0], a * b, -1), [a * b, c]);
        }),
        new("weighted_sum", "pooling", "Σ w_l · x_l", (r, t) => StackCase(r, t, Ops.WeightedSum, "raw weights")),
        new("layer_mix", "pooling", "Σ softmax(a)_l · x_l (depth-wise pooling; composite: softmax, weighted_sum)",
            (r, t) => StackCase(r, t, (xs, a) => Ops.LayerMix(xs, a), "softmax weights")),
    ];
}
