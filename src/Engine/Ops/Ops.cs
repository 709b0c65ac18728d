using Engine.Autograd;
using Engine.Backend;

namespace Engine;

/// <summary>
/// The differentiable ops. Each one checks its shapes (its shape rule, which names the op and
/// the shapes in its error), runs its forward kernel on the inputs' backend, and records a
/// node whose hand-written backward calls the backward kernel. Every op is listed in
/// <see cref="OpCatalog"/>, which the gradient checks walk.
/// </summary>
public static partial class Ops
{
    private static Tensor Like(Tensor x) => Tensor.Empty(x.ShapeArray, x.DType, x.Device);
    private static Tensor New(int[] shape, Tensor like) => Tensor.Empty(shape, like.DType, like.Device);
    private static Tensor ScalarLike(Tensor like) => Tensor.Empty([], like.DType, like.Device);
    private static Tensor? GradIf(Tensor t) => t.RequiresGrad ? Tape.GradOf(t) : null;

    /// <summary>Checks that the float inputs of an op share one compute type and one device.</summary>
    private static void Same(string op, Tensor a, params Tensor?[] rest)
    {
        if (!a.DType.IsCompute()) throw new EngineException($"{op}: inputs must be F32 or F64, not {a.DType}");
        foreach (var t in rest)
        {
            if (t is null) continue;
            if (t.DType != a.DType) throw new EngineException($"{op}: mixed element types {a.DType} and {t.DType}");
            if (t.Device != a.Device) throw new EngineException($"{op}: inputs on different devices ({a.Device}, {t.Device})");
        }
    }

    private static void Indices(string op, Tensor ids, Tensor like)
    {
        if (ids.DType != DType.I32) throw new EngineException($"{op}: indices must be I32, not {ids.DType}");
        if (ids.Device != like.Device) throw new EngineException($"{op}: indices on {ids.Device}, values on {like.Device}");
    }

    private static string F(ReadOnlySpan<int> s) => Shape.Format(s);

    // ------------------------------------------------------------- elementwise

    public static Tensor Add(Tensor a, Tensor b) => Binary(BinaryOp.Add, "add", a, b);
    public static Tensor Sub(Tensor a, Tensor b) => Binary(BinaryOp.Sub, "sub", a, b);
    public static Tensor Mul(Tensor a, Tensor b) => Binary(BinaryOp.Mul, "mul", a, b);
    public static Tensor Div(Tensor a, Tensor b) => Binary(BinaryOp.Div, "div", a, b);

    private static Tensor Binary(BinaryOp op, string name, Tensor a, Tensor b)
    {
        Same(name, a, b);
        var y = New(Shape.Broadcast(a.Shape, b.Shape, name), a);
        a.Backend.Binary(op, a, b, y);
        return Tape.Record(name, y, [a, b], dy =>
        {
            // A sum's operand of the output's shape gets dy itself: handed over when the tape would
            // release it next (Tape.AccumulateGrad), so a residual or bias addition copies nothing.
            bool toA = op is BinaryOp.Add or BinaryOp.Sub && a.RequiresGrad && Shape.Equal(a.Shape, dy.Shape);
            bool toB = !toA && op is BinaryOp.Add && b.RequiresGrad && Shape.Equal(b.Shape, dy.Shape);
            Tensor? da = toA ? null : GradIf(a), db = toB ? null : GradIf(b);
            if (da is not null || db is not null) a.Backend.BinaryBackward(op, a, b, dy, da, db);
            if (toA) Tape.AccumulateGrad(a, dy);
            else if (toB) Tape.AccumulateGrad(b, dy);
        });
    }

    /// <summary>y = alpha · x.</summary>
    public static Tensor Scale(Tensor x, double alpha)
    {
        Same("scale", x);
        var y = Like(x);
        x.Backend.Scale(x, y, alpha);
        return Tape.Record("scale", y, [x], dy => x.Backend.Axpy(dy, Tape.GradOf(x), alpha));
    }

    public static Tensor Relu(Tensor x) => Unary(UnaryOp.Relu, "relu", x);
    public static Tensor Tanh(Tensor x) => Unary(UnaryOp.Tanh, "tanh", x);
    public static Tensor Silu(Tensor x) => Unary(UnaryOp.Silu, "silu", x);
    /// <summary>GELU, exact (erf) form, as BERT's "gelu".</summary>
    public static Tensor Gelu(Tensor x) => Unary(UnaryOp.GeluErf, "gelu", x);
    /// <summary>GELU, tanh approximation, as "gelu_new" / "gelu_pytorch_tanh".</summary>
    public static Tensor GeluTanh(Tensor x) => Unary(UnaryOp.GeluTanh, "gelu_tanh", x);

    private static Tensor Unary(UnaryOp op, string name, Tensor x)
    {
        Same(name, x);
        var y = Like(x);
        x.Backend.Unary(op, x, y);
        return Tape.Record(name, y, [x], dy => x.Backend.UnaryBackward(op, x, y, dy, Tape.GradOf(x)));
    }

    /// <summary>Inverted dropout with a counter-based mask drawn from <paramref name="seed"/>;
    /// the backward regenerates the same mask. Identity when p = 0.</summary>
    public static Tensor Dropout(Tensor x, double p, ulong seed)
    {
        Same("dropout", x);
        if (p < 0 || p >= 1) throw new EngineException($"dropout: probability {p} is outside [0, 1)");
        if (p == 0) return x;
        var y = Like(x);
        x.Backend.Dropout(x, y, p, seed);
        return Tape.Record("dropout", y, [x], dy =>
        {
            // dx = mask ⊙ dy / (1 − p): for a first gradient that is the forward applied to dy.
            var dx = Tape.GradToWrite(x, out bool accumulate);
            if (accumulate) x.Backend.DropoutBackward(dy, dx, p, seed);
            else x.Backend.Dropout(dy, dx, p, seed);
        });
    }

    // ------------------------------------------------------------- reductions, softmax

    /// <summary>Sum over the last dim: [..., n] → [...].</summary>
    public static Tensor Sum(Tensor x) => Reduce(x, mean: false);
    /// <summary>Mean over the last dim: [..., n] → [...].</summary>
    public static Tensor Mean(Tensor x) => Reduce(x, mean: true);

    private static Tensor Reduce(Tensor x, bool mean)
    {
        var name = mean ? "mean" : "sum";
        Same(name, x);
        if (x.Rank == 0 || x.Dim(-1) == 0) throw new EngineException($"{name}: needs a non-empty last dim, got {F(x.Shape)}");
        var y = New(x.ShapeArray[..^1], x);
        x.Backend.SumLast(x, y, mean);
        return Tape.Record(name, y, [x], dy => x.Backend.SumLastBackward(dy, Tape.GradOf(x), mean));
    }

    /// <summary>Softmax over the last dim.</summary>
    public static Tensor Softmax(Tensor x)
    {
        Same("softmax", x);
        if (x.Rank == 0) throw new EngineException("softmax: needs at least one dim");
        var y = Like(x);
        x.Backend.Softmax(x, y);
        return Tape.Record("softmax", y, [x], dy => x.Backend.SoftmaxBackward(y, dy, Tape.GradOf(x)));
    }

    // ------------------------------------------------------------- norms

    /// <summary>Layer norm over the last dim with weight and bias [d].</summary>
    public static Tensor LayerNorm(Tensor x, Tensor w, Tensor b, double eps = 1e-5)
    {
        Same("layer_norm", x, w, b);
        int d = x.Rank == 0 ? 0 : x.Dim(-1);
        if (d == 0 || w.Rank != 1 || w.Dim(0) != d || !Shape.Equal(w.Shape, b.Shape))
            throw new EngineException($"layer_norm: input {F(x.Shape)} needs weight and bias [{d}], got {F(w.Shape)} and {F(b.Shape)}");
        long rows = x.Numel / d;
        var y = Like(x);
        var mean = Tensor.Empty([(int)rows], x.DType, x.Device);
        var rstd = Tensor.Empty([(int)rows], x.DType, x.Device);
        x.Backend.LayerNorm(x, w, b, y, mean, rstd, eps);
        return Tape.Record("layer_norm", y, [x, w, b],
            dy => x.Backend.LayerNormBackward(x, w, mean, rstd, dy, GradIf(x), GradIf(w), GradIf(b)));
    }

    /// <summary>RMS norm over the last dim with weight [d] (Llama: no mean subtraction, no bias).</summary>
    public static Tensor RmsNorm(Tensor x, Tensor w, double eps = 1e-6)
    {
        Same("rms_norm", x, w);
        int d = x.Rank == 0 ? 0 : x.Dim(-1);
        if (d == 0 || w.Rank != 1 || w.Dim(0) != d)
            throw new EngineException($"rms_norm: input {F(x.Shape)} needs weight [{d}], got {F(w.Shape)}");
        var y = Like(x);
        var rstd = Tensor.Empty([(int)(x.Numel / d)], x.DType, x.Device);
        x.Backend.RmsNorm(x, w, y, rstd, eps);
        return Tape.Record("rms_norm", y, [x, w], dy => x.Backend.RmsNormBackward(x, w, rstd, dy, GradIf(x), GradIf(w)));
    }
}
