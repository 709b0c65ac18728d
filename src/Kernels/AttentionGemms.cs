namespace Engine.Kernels;

/// <summary>One batched product C = alpha·op(A)·op(B) + beta·C in <see cref="Engine.Backend.IBackend.Gemm"/>'s
/// terms (contiguous row-major matrices; matrix i of an operand at offset i·stride).</summary>
public readonly record struct GemmSpec(long StrideA, bool TransA, long StrideB, bool TransB, long StrideC,
                                       int Batch, int M, int N, int K, double Alpha, double Beta);

/// <summary>
/// Scaled dot-product attention as batched GEMMs, the way the CUDA backend runs it (cuBLAS for
/// the products, two small kernels for the masked softmax and its backward). q [B, H, T, D] and
/// k, v [B, Hkv, S, D]: the query heads h = g·group … g·group + group − 1 of kv head g are
/// consecutive in q, so for each (b, g) they form one [group·T, D] matrix that multiplies that
/// kv head's [S, D] keys: B·Hkv products of M = group·T rows, no copies of k or v per query head.
/// The key and value gradients then sum over the group's heads inside the GEMM (its K dimension).
/// probs [B, H, T, S] and o [B, H, T, D] follow the same grouping.
/// </summary>
public static class AttentionGemms
{
    private static (int Batch, int M) Groups(int B, int H, int T, int Hkv) => (B * Hkv, H / Hkv * T);

    /// <summary>probs = scale · q·kᵀ (A q, B k, C probs), before the masked softmax.</summary>
    public static GemmSpec Scores(int B, int H, int T, int D, int Hkv, int S, double scale)
    {
        var (n, m) = Groups(B, H, T, Hkv);
        return new((long)m * D, false, (long)S * D, true, (long)m * S, n, m, S, D, scale, 0);
    }

    /// <summary>o = probs·v (A probs, B v, C o).</summary>
    public static GemmSpec Output(int B, int H, int T, int D, int Hkv, int S)
    {
        var (n, m) = Groups(B, H, T, Hkv);
        return new((long)m * S, false, (long)S * D, false, (long)m * D, n, m, D, S, 1, 0);
    }

    /// <summary>dP = dO·vᵀ (A dO, B v, C dP [B, H, T, S]).</summary>
    public static GemmSpec ProbabilityGradient(int B, int H, int T, int D, int Hkv, int S)
    {
        var (n, m) = Groups(B, H, T, Hkv);
        return new((long)m * D, false, (long)S * D, true, (long)m * S, n, m, S, D, 1, 0);
    }

    /// <summary>dq += scale · dS·k (A dS [B, H, T, S], B k, C dq), dS the softmax backward of dP.</summary>
    public static GemmSpec QueryGradient(int B, int H, int T, int D, int Hkv, int S, double scale)
    {
        var (n, m) = Groups(B, H, T, Hkv);
        return new((long)m * S, false, (long)S * D, false, (long)m * D, n, m, D, S, scale, 1);
    }

    /// <summary>dk += scale · dSᵀ·q (A dS, B q, C dk): the group's heads sum in the product.</summary>
    public static GemmSpec KeyGradient(int B, int H, int T, int D, int Hkv, int S, double scale)
    {
        var (n, m) = Groups(B, H, T, Hkv);
        return new((long)m * S, true, (long)m * D, false, (long)S * D, n, S, D, m, scale, 1);
    }

    /// <summary>dv += probsᵀ·dO (A probs, B dO, C dv).</summary>
    public static GemmSpec ValueGradient(int B, int H, int T, int D, int Hkv, int S)
    {
        var (n, m) = Groups(B, H, T, Hkv);
        return new((long)m * S, true, (long)m * D, false, (long)S * D, n, S, D, m, 1, 1);
    }
}
