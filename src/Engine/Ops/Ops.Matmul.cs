using Engine.Autograd;

namespace Engine;

public static partial class Ops
{
    /// <summary>
    /// Matrix product with transpose flags and batching: op(a) [..., M, K] · op(b) [..., K, N] →
    /// [..., M, N], where op(a) = aᵀ of the last two dims when transA (likewise b). b is either
    /// 2-D (shared by every matrix of the batch: a linear layer's weight) or has a's batch dims
    /// (attention's [B, H, T, D] products).
    /// </summary>
    public static Tensor MatMul(Tensor a, Tensor b, bool transA = false, bool transB = false)
    {
        Same("matmul", a, b);
        if (a.Rank < 2 || b.Rank < 2)
            throw new EngineException($"matmul: needs rank ≥ 2 operands, got {F(a.Shape)} and {F(b.Shape)}");
        int m = transA ? a.Dim(-1) : a.Dim(-2), ka = transA ? a.Dim(-2) : a.Dim(-1);
        int kb = transB ? b.Dim(-1) : b.Dim(-2), n = transB ? b.Dim(-2) : b.Dim(-1);
        bool shared = b.Rank == 2;
        var batchDims = a.ShapeArray[..^2];
        if (ka != kb || (!shared && !Shape.Equal(batchDims, b.ShapeArray[..^2])))
            throw new EngineException($"matmul: shapes {F(a.Shape)}{(transA ? "ᵀ" : "")} and {F(b.Shape)}{(transB ? "ᵀ" : "")} do not multiply");
        int k = ka;
        int batch = (int)Shape.Numel(batchDims);
        var c = New([.. batchDims, m, n], a);
        long sA = (long)m * k, sB = shared ? 0 : (long)k * n, sC = (long)m * n;
        // A shared b with an untransposed a: the whole batch is one tall matrix.
        bool flat = shared && !transA;
        var be = a.Backend;
        if (flat) be.Gemm(a, 0, 0, false, b, 0, 0, transB, c, 0, 0, 1, batch * m, n, k, 1, 0);
        else be.Gemm(a, 0, sA, transA, b, 0, sB, transB, c, 0, sC, batch, m, n, k, 1, 0);

        return Tape.Record("matmul", c, [a, b], dc =>
        {
            if (a.RequiresGrad)
            {
                var da = Tape.GradToWrite(a, out bool add);   // a first gradient is written (beta 0), not added
                double beta = add ? 1 : 0;
                if (transA) be.Gemm(b, 0, sB, transB, dc, 0, sC, true, da, 0, sA, batch, k, m, n, 1, beta);      // daᵀ = op(b)·dcᵀ
                else if (flat) be.Gemm(dc, 0, 0, false, b, 0, 0, !transB, da, 0, 0, 1, batch * m, k, n, 1, beta);  // da = dc·op(b)ᵀ
                else be.Gemm(dc, 0, sC, false, b, 0, sB, !transB, da, 0, sA, batch, m, k, n, 1, beta);
            }
            if (b.RequiresGrad)
            {
                var db = Tape.GradToWrite(b, out bool add);
                double beta = add ? 1 : 0;
                long sdb = shared ? 0 : sB;
                if (flat)
                {
                    if (transB) be.Gemm(dc, 0, 0, true, a, 0, 0, false, db, 0, 0, 1, n, k, batch * m, 1, beta);   // dbᵀ = dcᵀ·a
                    else be.Gemm(a, 0, 0, true, dc, 0, 0, false, db, 0, 0, 1, k, n, batch * m, 1, beta);         // db = aᵀ·dc
                }
                else if (transB) be.Gemm(dc, 0, sC, true, a, 0, sA, transA, db, 0, sdb, batch, n, k, m, 1, beta);
                else be.Gemm(a, 0, sA, !transA, dc, 0, sC, false, db, 0, sdb, batch, k, n, m, 1, beta);
            }
        });
    }

    /// <summary>A linear layer: x [..., in] · wᵀ (w [out, in], as Hugging Face stores it) + bias [out].</summary>
    public static Tensor Linear(Tensor x, Tensor w, Tensor? bias = null)
    {
        var y = MatMul(x, w, transB: true);
        return bias is null ? y : Add(y, bias);
    }
}
