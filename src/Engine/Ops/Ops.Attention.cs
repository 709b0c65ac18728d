using Engine.Autograd;

namespace Engine;

public static partial class Ops
{
    /// <summary>
    /// Scaled dot-product attention: softmax(q·kᵀ·scale + mask) · v.
    /// q [B, H, T, D]; k, v [B, Hkv, S, D] with H a multiple of Hkv (grouped-query attention:
    /// query head h reads kv head h / (H / Hkv)); mask: null or additive [B, S] over the keys
    /// (0 to keep, a large negative number to drop a padded key); causal: query t sees keys
    /// s ≤ t + S − T (so prefix keys before the sequence are always visible). scale defaults to
    /// 1/√D. Returns [B, H, T, D].
    /// </summary>
    public static Tensor Attention(Tensor q, Tensor k, Tensor v, Tensor? mask = null, bool causal = false, double? scale = null)
    {
        Same("attention", q, k, v, mask);
        if (q.Rank != 4 || k.Rank != 4 || !Shape.Equal(k.Shape, v.Shape) || k.Dim(0) != q.Dim(0) || k.Dim(3) != q.Dim(3)
            || k.Dim(1) == 0 || q.Dim(1) % k.Dim(1) != 0)
            throw new EngineException($"attention: needs q [B, H, T, D] and k, v [B, Hkv, S, D] with H a multiple of Hkv; got {F(q.Shape)}, {F(k.Shape)}, {F(v.Shape)}");
        if (mask is not null && (mask.Rank != 2 || mask.Dim(0) != q.Dim(0) || mask.Dim(1) != k.Dim(2)))
            throw new EngineException($"attention: the mask must be [B, S] = [{q.Dim(0)}, {k.Dim(2)}], got {F(mask.Shape)}");
        if (causal && k.Dim(2) < q.Dim(2))
            throw new EngineException($"attention: causal attention needs at least as many keys ({k.Dim(2)}) as queries ({q.Dim(2)})");
        double sc = scale ?? 1.0 / Math.Sqrt(q.Dim(3));
        var o = Like(q);
        var probs = New([q.Dim(0), q.Dim(1), q.Dim(2), k.Dim(2)], q);
        q.Backend.Attention(q, k, v, mask, causal, sc, o, probs);
        return Tape.Record("attention", o, [q, k, v],
            dO => q.Backend.AttentionBackward(q, k, v, probs, dO, sc, GradIf(q), GradIf(k), GradIf(v)));
    }

    /// <summary>
    /// Rotary position embedding, the rotate-half convention of Hugging Face Llama:
    /// y = x·cos + rotate_half(x)·sin, rotate_half(x) = [−x[D/2:], x[:D/2]].
    /// x [B, H, T, D]; cos, sin [T, D] or [B, T, D] (see <see cref="RopeTables"/>).
    /// </summary>
    public static Tensor Rope(Tensor x, Tensor cos, Tensor sin)
    {
        Same("rope", x, cos, sin);
        bool ok = x.Rank == 4 && x.Dim(3) % 2 == 0 && Shape.Equal(cos.Shape, sin.Shape)
                  && (cos.Rank == 2 && cos.Dim(0) == x.Dim(2) && cos.Dim(1) == x.Dim(3)
                      || cos.Rank == 3 && cos.Dim(0) == x.Dim(0) && cos.Dim(1) == x.Dim(2) && cos.Dim(2) == x.Dim(3));
        if (!ok)
            throw new EngineException($"rope: needs x [B, H, T, D] (D even) and cos, sin [T, D] or [B, T, D]; got {F(x.Shape)}, {F(cos.Shape)}, {F(sin.Shape)}");
        var y = Like(x);
        x.Backend.Rope(x, cos, sin, y, transpose: false);
        return Tape.Record("rope", y, [x], dy => x.Backend.Rope(dy, cos, sin, Tape.GradOf(x), transpose: true));
    }

    /// <summary>
    /// cos and sin tables [T, D] for positions 0..T−1, as Hugging Face builds them:
    /// inv_freq[i] = 1 / theta^(2i/D), angles = position · inv_freq, emb = [angles, angles].
    /// <paramref name="invFreq"/> overrides the frequencies (rope scaling variants compute their own);
    /// the tables are computed on the host and put on <paramref name="device"/> (default the CPU).
    /// </summary>
    public static (Tensor Cos, Tensor Sin) RopeTables(int length, int headDim, double theta = 10000.0, DType dtype = DType.F32, double[]? invFreq = null, Device? device = null)
    {
        int half = headDim / 2;
        invFreq ??= Enumerable.Range(0, half).Select(i => 1.0 / Math.Pow(theta, 2.0 * i / headDim)).ToArray();
        var cos = new double[length * headDim];
        var sin = new double[length * headDim];
        for (int t = 0; t < length; t++)
            for (int i = 0; i < half; i++)
            {
                double a = t * invFreq[i];
                cos[t * headDim + i] = cos[t * headDim + i + half] = Math.Cos(a);
                sin[t * headDim + i] = sin[t * headDim + i + half] = Math.Sin(a);
            }
        var on = device ?? Device.Cpu;
        return (Tensor.FromDoubles(cos, [length, headDim], dtype).To(on), Tensor.FromDoubles(sin, [length, headDim], dtype).To(on));
    }

    // ------------------------------------------------------------- losses

    /// <summary>Mean cross-entropy of logits [N, C] against targets [N] (I32); rows whose target
    /// is <paramref name="ignoreIndex"/> count for nothing. Returns a scalar.</summary>
    public static Tensor CrossEntropy(Tensor logits, Tensor targets, int ignoreIndex = -100)
    {
        Same("cross_entropy", logits);
        Indices("cross_entropy", targets, logits);
        if (logits.Rank != 2 || targets.Rank != 1 || targets.Dim(0) != logits.Dim(0))
            throw new EngineException($"cross_entropy: needs logits [N, C] and targets [N], got {F(logits.Shape)} and {F(targets.Shape)}");
        var loss = ScalarLike(logits);
        var lse = New([logits.Dim(0)], logits);
        logits.Backend.CrossEntropy(logits, targets, ignoreIndex, loss, lse);
        return Tape.Record("cross_entropy", loss, [logits],
            dl =>
            {
                // A language model's logits gradient is the step's largest tensor: written, not added to zeros.
                var dlogits = Tape.GradToWrite(logits, out bool accumulate);
                logits.Backend.CrossEntropyBackward(logits, targets, ignoreIndex, lse, dl, dlogits, accumulate);
            });
    }

    /// <summary>Mean squared error (regression); the target gets no gradient.</summary>
    public static Tensor Mse(Tensor pred, Tensor target)
    {
        Same("mse", pred, target);
        if (pred.Numel != target.Numel || pred.Numel == 0)
            throw new EngineException($"mse: prediction {F(pred.Shape)} and target {F(target.Shape)} differ in size");
        var loss = ScalarLike(pred);
        pred.Backend.Mse(pred, target, loss);
        return Tape.Record("mse", loss, [pred], dl => pred.Backend.MseBackward(pred, target, dl, Tape.GradOf(pred)));
    }

    /// <summary>Mean binary cross-entropy on logits (multi-label); targets in [0, 1] get no gradient.</summary>
    public static Tensor BceWithLogits(Tensor logits, Tensor targets)
    {
        Same("bce_with_logits", logits, targets);
        if (!Shape.Equal(logits.Shape, targets.Shape) || logits.Numel == 0)
            throw new EngineException($"bce_with_logits: logits {F(logits.Shape)} and targets {F(targets.Shape)} differ");
        var loss = ScalarLike(logits);
        logits.Backend.BceWithLogits(logits, targets, loss);
        return Tape.Record("bce_with_logits", loss, [logits],
            dl => logits.Backend.BceWithLogitsBackward(logits, targets, dl, Tape.GradOf(logits)));
    }
}
