using Engine.Backend;

namespace Engine.Tests.Devices;

/// <summary>
/// A stand-in for a GPU on machines without one: a device whose memory the host cannot touch
/// (its storage is not a <see cref="CpuStorage"/>, so <c>Tensor.Span</c> on it throws, and every
/// op refuses to mix it with CPU tensors), computing with the CPU reference kernels. A model that
/// runs here runs its whole step through <see cref="IBackend"/> and explicit copies: the plumbing a
/// real GPU needs. Results are bit-identical to the CPU's, so tests compare exactly.
/// </summary>
internal sealed class MirrorBackend : IBackend
{
    /// <summary>The device index the mirror claims (as cuda:N; far above any real GPU's index).</summary>
    public const int Index = 15;

    private static readonly CpuBackend Cpu = Backends.Cpu;

    public static Device Device { get; } = Device.Cuda(Index);

    /// <summary>Puts the mirror in place for <see cref="Device"/> (idempotent) and returns its device.</summary>
    public static Device Install()
    {
        Backends.Register(new MirrorBackend());
        return Device;
    }

    Device IBackend.Device => Device;
    public string Name => "mirror (CPU kernels behind a device boundary)";

    /// <summary>How many host↔device copies ran (a model step should make few).</summary>
    public static long Transfers;

    private sealed class MirrorStorage(DType dtype, long length, CpuStorage inner) : Storage(MirrorBackend.Device, dtype, length)
    {
        public CpuStorage Inner { get; } = inner;
    }

    /// <summary>The CPU view of a mirror tensor (same elements, shared memory).</summary>
    private static Tensor H(Tensor t)
    {
        if (t.Storage is not MirrorStorage m) throw new EngineException($"mirror backend: a {t.Device} tensor was given to the mirror device's kernel");
        return new Tensor(m.Inner, t.ShapeArray, t.Offset, longLived: true);
    }

    private static Tensor? H(Tensor? t, bool optional) => t is null ? null : H(t);

    public Storage Allocate(DType dtype, long length, bool zero) => new MirrorStorage(dtype, length, (CpuStorage)Cpu.Allocate(dtype, length, zero));

    public void Release(Storage storage)
    {
        var m = (MirrorStorage)storage;
        m.Released = true;
        Cpu.Release(m.Inner);
    }

    public void Copy(Tensor src, Tensor dst)
    {
        if (src.Device != dst.Device) Interlocked.Increment(ref Transfers);
        Cpu.Copy(src.Storage is MirrorStorage ? H(src) : src, dst.Storage is MirrorStorage ? H(dst) : dst);
    }

    public void Cast(Tensor src, Tensor dst) => Cpu.Cast(H(src), H(dst));
    public void Fill(Tensor t, double value) => Cpu.Fill(H(t), value);
    public void AddScalar(Tensor t, double value) => Cpu.AddScalar(H(t), value);
    public void Axpy(Tensor x, Tensor y, double alpha) => Cpu.Axpy(H(x), H(y), alpha);
    public void Scale(Tensor x, Tensor y, double alpha) => Cpu.Scale(H(x), H(y), alpha);
    public double SumSquares(Tensor x) => Cpu.SumSquares(H(x));
    public double SumSquares(IReadOnlyList<Tensor> xs) => Cpu.SumSquares(xs.Select(H).ToList());
    public void Synchronize() { }

    public void Binary(BinaryOp op, Tensor a, Tensor b, Tensor y) => Cpu.Binary(op, H(a), H(b), H(y));
    public void BinaryBackward(BinaryOp op, Tensor a, Tensor b, Tensor dy, Tensor? da, Tensor? db) =>
        Cpu.BinaryBackward(op, H(a), H(b), H(dy), H(da, true), H(db, true));
    public void Unary(UnaryOp op, Tensor x, Tensor y) => Cpu.Unary(op, H(x), H(y));
    public void UnaryBackward(UnaryOp op, Tensor x, Tensor y, Tensor dy, Tensor dx) => Cpu.UnaryBackward(op, H(x), H(y), H(dy), H(dx));
    public void Dropout(Tensor x, Tensor y, double p, ulong seed) => Cpu.Dropout(H(x), H(y), p, seed);
    public void DropoutBackward(Tensor dy, Tensor dx, double p, ulong seed) => Cpu.DropoutBackward(H(dy), H(dx), p, seed);

    public void SumLast(Tensor x, Tensor y, bool mean) => Cpu.SumLast(H(x), H(y), mean);
    public void SumLastBackward(Tensor dy, Tensor dx, bool mean) => Cpu.SumLastBackward(H(dy), H(dx), mean);
    public void Softmax(Tensor x, Tensor y) => Cpu.Softmax(H(x), H(y));
    public void SoftmaxBackward(Tensor y, Tensor dy, Tensor dx) => Cpu.SoftmaxBackward(H(y), H(dy), H(dx));

    public void LayerNorm(Tensor x, Tensor w, Tensor b, Tensor y, Tensor mean, Tensor rstd, double eps) =>
        Cpu.LayerNorm(H(x), H(w), H(b), H(y), H(mean), H(rstd), eps);
    public void LayerNormBackward(Tensor x, Tensor w, Tensor mean, Tensor rstd, Tensor dy, Tensor? dx, Tensor? dw, Tensor? db) =>
        Cpu.LayerNormBackward(H(x), H(w), H(mean), H(rstd), H(dy), H(dx, true), H(dw, true), H(db, true));
    public void RmsNorm(Tensor x, Tensor w, Tensor y, Tensor rstd, double eps) => Cpu.RmsNorm(H(x), H(w), H(y), H(rstd), eps);
    public void RmsNormBackward(Tensor x, Tensor w, Tensor rstd, Tensor dy, Tensor? dx, Tensor? dw) =>
        Cpu.RmsNormBackward(H(x), H(w), H(rstd), H(dy), H(dx, true), H(dw, true));

    public void Gemm(Tensor a, long offA, long strideA, bool transA, Tensor b, long offB, long strideB, bool transB,
                     Tensor c, long offC, long strideC, int batch, int m, int n, int k, double alpha, double beta) =>
        Cpu.Gemm(H(a), offA, strideA, transA, H(b), offB, strideB, transB, H(c), offC, strideC, batch, m, n, k, alpha, beta);

    public void Embedding(Tensor ids, Tensor w, Tensor y) => Cpu.Embedding(H(ids), H(w), H(y));
    public void EmbeddingBackward(Tensor ids, Tensor dy, Tensor dw) => Cpu.EmbeddingBackward(H(ids), H(dy), H(dw));
    public void GatherRows(Tensor x, Tensor idx, Tensor y) => Cpu.GatherRows(H(x), H(idx), H(y));
    public void GatherRowsBackward(Tensor idx, Tensor dy, Tensor dx) => Cpu.GatherRowsBackward(H(idx), H(dy), H(dx));
    public void CopyBlock(Tensor src, int srcDim, int srcStart, Tensor dst, int dstDim, int dstStart, long outer, int count, long inner, bool accumulate) =>
        Cpu.CopyBlock(H(src), srcDim, srcStart, H(dst), dstDim, dstStart, outer, count, inner, accumulate);
    public void Permute(Tensor x, int[] perm, Tensor y, bool accumulate) => Cpu.Permute(H(x), perm, H(y), accumulate);
    public void WeightedSum(Tensor[] xs, Tensor w, Tensor y) => Cpu.WeightedSum(xs.Select(H).ToArray(), H(w), H(y));
    public void WeightedSumBackward(Tensor[] xs, Tensor w, Tensor dy, Tensor?[] dxs, Tensor? dw) =>
        Cpu.WeightedSumBackward(xs.Select(H).ToArray(), H(w), H(dy), dxs.Select(d => H(d, true)).ToArray(), H(dw, true));

    public void Attention(Tensor q, Tensor k, Tensor v, Tensor? mask, bool causal, double scale, Tensor o, Tensor probs) =>
        Cpu.Attention(H(q), H(k), H(v), H(mask, true), causal, scale, H(o), H(probs));
    public void AttentionBackward(Tensor q, Tensor k, Tensor v, Tensor probs, Tensor dO, double scale, Tensor? dq, Tensor? dk, Tensor? dv) =>
        Cpu.AttentionBackward(H(q), H(k), H(v), H(probs), H(dO), scale, H(dq, true), H(dk, true), H(dv, true));
    public void Rope(Tensor x, Tensor cos, Tensor sin, Tensor y, bool transpose) => Cpu.Rope(H(x), H(cos), H(sin), H(y), transpose);

    public void CrossEntropy(Tensor logits, Tensor targets, int ignoreIndex, Tensor loss, Tensor lse) =>
        Cpu.CrossEntropy(H(logits), H(targets), ignoreIndex, H(loss), H(lse));
    public void CrossEntropyBackward(Tensor logits, Tensor targets, int ignoreIndex, Tensor lse, Tensor dloss, Tensor dlogits, bool accumulate) =>
        Cpu.CrossEntropyBackward(H(logits), H(targets), ignoreIndex, H(lse), H(dloss), H(dlogits), accumulate);
    public void Mse(Tensor pred, Tensor target, Tensor loss) => Cpu.Mse(H(pred), H(target), H(loss));
    public void MseBackward(Tensor pred, Tensor target, Tensor dloss, Tensor dpred) => Cpu.MseBackward(H(pred), H(target), H(dloss), H(dpred));
    public void BceWithLogits(Tensor logits, Tensor targets, Tensor loss) => Cpu.BceWithLogits(H(logits), H(targets), H(loss));
    public void BceWithLogitsBackward(Tensor logits, Tensor targets, Tensor dloss, Tensor dlogits) =>
        Cpu.BceWithLogitsBackward(H(logits), H(targets), H(dloss), H(dlogits));

    public void AdamW(Tensor p, Tensor g, Tensor m, Tensor v, double lr, double beta1, double beta2, double eps, double weightDecay, int step) =>
        Cpu.AdamW(H(p), H(g), H(m), H(v), lr, beta1, beta2, eps, weightDecay, step);
    public void Sgd(Tensor p, Tensor g, Tensor? buf, double lr, double momentum, double dampening, double weightDecay, bool nesterov, bool firstStep) =>
        Cpu.Sgd(H(p), H(g), H(buf, true), lr, momentum, dampening, weightDecay, nesterov, firstStep);
}
