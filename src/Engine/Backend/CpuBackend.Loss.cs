using System.Numerics;
using System.Numerics.Tensors;
using System.Runtime.InteropServices;
using System.Runtime.Intrinsics;

namespace Engine.Backend;

// Losses (mean-reduced scalars) and the optimizer updates.
public sealed partial class CpuBackend
{
    public void CrossEntropy(Tensor logits, Tensor targets, int ignoreIndex, Tensor loss, Tensor lse)
    {
        if (IsF64(logits)) CrossEntropy<double>(logits, targets, ignoreIndex, loss, lse);
        else CrossEntropy<float>(logits, targets, ignoreIndex, loss, lse);
    }

    private static void CrossEntropy<T>(Tensor tlogits, Tensor ttargets, int ignoreIndex, Tensor tloss, Tensor tlse) where T : unmanaged, IFloatingPointIeee754<T>
    {
        int c = tlogits.Dim(-1);
        int rows = ttargets.Dim(0);
        var tg0 = S<int>(ttargets);
        for (int r = 0; r < rows; r++)
            if (tg0[r] != ignoreIndex && (uint)tg0[r] >= (uint)c) throw new EngineException($"cross_entropy: target {tg0[r]} in row {r} is outside 0..{c - 1}");
        // Log-sum-exp per row, rows in parallel: float32 in one fused exp-and-sum pass, float64
        // through TensorPrimitives' exp over a pooled scratch row.
        For(rows, c, r =>
        {
            var row = S<T>(tlogits).Slice(r * c, c);
            if (typeof(T) == typeof(float) && Vector256.IsHardwareAccelerated)
            {
                var rf = MemoryMarshal.Cast<T, float>(row);
                float m = TensorPrimitives.Max(rf);
                S<T>(tlse)[r] = T.CreateTruncating(m + MathF.Log(SumExpF32(rf, m)));
                return;
            }
            var scratch = System.Buffers.ArrayPool<T>.Shared.Rent(c);
            var e = scratch.AsSpan(0, c);
            T max = TensorPrimitives.Max<T>(row);
            TensorPrimitives.Subtract(row, max, e);
            TensorPrimitives.Exp(e, e);
            S<T>(tlse)[r] = max + T.Log(TensorPrimitives.Sum<T>(e));
            System.Buffers.ArrayPool<T>.Shared.Return(scratch);
        });
        // The mean over the rows that count, summed in row order.
        var x = S<T>(tlogits); var tg = S<int>(ttargets); var lse = S<T>(tlse);
        T total = T.Zero;
        int count = 0;
        for (int r = 0; r < rows; r++)
        {
            if (tg[r] == ignoreIndex) continue;
            total += lse[r] - x[r * c + tg[r]];
            count++;
        }
        // All rows ignored: the mean over no rows is NaN, as in PyTorch.
        S<T>(tloss)[0] = count == 0 ? T.NaN : total / T.CreateTruncating(count);
    }

    public void CrossEntropyBackward(Tensor logits, Tensor targets, int ignoreIndex, Tensor lse, Tensor dloss, Tensor dlogits, bool accumulate)
    {
        if (IsF64(logits)) CrossEntropyBackward<double>(logits, targets, ignoreIndex, lse, dloss, dlogits, accumulate);
        else CrossEntropyBackward<float>(logits, targets, ignoreIndex, lse, dloss, dlogits, accumulate);
    }

    // d/dx_j = (softmax_j − [j = target]) · dloss / count, for rows that are not ignored (added to
    // dx, or written with ignored rows 0 when not accumulating).
    private static void CrossEntropyBackward<T>(Tensor tlogits, Tensor ttargets, int ignoreIndex, Tensor tlse, Tensor tdloss, Tensor tdlogits, bool accumulate)
        where T : unmanaged, IFloatingPointIeee754<T>
    {
        int c = tlogits.Dim(-1);
        var tg0 = S<int>(ttargets);
        int count = 0;
        foreach (var t in tg0) if (t != ignoreIndex) count++;
        if (count == 0)
        {
            if (!accumulate) S<T>(tdlogits).Clear();
            return;
        }
        T g = S<T>(tdloss)[0] / T.CreateTruncating(count);
        For(tg0.Length, c, r =>
        {
            int target = S<int>(ttargets)[r];
            var dx = S<T>(tdlogits).Slice(r * c, c);
            if (target == ignoreIndex)
            {
                if (!accumulate) dx.Clear();
                return;
            }
            var row = S<T>(tlogits).Slice(r * c, c);
            if (typeof(T) == typeof(float) && Vector256.IsHardwareAccelerated)
            {
                ScaledExpF32(MemoryMarshal.Cast<T, float>(row), float.CreateTruncating(S<T>(tlse)[r]), float.CreateTruncating(g), MemoryMarshal.Cast<T, float>(dx), accumulate);
                dx[target] -= g;
                return;
            }
            var scratch = System.Buffers.ArrayPool<T>.Shared.Rent(c);
            var p = scratch.AsSpan(0, c);
            TensorPrimitives.Subtract(row, S<T>(tlse)[r], p);
            TensorPrimitives.Exp(p, p);
            if (accumulate) TensorPrimitives.MultiplyAdd(p, g, dx, dx);
            else TensorPrimitives.Multiply(p, g, dx);
            dx[target] -= g;
            System.Buffers.ArrayPool<T>.Shared.Return(scratch);
        });
    }

    /// <summary>Σ e^(x − shift) over a float32 row (<see cref="ExpF32"/>, 16 lanes then 8; the sum's
    /// order is fixed by the row length alone).</summary>
    private static float SumExpF32(ReadOnlySpan<float> x, float shift)
    {
        int i = 0;
        float s = 0;
        ref float rx = ref MemoryMarshal.GetReference(x);
        if (Vector512.IsHardwareAccelerated && x.Length >= 16)
        {
            var acc16 = Vector512<float>.Zero; var m16 = Vector512.Create(shift);
            for (; i <= x.Length - 16; i += 16) acc16 += ExpF32x16(Vector512.LoadUnsafe(ref rx, (nuint)i) - m16);
            s = Vector512.Sum(acc16);
        }
        var acc = Vector256<float>.Zero; var m = Vector256.Create(shift);
        for (; i <= x.Length - 8; i += 8) acc += ExpF32(Vector256.LoadUnsafe(ref rx, (nuint)i) - m);
        s += Vector256.Sum(acc);
        for (; i < x.Length; i++) s += MathF.Exp(x[i] - shift);
        return s;
    }

    /// <summary>dx += g · e^(x − shift) over a float32 row, one pass; dx = g · e^(x − shift) when not
    /// <paramref name="add"/>ing (the same bits as adding to +0).</summary>
    private static void ScaledExpF32(ReadOnlySpan<float> x, float shift, float g, Span<float> dx, bool add)
    {
        int i = 0;
        ref float rx = ref MemoryMarshal.GetReference(x); ref float rdx = ref MemoryMarshal.GetReference(dx);
        if (Vector512.IsHardwareAccelerated)
        {
            var m16 = Vector512.Create(shift); var g16 = Vector512.Create(g);
            for (; i <= x.Length - 16; i += 16)
            {
                var e = ExpF32x16(Vector512.LoadUnsafe(ref rx, (nuint)i) - m16);
                (add ? Vector512.FusedMultiplyAdd(e, g16, Vector512.LoadUnsafe(ref rdx, (nuint)i)) : e * g16).StoreUnsafe(ref rdx, (nuint)i);
            }
        }
        var m = Vector256.Create(shift); var gv = Vector256.Create(g);
        for (; i <= x.Length - 8; i += 8)
        {
            var e = ExpF32(Vector256.LoadUnsafe(ref rx, (nuint)i) - m);
            (add ? Vector256.FusedMultiplyAdd(e, gv, Vector256.LoadUnsafe(ref rdx, (nuint)i)) : e * gv).StoreUnsafe(ref rdx, (nuint)i);
        }
        for (; i < x.Length; i++) dx[i] = (add ? dx[i] : 0f) + g * MathF.Exp(x[i] - shift);
    }

    public void Mse(Tensor pred, Tensor target, Tensor loss)
    {
        if (IsF64(pred)) S<double>(loss)[0] = Mse<double>(pred, target); else S<float>(loss)[0] = Mse<float>(pred, target);
    }

    private static T Mse<T>(Tensor tp, Tensor tt) where T : unmanaged, IFloatingPointIeee754<T>
    {
        var p = S<T>(tp); var t = S<T>(tt);
        T s = T.Zero;
        for (int i = 0; i < p.Length; i++) { T d = p[i] - t[i]; s += d * d; }
        return s / T.CreateTruncating(p.Length);
    }

    public void MseBackward(Tensor pred, Tensor target, Tensor dloss, Tensor dpred)
    {
        if (IsF64(pred)) MseBackward<double>(pred, target, dloss, dpred); else MseBackward<float>(pred, target, dloss, dpred);
    }

    private static void MseBackward<T>(Tensor tp, Tensor tt, Tensor tdl, Tensor tdp) where T : unmanaged, IFloatingPointIeee754<T>
    {
        var p = S<T>(tp); var t = S<T>(tt); var dp = S<T>(tdp);
        T g = T.CreateTruncating(2) * S<T>(tdl)[0] / T.CreateTruncating(p.Length);
        for (int i = 0; i < p.Length; i++) dp[i] += g * (p[i] - t[i]);
    }

    public void BceWithLogits(Tensor logits, Tensor targets, Tensor loss)
    {
        if (IsF64(logits)) S<double>(loss)[0] = Bce<double>(logits, targets); else S<float>(loss)[0] = Bce<float>(logits, targets);
    }

    private static T Bce<T>(Tensor tx, Tensor ty) where T : unmanaged, IFloatingPointIeee754<T>
    {
        var x = S<T>(tx); var y = S<T>(ty);
        T s = T.Zero;
        for (int i = 0; i < x.Length; i++)
            s += T.Max(x[i], T.Zero) - x[i] * y[i] + T.LogP1(T.Exp(-T.Abs(x[i])));
        return s / T.CreateTruncating(x.Length);
    }

    public void BceWithLogitsBackward(Tensor logits, Tensor targets, Tensor dloss, Tensor dlogits)
    {
        if (IsF64(logits)) BceBackward<double>(logits, targets, dloss, dlogits); else BceBackward<float>(logits, targets, dloss, dlogits);
    }

    // d/dx = (σ(x) − y) · dloss / n
    private static void BceBackward<T>(Tensor tx, Tensor ty, Tensor tdl, Tensor tdx) where T : unmanaged, IFloatingPointIeee754<T>
    {
        var x = S<T>(tx); var y = S<T>(ty); var dx = S<T>(tdx);
        T g = S<T>(tdl)[0] / T.CreateTruncating(x.Length);
        for (int i = 0; i < x.Length; i++) dx[i] += g * (T.One / (T.One + T.Exp(-x[i])) - y[i]);
    }

    // ------------------------------------------------------------- optimizers

    public void AdamW(Tensor p, Tensor g, Tensor m, Tensor v, double lr, double beta1, double beta2, double eps, double weightDecay, int step)
    {
        if (IsF64(p)) AdamW<double>(p, g, m, v, lr, beta1, beta2, eps, weightDecay, step);
        else AdamW<float>(p, g, m, v, lr, beta1, beta2, eps, weightDecay, step);
    }

    private static void AdamW<T>(Tensor tp, Tensor tg, Tensor tm, Tensor tv, double lr, double beta1, double beta2, double eps, double wd, int step)
        where T : unmanaged, IFloatingPointIeee754<T>
    {
        double bc1 = 1 - Math.Pow(beta1, step), bc2 = 1 - Math.Pow(beta2, step);
        T b1 = T.CreateTruncating(beta1), b2 = T.CreateTruncating(beta2);
        T decay = T.CreateTruncating(1 - lr * wd), stepSize = T.CreateTruncating(lr / bc1);
        T sqrtBc2 = T.CreateTruncating(Math.Sqrt(bc2)), e = T.CreateTruncating(eps);
        // Elementwise, so chunks run in parallel; the vector loop does the scalar loop's operations in
        // the same order (IEEE +, −, ×, ÷ and √ per lane, no fused multiply-add), so both give the same bits.
        Chunks(tp.Numel, (start, count) =>
        {
            var p = S<T>(tp).Slice(start, count); var g = S<T>(tg).Slice(start, count);
            var m = S<T>(tm).Slice(start, count); var v = S<T>(tv).Slice(start, count);
            int i = 0;
            if (Vector256.IsHardwareAccelerated && Vector256<T>.IsSupported)
            {
                int w = Vector256<T>.Count;
                var vb1 = Vector256.Create(b1); var vb2 = Vector256.Create(b2);
                var c1 = Vector256.Create(T.One - b1); var c2 = Vector256.Create(T.One - b2);
                var vd = Vector256.Create(decay); var vs = Vector256.Create(stepSize);
                var vq = Vector256.Create(sqrtBc2); var ve = Vector256.Create(e);
                for (; i + w <= count; i += w)
                {
                    var gi = Vector256.Create<T>(g.Slice(i, w));
                    var pi = Vector256.Create<T>(p.Slice(i, w)) * vd;
                    var mi = vb1 * Vector256.Create<T>(m.Slice(i, w)) + c1 * gi;
                    var vi = vb2 * Vector256.Create<T>(v.Slice(i, w)) + c2 * gi * gi;
                    pi -= vs * mi / (Vector256.Sqrt(vi) / vq + ve);
                    pi.CopyTo(p.Slice(i, w)); mi.CopyTo(m.Slice(i, w)); vi.CopyTo(v.Slice(i, w));
                }
            }
            for (; i < count; i++)
            {
                p[i] *= decay;
                m[i] = b1 * m[i] + (T.One - b1) * g[i];
                v[i] = b2 * v[i] + (T.One - b2) * g[i] * g[i];
                p[i] -= stepSize * m[i] / (T.Sqrt(v[i]) / sqrtBc2 + e);
            }
        });
    }

    public void Sgd(Tensor p, Tensor g, Tensor? buf, double lr, double momentum, double dampening, double weightDecay, bool nesterov, bool firstStep)
    {
        if (IsF64(p)) Sgd<double>(p, g, buf, lr, momentum, dampening, weightDecay, nesterov, firstStep);
        else Sgd<float>(p, g, buf, lr, momentum, dampening, weightDecay, nesterov, firstStep);
    }

    private static void Sgd<T>(Tensor tp, Tensor tg, Tensor? tbuf, double lr, double momentum, double dampening, double wd, bool nesterov, bool first)
        where T : unmanaged, IFloatingPointIeee754<T>
    {
        var p = S<T>(tp); var g = S<T>(tg); var buf = S<T>(tbuf, true);
        T mu = T.CreateTruncating(momentum), damp = T.CreateTruncating(1 - dampening), w = T.CreateTruncating(wd), rate = T.CreateTruncating(lr);
        for (int i = 0; i < p.Length; i++)
        {
            T d = g[i] + w * p[i];
            if (tbuf is not null)
            {
                buf[i] = first ? d : mu * buf[i] + damp * d;
                d = nesterov ? d + mu * buf[i] : buf[i];
            }
            p[i] -= rate * d;
        }
    }
}
