using System.Numerics;
using System.Numerics.Tensors;

namespace Engine.Backend;

// Scaled dot-product attention (probabilities kept for the backward) and rotary embeddings.
public sealed partial class CpuBackend
{
    public void Attention(Tensor q, Tensor k, Tensor v, Tensor? mask, bool causal, double scale, Tensor o, Tensor probs)
    {
        if (IsF64(q)) Attention<double>(q, k, v, mask, causal, scale, o, probs);
        else if (SimpleAttention) Attention<float>(q, k, v, mask, causal, scale, o, probs);
        else AttentionF32(q, k, v, mask, causal, (float)scale, o, probs);
    }

    // The simple kernel (float64; float32 with ENGINE_ATTENTION=simple; the float32 default is
    // CpuBackend.AttentionF32.cs, tested against this one).
    // One work item per (batch, query head, query position): scores over keys, masked softmax,
    // then the weighted sum of values. Masked-out causal keys get probability exactly 0.
    internal static void Attention<T>(Tensor tq, Tensor tk, Tensor tv, Tensor? tmask, bool causal, double scaleD, Tensor to, Tensor tp)
        where T : unmanaged, IFloatingPointIeee754<T>
    {
        int B = tq.Dim(0), H = tq.Dim(1), Tq = tq.Dim(2), D = tq.Dim(3), Hkv = tk.Dim(1), Sk = tk.Dim(2);
        int group = H / Hkv;
        T scale = T.CreateTruncating(scaleD);
        For((long)B * H * Tq, (long)Sk * D, item =>
        {
            int t = item % Tq, h = item / Tq % H, b = item / Tq / H;
            int kvh = h / group;
            var q = S<T>(tq).Slice(((b * H + h) * Tq + t) * D, D);
            var k = S<T>(tk).Slice((b * Hkv + kvh) * Sk * D, Sk * D);
            var v = S<T>(tv).Slice((b * Hkv + kvh) * Sk * D, Sk * D);
            var p = S<T>(tp).Slice(((b * H + h) * Tq + t) * Sk, Sk);
            var o = S<T>(to).Slice(((b * H + h) * Tq + t) * D, D);
            int visible = causal ? Math.Min(Sk, t + Sk - Tq + 1) : Sk;
            var mask = tmask is null ? Span<T>.Empty : S<T>(tmask).Slice(b * Sk, Sk);
            for (int s = 0; s < visible; s++)
            {
                T score = TensorPrimitives.Dot<T>(q, k.Slice(s * D, D)) * scale;
                p[s] = tmask is null ? score : score + mask[s];
            }
            if (visible > 0) SoftmaxRow<T>(p[..visible], p[..visible]);
            p[visible..].Clear();
            o.Clear();
            for (int s = 0; s < visible; s++) TensorPrimitives.MultiplyAdd(v.Slice(s * D, D), p[s], o, o);
        });
    }

    public void AttentionBackward(Tensor q, Tensor k, Tensor v, Tensor probs, Tensor dO, double scale, Tensor? dq, Tensor? dk, Tensor? dv)
    {
        if (IsF64(q)) AttentionBackward<double>(q, k, v, probs, dO, scale, dq, dk, dv);
        else if (SimpleAttention) AttentionBackward<float>(q, k, v, probs, dO, scale, dq, dk, dv);
        else AttentionBackwardF32(q, k, v, probs, dO, (float)scale, dq, dk, dv);
    }

    // With P the probabilities: dV += Pᵀ·dO; dP = dO·Vᵀ; dS = P ⊙ (dP − rowsum(P ⊙ dP));
    // dQ += scale·dS·K; dK += scale·dSᵀ·Q. One work item per (batch, kv head): the query heads
    // of a group write the same dK and dV, so they run in turn inside the item.
    internal static void AttentionBackward<T>(Tensor tq, Tensor tk, Tensor tv, Tensor tp, Tensor tdo, double scaleD, Tensor? tdq, Tensor? tdk, Tensor? tdv)
        where T : unmanaged, IFloatingPointIeee754<T>
    {
        int B = tq.Dim(0), H = tq.Dim(1), Tq = tq.Dim(2), D = tq.Dim(3), Hkv = tk.Dim(1), Sk = tk.Dim(2);
        int group = H / Hkv;
        T scale = T.CreateTruncating(scaleD);
        For((long)B * Hkv, (long)group * Tq * Sk * D, item =>
        {
            int b = item / Hkv, kvh = item % Hkv;
            var k = S<T>(tk).Slice((b * Hkv + kvh) * Sk * D, Sk * D);
            var v = S<T>(tv).Slice((b * Hkv + kvh) * Sk * D, Sk * D);
            var dk = tdk is null ? Span<T>.Empty : S<T>(tdk).Slice((b * Hkv + kvh) * Sk * D, Sk * D);
            var dv = tdv is null ? Span<T>.Empty : S<T>(tdv).Slice((b * Hkv + kvh) * Sk * D, Sk * D);
            Span<T> ds = Sk <= 2048 ? stackalloc T[Sk] : new T[Sk];
            for (int h = kvh * group; h < (kvh + 1) * group; h++)
            {
                for (int t = 0; t < Tq; t++)
                {
                    int row = (b * H + h) * Tq + t;
                    var q = S<T>(tq).Slice(row * D, D);
                    var dO = S<T>(tdo).Slice(row * D, D);
                    var p = S<T>(tp).Slice(row * Sk, Sk);
                    T dot = T.Zero;
                    for (int s = 0; s < Sk; s++)
                    {
                        if (p[s] == T.Zero) { ds[s] = T.Zero; continue; }
                        ds[s] = TensorPrimitives.Dot<T>(dO, v.Slice(s * D, D));
                        dot += p[s] * ds[s];
                    }
                    for (int s = 0; s < Sk; s++)
                    {
                        if (p[s] == T.Zero) continue;
                        if (tdv is not null) TensorPrimitives.MultiplyAdd(dO, p[s], dv.Slice(s * D, D), dv.Slice(s * D, D));
                        T g = p[s] * (ds[s] - dot) * scale;
                        if (tdq is not null)
                        {
                            var dq = S<T>(tdq).Slice(row * D, D);
                            TensorPrimitives.MultiplyAdd(k.Slice(s * D, D), g, dq, dq);
                        }
                        if (tdk is not null) TensorPrimitives.MultiplyAdd(q, g, dk.Slice(s * D, D), dk.Slice(s * D, D));
                    }
                }
            }
        });
    }

    public void Rope(Tensor x, Tensor cos, Tensor sin, Tensor y, bool transpose)
    {
        if (IsF64(x)) Rope<double>(x, cos, sin, y, transpose); else Rope<float>(x, cos, sin, y, transpose);
    }

    // Forward, per pair (j, j + D/2): y₁ = x₁c₁ − x₂s₁, y₂ = x₂c₂ + x₁s₂.
    // Transpose (backward): x₁ += y₁c₁ + y₂s₂, x₂ += y₂c₂ − y₁s₁.
    private static void Rope<T>(Tensor tx, Tensor tcos, Tensor tsin, Tensor ty, bool transpose) where T : unmanaged, IFloatingPointIeee754<T>
    {
        int B = tx.Dim(0), H = tx.Dim(1), Tn = tx.Dim(2), D = tx.Dim(3), half = D / 2;
        bool perBatch = tcos.Rank == 3;
        For((long)B * H * Tn, D, item =>
        {
            int t = item % Tn, b = item / Tn / H;
            var x = S<T>(tx).Slice(item * D, D); var y = S<T>(ty).Slice(item * D, D);
            int tab = ((perBatch ? b * Tn : 0) + t) * D;
            var c = S<T>(tcos).Slice(tab, D); var s = S<T>(tsin).Slice(tab, D);
            for (int j = 0; j < half; j++)
            {
                T x1 = x[j], x2 = x[j + half];
                if (transpose)
                {
                    y[j] += x1 * c[j] + x2 * s[j + half];
                    y[j + half] += x2 * c[j + half] - x1 * s[j];
                }
                else
                {
                    y[j] = x1 * c[j] - x2 * s[j];
                    y[j + half] = x2 * c[j + half] + x1 * s[j + half];
                }
            }
        });
    }
}
