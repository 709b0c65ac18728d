using System.Buffers;

namespace Engine.Backend;

// Float32 attention as small matrix products in the GEMM's 4×16 micro-kernel (CpuBackend.Gemm32.cs),
// fused per head: one work item computes all of a head's products and its softmax on one thread,
// with its operands packed into pooled scratch, so there is no parallel loop or call per query row.
// The simple kernel (CpuBackend.Attention.cs) stays for float64, serves as the reference in the
// tests, and is selected for float32 too with ENGINE_ATTENTION=simple (side-by-side timing).
//
// Not flash attention: IBackend.Attention's contract writes the probabilities [B, H, T, S] and
// AttentionBackward reads them (the CUDA backend does the same), so the forward still fills a
// T×S matrix per head. Forward, per (b, h): P = scale·Q·Kᵀ (+ mask), masked softmax per row
// (causal keys past t + S − T get exactly 0), O = P·V.
// Backward, per (b, kv head), the group's query heads in turn (they write the same dK, dV):
// dP = dO·Vᵀ; dS = scale·P ⊙ (dP − rowsum(P ⊙ dP)); dQ += dS·K; dK += dSᵀ·Q; dV += Pᵀ·dO.
// Each item writes only its own outputs and sums in a fixed order, so results are bitwise the
// same for any thread count.
public sealed partial class CpuBackend
{
    /// <summary>ENGINE_ATTENTION=simple selects the simple kernel for float32 too.</summary>
    private static readonly bool SimpleAttention = Environment.GetEnvironmentVariable("ENGINE_ATTENTION") == "simple";

    private static unsafe void AttentionF32(Tensor tq, Tensor tk, Tensor tv, Tensor? tmask, bool causal, float scale, Tensor to, Tensor tp)
    {
        int B = tq.Dim(0), H = tq.Dim(1), Tq = tq.Dim(2), D = tq.Dim(3), Hkv = tk.Dim(1), Sk = tk.Dim(2);
        int group = H / Hkv;
        fixed (float* pq = S<float>(tq), pk = S<float>(tk), pv = S<float>(tv), po = S<float>(to), pp = S<float>(tp), pm = S<float>(tmask, true))
        {
            float* Q0 = pq, K0 = pk, V0 = pv, O0 = po, P0 = pp, M0 = pm;
            For((long)B * H, (long)Tq * Sk * D, item =>
            {
                int b = item / H, h = item % H, kvh = h / group;
                float* q = Q0 + (long)item * Tq * D, o = O0 + (long)item * Tq * D, p = P0 + (long)item * Tq * Sk;
                float* k = K0 + (long)(b * Hkv + kvh) * Sk * D, v = V0 + (long)(b * Hkv + kvh) * Sk * D;
                var pool = ArrayPool<float>.Shared;
                float[] kPanels = pool.Rent(Panels(Sk) * D), vPanels = pool.Rent(Panels(D) * Sk);
                try
                {
                    fixed (float* kp = kPanels, vp = vPanels)
                    {
                        // P = scale · Q [Tq, D] · Kᵀ [D, Sk]
                        PackAll(k, trans: true, D, Sk, kp);
                        new Span<float>(p, Tq * Sk).Clear();
                        MultiplyRows(q, kp, p, 0, Tq, Sk, D, scale);
                        for (int t = 0; t < Tq; t++)
                        {
                            var row = new Span<float>(p + (long)t * Sk, Sk);
                            int visible = causal ? Math.Min(Sk, t + Sk - Tq + 1) : Sk;
                            if (M0 != null) System.Numerics.Tensors.TensorPrimitives.Add(row[..visible], new ReadOnlySpan<float>(M0 + (long)b * Sk, visible), row[..visible]);
                            if (visible > 0) SoftmaxRow<float>(row[..visible], row[..visible]);
                            row[visible..].Clear();
                        }
                        // O = P [Tq, Sk] · V [Sk, D]
                        PackAll(v, trans: false, Sk, D, vp);
                        new Span<float>(o, Tq * D).Clear();
                        MultiplyRows(p, vp, o, 0, Tq, D, Sk, 1f);
                    }
                }
                finally
                {
                    pool.Return(kPanels);
                    pool.Return(vPanels);
                }
            });
        }
    }

    private static unsafe void AttentionBackwardF32(Tensor tq, Tensor tk, Tensor tv, Tensor tp, Tensor tdo, float scale, Tensor? tdq, Tensor? tdk, Tensor? tdv)
    {
        int B = tq.Dim(0), H = tq.Dim(1), Tq = tq.Dim(2), D = tq.Dim(3), Hkv = tk.Dim(1), Sk = tk.Dim(2);
        int group = H / Hkv;
        fixed (float* pq = S<float>(tq), pk = S<float>(tk), pv = S<float>(tv), pp = S<float>(tp), pdo = S<float>(tdo),
                      pdq = S<float>(tdq, true), pdk = S<float>(tdk, true), pdv = S<float>(tdv, true))
        {
            float* Q0 = pq, K0 = pk, V0 = pv, P0 = pp, DO0 = pdo, DQ0 = pdq, DK0 = pdk, DV0 = pdv;
            For((long)B * Hkv, (long)group * Tq * Sk * D, item =>
            {
                int b = item / Hkv;
                float* k = K0 + (long)item * Sk * D, v = V0 + (long)item * Sk * D;
                var pool = ArrayPool<float>.Shared;
                int tqPanels = Panels(D) * Tq;
                float[] scratch = pool.Rent(Panels(Sk) * D + Panels(D) * Sk + 2 * Tq * Sk + tqPanels);
                try
                {
                    fixed (float* sp = scratch)
                    {
                        float* vtPanels = sp;                           // Vᵀ [D, Sk], for dP = dO·Vᵀ
                        float* kPanels = vtPanels + Panels(Sk) * D;     // K [Sk, D], for dQ = dS·K
                        float* ds = kPanels + Panels(D) * Sk;           // dP, then dS [Tq, Sk]
                        float* tr = ds + Tq * Sk;                       // dSᵀ or Pᵀ [Sk, Tq]
                        float* rhs = tr + Tq * Sk;                      // Q or dO [Tq, D], packed
                        PackAll(v, trans: true, D, Sk, vtPanels);
                        if (DQ0 != null) PackAll(k, trans: false, Sk, D, kPanels);
                        for (int h = (item % Hkv) * group; h < (item % Hkv + 1) * group; h++)
                        {
                            long head = (long)b * H + h;
                            float* q = Q0 + head * Tq * D, dO = DO0 + head * Tq * D, p = P0 + head * Tq * Sk;
                            if (DV0 != null)
                            {
                                TransposeRows(p, tr, Tq, Sk, 0, Tq);
                                PackAll(dO, trans: false, Tq, D, rhs);
                                MultiplyRows(tr, rhs, DV0 + (long)item * Sk * D, 0, Sk, D, Tq, 1f);
                            }
                            if (DQ0 == null && DK0 == null) continue;
                            new Span<float>(ds, Tq * Sk).Clear();
                            MultiplyRows(dO, vtPanels, ds, 0, Tq, Sk, D, 1f);
                            for (int t = 0; t < Tq; t++) SoftmaxGradRow(new ReadOnlySpan<float>(p + (long)t * Sk, Sk), new Span<float>(ds + (long)t * Sk, Sk), scale);
                            if (DQ0 != null) MultiplyRows(ds, kPanels, DQ0 + head * Tq * D, 0, Tq, D, Sk, 1f);
                            if (DK0 != null)
                            {
                                TransposeRows(ds, tr, Tq, Sk, 0, Tq);
                                PackAll(q, trans: false, Tq, D, rhs);
                                MultiplyRows(tr, rhs, DK0 + (long)item * Sk * D, 0, Sk, D, Tq, 1f);
                            }
                        }
                    }
                }
                finally
                {
                    pool.Return(scratch);
                }
            });
        }
    }

    /// <summary>dP → dS in place: dS = scale · P ⊙ (dP − Σ P ⊙ dP), exactly 0 where P is 0.</summary>
    private static void SoftmaxGradRow(ReadOnlySpan<float> p, Span<float> d, float scale)
    {
        float dot = System.Numerics.Tensors.TensorPrimitives.Dot(p, d);
        for (int s = 0; s < p.Length; s++) d[s] = p[s] == 0f ? 0f : p[s] * (d[s] - dot) * scale;
    }

    /// <summary>Floats per packed op(B) row of n columns (whole panels of 16).</summary>
    private static int Panels(int n) => (n + 15) / 16 * 16;

    /// <summary>All panels of op(B) [k, n] on one thread (see <see cref="PackPanels"/>).</summary>
    private static unsafe void PackAll(float* b, bool trans, int k, int n, float* dst)
    {
        for (int q = 0; q < (n + 15) / 16; q++) PackPanel(b, trans, k, n, q, dst);
    }
}
