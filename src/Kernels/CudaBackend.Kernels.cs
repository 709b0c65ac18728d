using Engine.Backend;

namespace Engine.Kernels;

// Elementwise, reductions, softmax, norms, layout, attention, rotary, losses and optimizers:
// each method validates nothing the op has not already checked, fills the kernel's arguments
// and launches (see the kernel files for the shapes and formulas).
public sealed unsafe partial class CudaBackend
{
    // ------------------------------------------------------------- elementwise

    /// <summary>The output shape and both operands' broadcast strides along it.</summary>
    private static Layout BroadcastLayout(Tensor a, Tensor b, Tensor y)
    {
        var shape = y.ShapeArray;
        if (shape.Length > Layout.MaxRank) throw new EngineException($"cuda broadcasting supports rank ≤ {Layout.MaxRank}, not {shape.Length}");
        var sa = Shape.BroadcastStrides(a.Shape, shape);
        var sb = Shape.BroadcastStrides(b.Shape, shape);
        var L = new Layout { Rank = shape.Length };
        for (int d = 0; d < shape.Length; d++)
        {
            L.Shape[d] = shape[d];
            L.Stride0[d] = shape[d] == 1 ? 0 : sa[d];
            L.Stride1[d] = shape[d] == 1 ? 0 : sb[d];
        }
        return L;
    }

    public void Binary(BinaryOp op, Tensor a, Tensor b, Tensor y)
    {
        gpu.MakeCurrent();
        var L = BroadcastLayout(a, b, y);
        gpu.Launch(K("binary", a), Blocks(y.Numel), Block, (int)op, P(a), P(b), P(y), y.Numel, KernelArg.Of(&L));
    }

    public void BinaryBackward(BinaryOp op, Tensor a, Tensor b, Tensor dy, Tensor? da, Tensor? db)
    {
        gpu.MakeCurrent();
        var L = BroadcastLayout(a, b, dy);
        if (da is not null) gpu.Launch(K("binary_backward", a), Blocks(da.Numel), Block, (int)op, 0, P(a), P(b), P(dy), P(da), da.Numel, KernelArg.Of(&L));
        if (db is not null) gpu.Launch(K("binary_backward", a), Blocks(db.Numel), Block, (int)op, 1, P(a), P(b), P(dy), P(db), db.Numel, KernelArg.Of(&L));
    }

    public void Unary(UnaryOp op, Tensor x, Tensor y)
    {
        gpu.MakeCurrent();
        gpu.Launch(K("unary", x), Blocks(x.Numel), Block, (int)op, P(x), P(y), x.Numel);
    }

    public void UnaryBackward(UnaryOp op, Tensor x, Tensor y, Tensor dy, Tensor dx)
    {
        gpu.MakeCurrent();
        gpu.Launch(K("unary_backward", x), Blocks(x.Numel), Block, (int)op, P(x), P(y), P(dy), P(dx), x.Numel);
    }

    public void Dropout(Tensor x, Tensor y, double p, ulong seed) => DropoutKernel(x, y, p, seed, accumulate: false);

    public void DropoutBackward(Tensor dy, Tensor dx, double p, ulong seed) => DropoutKernel(dy, dx, p, seed, accumulate: true);

    /// <summary>Keeps element i when Rng.Uniform(seed, i) ≥ p (the same mask as the CPU), scaled by 1/(1−p).</summary>
    private void DropoutKernel(Tensor x, Tensor y, double p, ulong seed, bool accumulate)
    {
        gpu.MakeCurrent();
        gpu.Launch(K("dropout", x), Blocks(x.Numel), Block, P(x), P(y), x.Numel, (float)p, Scalar(x, 1.0 / (1.0 - p)), (long)seed, accumulate ? 1 : 0);
    }

    /// <summary>The GPU's uniform draws u[i] = Rng.Uniform(seed, i) for i &lt; n (a test of the mask hash).</summary>
    public float[] UniformDraws(ulong seed, int n)
    {
        var u = Tensor.Empty([n], DType.F32, Device);
        gpu.MakeCurrent();
        gpu.Launch("rng_uniform_f32", Blocks(n), Block, P(u), (long)n, (long)seed);
        return u.ToFloatArray();
    }

    // ------------------------------------------------------------- reductions, softmax

    public void SumLast(Tensor x, Tensor y, bool mean)
    {
        gpu.MakeCurrent();
        int n = x.Rank == 0 ? 1 : x.Dim(-1);
        long rows = y.Numel;
        gpu.Launch(K("sum_last", x), RowBlocks(rows), RowThreads(n), P(x), P(y), rows, n, mean ? 1 : 0);
    }

    public void SumLastBackward(Tensor dy, Tensor dx, bool mean)
    {
        gpu.MakeCurrent();
        int n = dx.Rank == 0 ? 1 : dx.Dim(-1);
        gpu.Launch(K("sum_last_backward", dy), Blocks(dx.Numel), Block, P(dy), P(dx), dy.Numel, n, mean ? 1 : 0);
    }

    public void Softmax(Tensor x, Tensor y)
    {
        gpu.MakeCurrent();
        int n = x.Dim(-1);
        long rows = n == 0 ? 0 : x.Numel / n;
        if (rows > 0) gpu.Launch(K("softmax", x), RowBlocks(rows), RowThreads(n), P(x), P(y), rows, n);
    }

    public void SoftmaxBackward(Tensor y, Tensor dy, Tensor dx)
    {
        gpu.MakeCurrent();
        int n = y.Dim(-1);
        long rows = n == 0 ? 0 : y.Numel / n;
        if (rows > 0) gpu.Launch(K("softmax_backward", y), RowBlocks(rows), RowThreads(n), P(y), P(dy), P(dx), rows, n);
    }

    // ------------------------------------------------------------- norms

    /// <summary>Rows per chunk in the first pass of a parameter-gradient column sum.</summary>
    private const int ChunkRows = 64;

    /// <summary>The chunking of a column sum over <paramref name="rows"/>: 64 rows per chunk, or
    /// more when that would need more chunks than a grid's y dimension holds (65535).</summary>
    private static (int ChunkRows, long Chunks) Chunking(long rows)
    {
        int chunkRows = (int)Math.Max(ChunkRows, (rows + 65534) / 65535);
        return (chunkRows, (rows + chunkRows - 1) / chunkRows);
    }

    public void LayerNorm(Tensor x, Tensor w, Tensor b, Tensor y, Tensor mean, Tensor rstd, double eps)
    {
        gpu.MakeCurrent();
        int n = x.Dim(-1);
        long rows = x.Numel / n;
        gpu.Launch(K("layer_norm", x), RowBlocks(rows), RowThreads(n), P(x), P(w), P(b), P(y), P(mean), P(rstd), rows, n, Scalar(x, eps));
    }

    public void LayerNormBackward(Tensor x, Tensor w, Tensor mean, Tensor rstd, Tensor dy, Tensor? dx, Tensor? dw, Tensor? db)
    {
        gpu.MakeCurrent();
        int n = x.Dim(-1);
        long rows = x.Numel / n;
        if (dx is not null)
            gpu.Launch(K("layer_norm_backward_input", x), RowBlocks(rows), RowThreads(n), P(x), P(w), P(mean), P(rstd), P(dy), P(dx), rows, n);
        if (dw is null && db is null) return;
        var (chunkRows, chunks) = Chunking(rows);
        long partBytes = chunks * n * x.DType.SizeOf();
        var pw = dw is null ? default : Scratch(partBytes);
        var pb = db is null ? default : Scratch(partBytes);
        uint colBlocks = (uint)((n + Block - 1) / Block);
        gpu.Launch(K("layer_norm_backward_params", x), colBlocks, (uint)chunks, Block,
            [P(x), P(mean), P(rstd), P(dy), pw.Pointer, pb.Pointer, rows, n, chunkRows]);
        if (dw is not null) { gpu.Launch(K("column_sum_finish", x), colBlocks, Block, pw.Pointer, chunks, n, P(dw)); Free(pw); }
        if (db is not null) { gpu.Launch(K("column_sum_finish", x), colBlocks, Block, pb.Pointer, chunks, n, P(db)); Free(pb); }
    }

    public void RmsNorm(Tensor x, Tensor w, Tensor y, Tensor rstd, double eps)
    {
        gpu.MakeCurrent();
        int n = x.Dim(-1);
        long rows = x.Numel / n;
        gpu.Launch(K("rms_norm", x), RowBlocks(rows), RowThreads(n), P(x), P(w), P(y), P(rstd), rows, n, Scalar(x, eps));
    }

    public void RmsNormBackward(Tensor x, Tensor w, Tensor rstd, Tensor dy, Tensor? dx, Tensor? dw)
    {
        gpu.MakeCurrent();
        int n = x.Dim(-1);
        long rows = x.Numel / n;
        if (dx is not null)
            gpu.Launch(K("rms_norm_backward_input", x), RowBlocks(rows), RowThreads(n), P(x), P(w), P(rstd), P(dy), P(dx), rows, n);
        if (dw is null) return;
        var (chunkRows, chunks) = Chunking(rows);
        var pw = Scratch(chunks * n * x.DType.SizeOf());
        uint colBlocks = (uint)((n + Block - 1) / Block);
        gpu.Launch(K("rms_norm_backward_weight", x), colBlocks, (uint)chunks, Block, [P(x), P(rstd), P(dy), pw.Pointer, rows, n, chunkRows]);
        gpu.Launch(K("column_sum_finish", x), colBlocks, Block, pw.Pointer, chunks, n, P(dw));
        Free(pw);
    }

    // ------------------------------------------------------------- lookup, gather, layout

    public void Embedding(Tensor ids, Tensor w, Tensor y)
    {
        gpu.MakeCurrent();
        int d = w.Dim(-1);
        gpu.Launch(K("embedding", w), Blocks(ids.Numel * d), Block, P(ids), P(w), P(y), ids.Numel, w.Dim(0), d);
    }

    /// <summary>The ids come back to the host (n ints) to be grouped by id (<see cref="EmbeddingSegments"/>);
    /// the kernel then runs one block per (distinct id, 256 columns). The old kernel gave each
    /// column one thread walking all n tokens: d threads in all, a few hundred on a GPU with
    /// thousands of cores.</summary>
    public void EmbeddingBackward(Tensor ids, Tensor dy, Tensor dw)
    {
        gpu.MakeCurrent();
        int d = dw.Dim(-1), n = checked((int)ids.Numel);
        if (n == 0 || d == 0) return;
        var host = new int[n];
        fixed (int* h = host) gpu.CopyToHost((byte*)h, P(ids), n * 4L);
        var plan = EmbeddingSegments.Plan(host, dw.Dim(0));
        if (plan.Segments == 0) return;
        var scratch = Scratch(plan.Packed.Length * 4L);
        fixed (int* h = plan.Packed) gpu.CopyFromHost(scratch.Pointer, (byte*)h, plan.Packed.Length * 4L);
        ulong order = scratch.Pointer, starts = order + (ulong)plan.Tokens * 4, segIds = starts + (ulong)(plan.Segments + 1) * 4;
        gpu.Launch(K("embedding_backward", dw), (uint)plan.Segments, (uint)((d + Block - 1) / Block), Block,
            [order, starts, segIds, P(dy), P(dw), plan.Segments, d]);
        Free(scratch);
    }

    public void GatherRows(Tensor x, Tensor idx, Tensor y)
    {
        gpu.MakeCurrent();
        gpu.Launch(K("gather_rows", x), Blocks(y.Numel), Block, P(x), P(idx), P(y), x.Dim(0), x.Dim(1), x.Dim(2), 0);
    }

    public void GatherRowsBackward(Tensor idx, Tensor dy, Tensor dx)
    {
        gpu.MakeCurrent();
        gpu.Launch(K("gather_rows", dx), Blocks(dy.Numel), Block, P(dx), P(idx), P(dy), dx.Dim(0), dx.Dim(1), dx.Dim(2), 1);
    }

    public void CopyBlock(Tensor src, int srcDim, int srcStart, Tensor dst, int dstDim, int dstStart, long outer, int count, long inner, bool accumulate)
    {
        gpu.MakeCurrent();
        gpu.Launch(K("copy_block", src), Blocks(outer * count * inner), Block,
            P(src), srcDim, srcStart, P(dst), dstDim, dstStart, outer, count, inner, accumulate ? 1 : 0);
    }

    public void Permute(Tensor x, int[] perm, Tensor y, bool accumulate)
    {
        gpu.MakeCurrent();
        if (perm.Length > Layout.MaxRank) throw new EngineException($"cuda permute supports rank ≤ {Layout.MaxRank}, not {perm.Length}");
        var xStrides = Shape.Strides(x.Shape);
        var L = new Layout { Rank = perm.Length };
        for (int d = 0; d < perm.Length; d++)
        {
            L.Shape[d] = y.Dim(d);
            L.Stride0[d] = xStrides[perm[d]];
        }
        gpu.Launch(K("permute", x), Blocks(y.Numel), Block, P(x), P(y), y.Numel, KernelArg.Of(&L), accumulate ? 1 : 0);
    }

    public void WeightedSum(Tensor[] xs, Tensor w, Tensor y)
    {
        gpu.MakeCurrent();
        long bytes = y.Numel * y.DType.SizeOf();
        gpu.MemsetD8(P(y), 0, bytes);
        for (int l = 0; l < xs.Length; l++)
            gpu.Launch(K("axpy_indexed", w), Blocks(y.Numel), Block, P(xs[l]), P(y), y.Numel, P(w), l);
    }

    public void WeightedSumBackward(Tensor[] xs, Tensor w, Tensor dy, Tensor?[] dxs, Tensor? dw)
    {
        gpu.MakeCurrent();
        for (int l = 0; l < xs.Length; l++)
        {
            if (dxs[l] is { } dx) gpu.Launch(K("axpy_indexed", w), Blocks(dy.Numel), Block, P(dy), P(dx), dy.Numel, P(w), l);
            if (dw is not null) Dot(dy, xs[l], P(dw) + (ulong)(l * dw.DType.SizeOf()), accumulate: true);
        }
    }

    // ------------------------------------------------------------- attention, rotary

    /// <summary>Attention as batched cuBLAS GEMMs around a masked-softmax kernel (<see cref="AttentionGemms"/>).
    /// The products stay in the tensors' type in bf16 mode too, as the CPU reference's fused op does.</summary>
    public void Attention(Tensor q, Tensor k, Tensor v, Tensor? mask, bool causal, double scale, Tensor o, Tensor probs)
    {
        gpu.MakeCurrent();
        int B = q.Dim(0), H = q.Dim(1), T = q.Dim(2), D = q.Dim(3), Hkv = k.Dim(1), S = k.Dim(2);
        long rows = (long)B * H * T;
        if (rows == 0) return;
        Gemm(q.DType, P(q), P(k), P(probs), AttentionGemms.Scores(B, H, T, D, Hkv, S, scale), bf16: false);
        if (S > 0) gpu.Launch(K("attention_softmax", q), RowBlocks(rows), RowThreads(S), [P(mask, true), causal ? 1 : 0, P(probs), B, H, T, S]);
        if (S == 0) { gpu.MemsetD8(P(o), 0, o.Numel * o.DType.SizeOf()); return; }
        Gemm(q.DType, P(probs), P(v), P(o), AttentionGemms.Output(B, H, T, D, Hkv, S), bf16: false);
    }

    public void AttentionBackward(Tensor q, Tensor k, Tensor v, Tensor probs, Tensor dO, double scale, Tensor? dq, Tensor? dk, Tensor? dv)
    {
        gpu.MakeCurrent();
        int B = q.Dim(0), H = q.Dim(1), T = q.Dim(2), D = q.Dim(3), Hkv = k.Dim(1), S = k.Dim(2);
        long rows = (long)B * H * T;
        if (rows == 0 || S == 0) return;
        var dt = q.DType;
        if (dq is not null || dk is not null)
        {
            long bytes = rows * S * dt.SizeOf();
            var dP = Scratch(bytes);
            var dS = Scratch(bytes);
            Gemm(dt, P(dO), P(v), dP.Pointer, AttentionGemms.ProbabilityGradient(B, H, T, D, Hkv, S), bf16: false);
            gpu.MemsetD8(dS.Pointer, 0, bytes);
            gpu.Launch(K("softmax_backward", q), RowBlocks(rows), RowThreads(S), P(probs), dP.Pointer, dS.Pointer, rows, S);
            if (dq is not null) Gemm(dt, dS.Pointer, P(k), P(dq), AttentionGemms.QueryGradient(B, H, T, D, Hkv, S, scale), bf16: false);
            if (dk is not null) Gemm(dt, dS.Pointer, P(q), P(dk), AttentionGemms.KeyGradient(B, H, T, D, Hkv, S, scale), bf16: false);
            Free(dP);
            Free(dS);
        }
        if (dv is not null) Gemm(dt, P(probs), P(dO), P(dv), AttentionGemms.ValueGradient(B, H, T, D, Hkv, S), bf16: false);
    }

    public void Rope(Tensor x, Tensor cos, Tensor sin, Tensor y, bool transpose)
    {
        gpu.MakeCurrent();
        int B = x.Dim(0), H = x.Dim(1), T = x.Dim(2), D = x.Dim(3);
        gpu.Launch(K("rope", x), Blocks(x.Numel / 2), Block,
            [P(x), P(cos), P(sin), P(y), B, H, T, D, cos.Rank == 3 ? 1 : 0, transpose ? 1 : 0]);
    }

    // ------------------------------------------------------------- losses

    public void CrossEntropy(Tensor logits, Tensor targets, int ignoreIndex, Tensor loss, Tensor lse)
    {
        gpu.MakeCurrent();
        int c = logits.Dim(-1);
        long rows = targets.Numel;
        var terms = Scratch(Math.Max(rows, 1) * 8 + 8);
        ulong count = terms.Pointer + (ulong)(Math.Max(rows, 1) * 8);
        if (rows > 0) gpu.Launch(K("cross_entropy_rows", logits), RowBlocks(rows), RowThreads(c), P(logits), P(targets), ignoreIndex, P(lse), terms.Pointer, rows, c);
        gpu.Launch("count_targets", 1, Block, P(targets), rows, ignoreIndex, count);
        gpu.Launch(K("cross_entropy_finish", logits), 1, Block, terms.Pointer, rows, count, P(loss));
        Free(terms);
    }

    public void CrossEntropyBackward(Tensor logits, Tensor targets, int ignoreIndex, Tensor lse, Tensor dloss, Tensor dlogits, bool accumulate)
    {
        gpu.MakeCurrent();
        int c = logits.Dim(-1);
        long rows = targets.Numel;
        var count = Scratch(8);
        gpu.Launch("count_targets", 1, Block, P(targets), rows, ignoreIndex, count.Pointer);
        gpu.Launch(K("cross_entropy_backward", logits), Blocks(rows * c), Block,
            [P(logits), P(targets), ignoreIndex, P(lse), P(dloss), count.Pointer, P(dlogits), rows, c, accumulate ? 1 : 0]);
        Free(count);
    }

    /// <summary>loss[0] = (Σ per-block partials) / n.</summary>
    private void MeanLoss(string partialsKernel, Tensor a, Tensor b, Tensor loss)
    {
        uint blocks = Math.Min(Blocks(a.Numel), 1024u);
        var partials = Scratch(blocks * 8L);
        gpu.Launch(K(partialsKernel, a), blocks, Block, P(a), P(b), a.Numel, partials.Pointer);
        gpu.Launch(K("finish_sum", a), 1, Block, partials.Pointer, (int)blocks, 1.0 / a.Numel, P(loss), 0, 0UL);
        Free(partials);
    }

    public void Mse(Tensor pred, Tensor target, Tensor loss)
    {
        gpu.MakeCurrent();
        MeanLoss("mse_partials", pred, target, loss);
    }

    public void MseBackward(Tensor pred, Tensor target, Tensor dloss, Tensor dpred)
    {
        gpu.MakeCurrent();
        gpu.Launch(K("mse_backward", pred), Blocks(pred.Numel), Block, P(pred), P(target), P(dloss), P(dpred), pred.Numel);
    }

    public void BceWithLogits(Tensor logits, Tensor targets, Tensor loss)
    {
        gpu.MakeCurrent();
        MeanLoss("bce_partials", logits, targets, loss);
    }

    public void BceWithLogitsBackward(Tensor logits, Tensor targets, Tensor dloss, Tensor dlogits)
    {
        gpu.MakeCurrent();
        gpu.Launch(K("bce_backward", logits), Blocks(logits.Numel), Block, P(logits), P(targets), P(dloss), P(dlogits), logits.Numel);
    }

    // ------------------------------------------------------------- optimizers

    public void AdamW(Tensor p, Tensor g, Tensor m, Tensor v, double lr, double beta1, double beta2, double eps, double weightDecay, int step)
    {
        gpu.MakeCurrent();
        double bc1 = 1 - Math.Pow(beta1, step), bc2 = 1 - Math.Pow(beta2, step);
        gpu.Launch(K("adamw", p), Blocks(p.Numel), Block,
            [P(p), P(g), P(m), P(v), p.Numel, Scalar(p, beta1), Scalar(p, beta2), Scalar(p, eps), Scalar(p, 1 - lr * weightDecay), Scalar(p, lr / bc1), Scalar(p, Math.Sqrt(bc2))]);
    }

    public void Sgd(Tensor p, Tensor g, Tensor? buf, double lr, double momentum, double dampening, double weightDecay, bool nesterov, bool firstStep)
    {
        gpu.MakeCurrent();
        gpu.Launch(K("sgd", p), Blocks(p.Numel), Block,
            [P(p), P(g), P(buf, true), p.Numel, Scalar(p, lr), Scalar(p, momentum), Scalar(p, 1 - dampening), Scalar(p, weightDecay), nesterov ? 1 : 0, firstStep ? 1 : 0]);
    }
}
