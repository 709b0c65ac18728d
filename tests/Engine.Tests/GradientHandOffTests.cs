using Engine.Autograd;
using NUnit.Framework;

namespace Engine.Tests;

/// <summary>
/// The backward's two shortcuts: an input whose gradient is a copy of its output's (a reshape, an
/// addition's operand of the output's shape) takes over the output's gradient buffer instead of a
/// copy (Tape.AccumulateGrad), and a first gradient that a kernel writes whole is assigned into an
/// unzeroed buffer (Tape.GradToWrite: matmul, permute, dropout, cross-entropy). Both must give exactly the gradients of
/// plain accumulation, whatever the graph reuses.
/// </summary>
public class GradientHandOffTests
{
    /// <summary>Every reuse pattern the shortcuts meet: a residual sum (h and f(h)), a tensor added to
    /// itself, a difference, a broadcast bias on either side, reshapes of reshapes, a permute, and a
    /// product of a tensor with itself, two dropouts of one tensor.</summary>
    private static Tensor Graph(Tensor[] i)
    {
        var (x, w, b) = (i[0], i[1], i[2]);
        var h = Ops.Add(Ops.MatMul(x, w), b);                       // [3, 4] + [4]
        var r = Ops.Add(h, Ops.Tanh(h));                             // residual: h reaches the sum and tanh
        var s = Ops.Sub(Ops.Add(r, r), Ops.Add(b, h));               // r + r; bias on the left; difference
        var v = s.Reshape(12).Reshape(2, 6).Reshape(3, 4);           // views of views
        var dv = Ops.Add(Ops.Dropout(v, 0.3, 7), Ops.Dropout(v, 0.5, 9)); // v's first gradient assigned, its second added
        var p = Ops.Permute(dv, 1, 0);                               // [4, 3]
        var g = Ops.MatMul(p, p, transB: true);                      // p · pᵀ: the same tensor twice
        return Ops.Add(Ops.MatMul(x, Ops.MatMul(g, w)), Ops.Mul(h, h).Reshape(12).Reshape(4, 3).Reshape(3, 4).Reshape(12).Reshape(4, 3).Reshape(3, 4));
    }

    [TestCase(1)]
    [TestCase(2)]
    [TestCase(3)]
    public void AGraphThatReusesItsTensorsPassesTheFiniteDifferenceCheck(int seed)
    {
        var rng = new Random(seed);
        Tensor R(params int[] shape) => Tensor.Randn(shape, rng, DType.F64, 0.5);
        var c = new OpCase("x [3, 4], w [4, 4], b [4]", [R(3, 4), R(4, 4), R(4)], [true, true, true], Graph, [3, 4]);
        var r = GradCheck.Check("hand-off graph", c, seed);
        Assert.That(r.Error, Is.Null);
        Assert.That(r.MaxRelError, Is.LessThanOrEqualTo(GradCheck.DefaultTolerance));
    }

    [TestCase(1)]
    [TestCase(2)]
    public void TwoCrossEntropiesOfOneTensorPassTheFiniteDifferenceCheck(int seed)
    {
        // The first loss's backward writes the logits' gradient (ignored rows 0), the second adds.
        var rng = new Random(seed);
        var c = new OpCase("x [5, 3], w [3, 7], two target sets with ignored rows",
            [Tensor.Randn([5, 3], rng, DType.F64), Tensor.Randn([3, 7], rng, DType.F64),
             Tensor.FromArray(new[] { 2, -100, 6, 0, 3 }, 5), Tensor.FromArray(new[] { -100, 4, 1, -100, 5 }, 5)],
            [true, true, false, false],
            i =>
            {
                var z = Ops.MatMul(i[0], i[1]);
                return Ops.Add(Ops.CrossEntropy(z, i[2]), Ops.Scale(Ops.CrossEntropy(z, i[3]), 0.5));
            }, []);
        var r = GradCheck.Check("two cross-entropies", c, seed);
        Assert.That(r.Error, Is.Null);
        Assert.That(r.MaxRelError, Is.LessThanOrEqualTo(GradCheck.DefaultTolerance));
    }

    [TestCase(DType.F32, false)]
    [TestCase(DType.F64, false)]
    [TestCase(DType.F32, true)]
    public void CrossEntropyBackwardWritesEveryElementWhenNotAccumulating(DType dtype, bool allIgnored)
    {
        // Into a buffer of NaNs (an unzeroed buffer's stale values): written, it must equal the sum into zeros,
        // with the ignored rows (or, when every row is ignored, all) 0.
        var be = Backend.Backends.Cpu;
        var rng = new Random(3);
        int rows = 4, c = 37;   // 37: vector loop and scalar tail
        var logits = Tensor.Randn([rows, c], rng, dtype);
        var targets = Tensor.FromArray(allIgnored ? new[] { -100, -100, -100, -100 } : new[] { 5, -100, 36, 0 }, rows);
        var loss = Tensor.Zeros([], dtype); var lse = Tensor.Zeros([rows], dtype);
        be.CrossEntropy(logits, targets, -100, loss, lse);
        var dl = Tensor.Full([], 1.5, dtype);
        var added = Tensor.Zeros([rows, c], dtype);
        be.CrossEntropyBackward(logits, targets, -100, lse, dl, added, accumulate: true);
        var written = Tensor.Full([rows, c], double.NaN, dtype);
        be.CrossEntropyBackward(logits, targets, -100, lse, dl, written, accumulate: false);
        Assert.That(written.ToDoubleArray(), Is.EqualTo(added.ToDoubleArray()));
        if (!allIgnored) Assert.That(written.ToDoubleArray().Skip(c).Take(c), Is.All.EqualTo(0.0));
    }

    [Test]
    public void ARetainedGradientIsNotHandedOver()
    {
        // z = a2 + tanh(a2) keeps its gradient. z's backward runs first and is a2's first gradient;
        // tanh's backward then adds a second one into a2's buffer. Had z's buffer been handed to a2,
        // z.Grad would read c·(2 − tanh²) instead of c.
        using var scope = Scope.Begin();
        var rng = new Random(5);
        var a = Tensor.Randn([2, 3], rng, DType.F64); a.RequiresGrad = true;
        var c = Tensor.Randn([2, 3], rng, DType.F64);
        var a2 = Ops.Scale(a, 1.0);                                  // an activation (a hand-off target)
        var z = Ops.Add(a2, Ops.Tanh(a2));
        z.RetainGrad = true;
        Ops.Sum(Ops.Mul(z, c)).Backward(Tensor.FromArray(new[] { 1.0, 1.0 }, 2));
        var cv = c.ToDoubleArray();
        var expected = a.ToDoubleArray().Select((x, i) => cv[i] * (2 - Math.Tanh(x) * Math.Tanh(x))).ToArray();
        Assert.That(z.Grad!.ToDoubleArray(), Is.EqualTo(cv));
        Assert.That(a.Grad!.ToDoubleArray(), Is.EqualTo(expected).Within(1e-12).Percent);
    }

    [Test]
    public void AReshapeHandsItsGradientBufferToItsInput()
    {
        // The mechanism is used, not only harmless: x's gradient is the storage of y's.
        using var scope = Scope.Begin();
        var p = Tensor.Randn([2, 3], new Random(1), DType.F64); p.RequiresGrad = true;
        var x = Ops.Scale(p, 2.0);
        var y = x.Reshape(6);
        Storage? written = null;
        var probe = Tape.Record("probe", Ops.Scale(y, 1.0).Detach(), [y], dy =>
        {
            var g = Tape.GradOf(y);
            written = g.Storage;
            y.Backend.Axpy(dy, g, 1.0);
        });
        x.RetainGrad = true;
        probe.Backward(Tensor.FromArray(new[] { 1.0, 2, 3, 4, 5, 6 }, 6));
        Assert.That(x.Grad!.Storage, Is.SameAs(written));
        Assert.That(p.Grad!.ToDoubleArray(), Is.EqualTo(new[] { 2.0, 4, 6, 8, 10, 12 }));
    }
}
