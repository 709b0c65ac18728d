namespace Engine.Backend;

public enum UnaryOp { Relu, Tanh, Silu, GeluErf, GeluTanh }

public enum BinaryOp { Add, Sub, Mul, Div }

/// <summary>
/// The kernels a device must provide: the forward and the hand-written backward of every op in
/// the catalog (<see cref="Engine.OpCatalog"/>), plus memory and optimizer kernels.
///
/// Conventions (every backend, every kernel):
/// - all tensors are contiguous row-major and on this backend's device;
/// - forward kernels overwrite their outputs;
/// - backward kernels ADD (+=) into the input-gradient buffers they are given, and skip the
///   work for a gradient argument that is null (an input that does not require gradients);
/// - index tensors (token ids, targets, positions) are I32.
/// Shapes are checked by the op before it calls a kernel (<see cref="Engine.Ops"/>).
/// </summary>
public interface IBackend
{
    Device Device { get; }
    string Name { get; }

    // ------------------------------------------------------------- memory
    Storage Allocate(DType dtype, long length, bool zero);
    /// <summary>Takes back a storage no tensor uses any more.</summary>
    void Release(Storage storage);
    /// <summary>Copies src into dst (same numel, same dtype); one of them is on this device.</summary>
    void Copy(Tensor src, Tensor dst);
    /// <summary>Element-type conversion on this device: dst = (dst.DType) src.</summary>
    void Cast(Tensor src, Tensor dst);
    void Fill(Tensor t, double value);
    /// <summary>t += value.</summary>
    void AddScalar(Tensor t, double value);
    /// <summary>y += alpha * x (same numel).</summary>
    void Axpy(Tensor x, Tensor y, double alpha);
    /// <summary>y = alpha * x.</summary>
    void Scale(Tensor x, Tensor y, double alpha);
    /// <summary>Σ x² over all elements, as a float64 on the host.</summary>
    double SumSquares(Tensor x);
    /// <summary>Σ over <paramref name="xs"/> (all on this device) of <see cref="SumSquares(Tensor)"/>,
    /// the per-tensor totals added on the host in list order (so the result equals the loop of
    /// single calls), with one device round trip for the whole list (gradient clipping).</summary>
    double SumSquares(IReadOnlyList<Tensor> xs);
    /// <summary>Waits until every kernel queued on this device has finished (a no-op where kernels
    /// run synchronously, as on the CPU); for timing.</summary>
    void Synchronize();

    // ------------------------------------------------------------- elementwise
    /// <summary>y = a op b with NumPy broadcasting; y has the broadcast shape.</summary>
    void Binary(BinaryOp op, Tensor a, Tensor b, Tensor y);
    /// <summary>da += sum-to-shape(∂y/∂a · dy), db likewise.</summary>
    void BinaryBackward(BinaryOp op, Tensor a, Tensor b, Tensor dy, Tensor? da, Tensor? db);
    void Unary(UnaryOp op, Tensor x, Tensor y);
    void UnaryBackward(UnaryOp op, Tensor x, Tensor y, Tensor dy, Tensor dx);
    /// <summary>y[i] = x[i] if keep(seed, i) else 0, scaled by 1/(1-p); the mask is a pure function of (seed, i).</summary>
    void Dropout(Tensor x, Tensor y, double p, ulong seed);
    void DropoutBackward(Tensor dy, Tensor dx, double p, ulong seed);

    // ------------------------------------------------------------- reductions, softmax
    /// <summary>y[r] = Σ_j x[r, j] (÷ n when mean) over the last dim.</summary>
    void SumLast(Tensor x, Tensor y, bool mean);
    void SumLastBackward(Tensor dy, Tensor dx, bool mean);
    void Softmax(Tensor x, Tensor y);
    void SoftmaxBackward(Tensor y, Tensor dy, Tensor dx);

    // ------------------------------------------------------------- norms
    /// <summary>Over the last dim: y = (x - mean) * rstd * w + b; saves mean and rstd [rows].</summary>
    void LayerNorm(Tensor x, Tensor w, Tensor b, Tensor y, Tensor mean, Tensor rstd, double eps);
    void LayerNormBackward(Tensor x, Tensor w, Tensor mean, Tensor rstd, Tensor dy, Tensor? dx, Tensor? dw, Tensor? db);
    /// <summary>Over the last dim: y = x * rstd * w with rstd = 1/sqrt(mean(x²) + eps); saves rstd [rows].</summary>
    void RmsNorm(Tensor x, Tensor w, Tensor y, Tensor rstd, double eps);
    void RmsNormBackward(Tensor x, Tensor w, Tensor rstd, Tensor dy, Tensor? dx, Tensor? dw);

    // ------------------------------------------------------------- matmul
    /// <summary>
    /// Batched C = alpha·op(A)·op(B) + beta·C over contiguous row-major matrices: op(A) is M×K
    /// (A stored K×M when transA), op(B) is K×N (B stored N×K when transB), C is M×N. Matrix i of
    /// a batch starts at offset + i·stride (elements); a stride of 0 repeats one matrix (for C: the
    /// products of the whole batch are summed into it, beta applied once).
    /// </summary>
    void Gemm(Tensor a, long offA, long strideA, bool transA,
              Tensor b, long offB, long strideB, bool transB,
              Tensor c, long offC, long strideC,
              int batch, int m, int n, int k, double alpha, double beta);

    // ------------------------------------------------------------- lookup, gather, layout
    /// <summary>y[i, :] = w[ids[i], :].</summary>
    void Embedding(Tensor ids, Tensor w, Tensor y);
    /// <summary>dw[ids[i], :] += dy[i, :] (scatter-add; repeated ids accumulate).</summary>
    void EmbeddingBackward(Tensor ids, Tensor dy, Tensor dw);
    /// <summary>x [B, T, D], idx [B]: y[b, :] = x[b, idx[b], :].</summary>
    void GatherRows(Tensor x, Tensor idx, Tensor y);
    void GatherRowsBackward(Tensor idx, Tensor dy, Tensor dx);
    /// <summary>Views src as [outer, srcDim, inner] and dst as [outer, dstDim, inner];
    /// dst[o, dstStart + i, :] (+)= src[o, srcStart + i, :] for i &lt; count.</summary>
    void CopyBlock(Tensor src, int srcDim, int srcStart, Tensor dst, int dstDim, int dstStart,
                   long outer, int count, long inner, bool accumulate);
    /// <summary>y = x with its dims permuted (y.shape[i] = x.shape[perm[i]]); accumulate adds into y.</summary>
    void Permute(Tensor x, int[] perm, Tensor y, bool accumulate);
    /// <summary>y = Σ_l w[l] · xs[l] (all xs one shape, w [L]).</summary>
    void WeightedSum(Tensor[] xs, Tensor w, Tensor y);
    /// <summary>dxs[l] += w[l]·dy; dw[l] += Σ dy ⊙ xs[l].</summary>
    void WeightedSumBackward(Tensor[] xs, Tensor w, Tensor dy, Tensor?[] dxs, Tensor? dw);

    // ------------------------------------------------------------- attention, rotary
    /// <summary>
    /// Scaled dot-product attention. q [B, H, T, D]; k, v [B, Hkv, S, D] with H a multiple of Hkv
    /// (query head h reads kv head h / (H/Hkv)); mask: null or additive [B, S] over keys; causal:
    /// query t sees keys s ≤ t + S − T. Writes o [B, H, T, D] and the probabilities [B, H, T, S].
    /// </summary>
    void Attention(Tensor q, Tensor k, Tensor v, Tensor? mask, bool causal, double scale, Tensor o, Tensor probs);
    void AttentionBackward(Tensor q, Tensor k, Tensor v, Tensor probs, Tensor dO, double scale,
                           Tensor? dq, Tensor? dk, Tensor? dv);
    /// <summary>Rotary embedding, rotate-half convention: y = x·cos + rotate_half(x)·sin with
    /// rotate_half(x) = [−x₂, x₁]. x [B, H, T, D]; cos, sin [T, D] or [B, T, D].
    /// transpose: apply the transposed rotation and ADD into y (the backward).</summary>
    void Rope(Tensor x, Tensor cos, Tensor sin, Tensor y, bool transpose);

    // ------------------------------------------------------------- losses (scalar outputs)
    /// <summary>logits [N, C], targets [N] (I32); mean over rows whose target ≠ ignoreIndex.
    /// Saves the per-row log-sum-exp [N].</summary>
    void CrossEntropy(Tensor logits, Tensor targets, int ignoreIndex, Tensor loss, Tensor lse);
    /// <summary>dlogits += (softmax − onehot(target)) · dloss / count on rows not ignored; with
    /// <paramref name="accumulate"/> false every element of dlogits is written instead (ignored rows 0).</summary>
    void CrossEntropyBackward(Tensor logits, Tensor targets, int ignoreIndex, Tensor lse, Tensor dloss, Tensor dlogits, bool accumulate);
    /// <summary>mean((pred − target)²).</summary>
    void Mse(Tensor pred, Tensor target, Tensor loss);
    void MseBackward(Tensor pred, Tensor target, Tensor dloss, Tensor dpred);
    /// <summary>mean(max(x,0) − x·y + log(1 + e^−|x|)).</summary>
    void BceWithLogits(Tensor logits, Tensor targets, Tensor loss);
    void BceWithLogitsBackward(Tensor logits, Tensor targets, Tensor dloss, Tensor dlogits);

    // ------------------------------------------------------------- optimizers (in place)
    /// <summary>PyTorch AdamW: p −= lr·wd·p; m, v moments; p −= lr·m̂/(√v̂ + eps), step ≥ 1.</summary>
    void AdamW(Tensor p, Tensor g, Tensor m, Tensor v, double lr, double beta1, double beta2, double eps, double weightDecay, int step);
    /// <summary>PyTorch SGD with d = g + wd·p (g itself is not modified): buf = momentum·buf + (1 − dampening)·d (buf = d on the first step); p −= lr·(d + momentum·buf if nesterov else buf).</summary>
    void Sgd(Tensor p, Tensor g, Tensor? buf, double lr, double momentum, double dampening, double weightDecay, bool nesterov, bool firstStep);
}
