using System.Reflection;
using Engine.Autograd;
using NUnit.Framework;

namespace Engine.Tests;

public class TensorAndAutogradTests
{
    private static Tensor Leaf(double[] v, params int[] shape)
    {
        var t = Tensor.FromArray(v, shape);
        t.RequiresGrad = true;
        return t;
    }

    [Test]
    public void ReshapeIsAViewOfTheSameStorage()
    {
        var x = Tensor.FromArray(new float[] { 1, 2, 3, 4, 5, 6 }, 2, 3);
        var y = x.Reshape(3, -1);
        Assert.That(y.ShapeArray, Is.EqualTo(new[] { 3, 2 }));
        x.Span<float>()[4] = 50;
        Assert.That(y.ToFloatArray()[4], Is.EqualTo(50f));
        Assert.Throws<EngineException>(() => x.Reshape(4, 2));
    }

    [Test]
    public void GradientsAccumulateAcrossUsesAndAcrossBackwardCalls()
    {
        var x = Leaf([1.5, -2.0, 0.25], 3);
        Ops.Sum(Ops.Add(Ops.Mul(x, x), x)).Backward(); // d/dx (x² + x) = 2x + 1
        Assert.That(x.Grad!.ToDoubleArray(), Is.EqualTo(new[] { 4.0, -3.0, 1.5 }));
        Ops.Sum(Ops.Add(Ops.Mul(x, x), x)).Backward();
        Assert.That(x.Grad!.ToDoubleArray(), Is.EqualTo(new[] { 8.0, -6.0, 3.0 }));
    }

    [Test]
    public void NoGradRecordsNothing()
    {
        var x = Leaf([1, 2], 2);
        using (Tape.NoGrad())
        {
            var y = Ops.Tanh(x);
            Assert.That(y.RequiresGrad, Is.False);
            Assert.That(y.Node, Is.Null);
        }
        Assert.That(Ops.Tanh(x).Node, Is.Not.Null);
    }

    [Test]
    public void FrozenParametersGetNoGradientBuffers()
    {
        var rng = new Random(3);
        var x = Tensor.Randn([4, 3], rng, DType.F64);
        var w = Tensor.Parameter(Tensor.Randn([2, 3], rng, DType.F64), "w");
        var b = Tensor.Parameter(Tensor.Randn([2], rng, DType.F64), "b");
        w.RequiresGrad = false;
        var loss = Ops.Sum(Ops.Sum(Ops.Linear(x, w, b)));
        loss.Backward();
        Assert.That(w.Grad, Is.Null);
        Assert.That(b.Grad!.ToDoubleArray(), Is.EqualTo(new[] { 4.0, 4.0 }));
        Assert.That(x.Grad, Is.Null);
    }

    [Test]
    public void IntermediateGradientsAreReleasedUnlessRetained()
    {
        var x = Leaf([0.5, 1.0], 2);
        var h = Ops.Tanh(x);
        var k = Ops.Tanh(x);
        k.RetainGrad = true;
        Ops.Sum(Ops.Add(h, k)).Backward();
        Assert.That(h.Grad, Is.Null);
        Assert.That(k.Grad, Is.Not.Null);
        Assert.That(x.Grad, Is.Not.Null);
    }

    [Test]
    public void AStepScopeReleasesWhatItMadeButNotParameters()
    {
        var w = Tensor.Parameter(Tensor.Full([3], 2.0, DType.F64), "w");
        Tensor activation, kept;
        double value;
        using (var scope = Scope.Begin())
        {
            var x = Tensor.Full([3], 1.5, DType.F64);
            activation = Ops.Mul(x, w);
            var loss = Ops.Sum(activation);
            loss.Backward();
            value = loss.Item();
            kept = scope.Keep(Ops.Scale(activation, 2));
            Assert.That(scope.Count, Is.GreaterThan(0));
        }
        Assert.That(value, Is.EqualTo(9.0));
        var e = Assert.Throws<InvalidOperationException>(() => activation.ToDoubleArray());
        Assert.That(e!.Message, Does.Contain("step scope"));
        Assert.That(kept.ToDoubleArray(), Is.EqualTo(new[] { 6.0, 6.0, 6.0 }));
        Assert.That(w.ToDoubleArray(), Is.EqualTo(new[] { 2.0, 2.0, 2.0 }));
        Assert.That(w.Grad!.ToDoubleArray(), Is.EqualTo(new[] { 1.5, 1.5, 1.5 }), "a parameter's gradient outlives the step");
    }

    [Test]
    public void PooledArraysComeInSizeClassesSoAnotherLengthReusesThem()
    {
        foreach (int n in new[] { 1, 100, CpuPool.MinLength - 1 }) Assert.That(CpuPool.SizeClass(n), Is.EqualTo(n), "small arrays are exact");
        var rng = new Random(3);
        for (int i = 0; i < 10_000; i++)
        {
            int n = CpuPool.MinLength + rng.Next(200_000_000);
            int c = CpuPool.SizeClass(n);
            Assert.That(c, Is.GreaterThanOrEqualTo(n).And.LessThanOrEqualTo(1.25 * n), $"n = {n}");
            Assert.That(CpuPool.SizeClass(c), Is.EqualTo(c), $"a class is its own class (n = {n})");
        }
        Assert.That(Enumerable.Range((1 << 20) + 1, 1 << 20).Select(CpuPool.SizeClass).Distinct().Count(), Is.EqualTo(4), "four classes per power of two: (2^20, 2^21]");

        // Lengths 1,234,567 and 1,300,001 share the class 1,310,720: the second step gets the first one's array, zeroed, seen at its own length.
        float[] first;
        using (Scope.Begin())
        {
            var a = Tensor.Full([1_234_567], 7.0, DType.F32);
            first = (float[])((CpuStorage)a.Storage).Data;
            Assert.That(first, Has.Length.EqualTo(1_310_720));
            Assert.That(a.Span<float>().Length, Is.EqualTo(1_234_567));
        }
        using (Scope.Begin())
        {
            var b = Tensor.Zeros([1_300_001], DType.F32);
            Assert.That(((CpuStorage)b.Storage).Data, Is.SameAs(first), "reused across lengths of one class");
            Assert.That(b.Span<float>().ToArray().All(v => v == 0), Is.True, "a zeroed allocation is zero after reuse");
            Assert.That(b.Numel, Is.EqualTo(1_300_001));
        }
        // A shorter step takes a free array of a larger class (up to twice its length) before making one:
        // 6,000,000 is in class 6,291,456; 4,500,000 in class 5,242,880, the next class below it.
        float[] big;
        using (Scope.Begin()) big = (float[])((CpuStorage)Tensor.Full([6_000_000], 1.0, DType.F32).Storage).Data;
        using (Scope.Begin())
        {
            var c = Tensor.Zeros([4_500_000], DType.F32);
            Assert.That(((CpuStorage)c.Storage).Data, Is.SameAs(big), "a larger free array serves a shorter step");
            Assert.That(c.Span<float>().ToArray().All(v => v == 0), Is.True);
            var d = Tensor.Zeros([2_000_000], DType.F32);
            Assert.That(((CpuStorage)d.Storage).Data, Is.Not.SameAs(big).And.Length.EqualTo(CpuPool.SizeClass(2_000_000)), "never more than twice the length");
        }
        var longLived = Tensor.Zeros([1_234_567], DType.F32);
        Assert.That(((CpuStorage)longLived.Storage).Data, Has.Length.EqualTo(1_234_567), "outside a scope (parameters, optimizer state) arrays are exact");
    }

    [Test]
    public void ViewsKeepSharedStorageAliveUntilTheLastOneIsReleased()
    {
        Tensor survivor;
        using (var scope = Scope.Begin())
        {
            var x = Tensor.Full([2, 2], 3.0, DType.F64);
            survivor = scope.Keep(x.Reshape(4));
        }
        Assert.That(survivor.ToDoubleArray(), Is.EqualTo(new[] { 3.0, 3.0, 3.0, 3.0 }));
    }

    [Test]
    public void BackwardNeedsAScalarOrASeed()
    {
        var x = Leaf([1, 2], 2);
        Assert.Throws<EngineException>(() => Ops.Tanh(x).Backward());
        Assert.Throws<EngineException>(() => Tensor.FromArray(new double[] { 1 }, 1).Backward());
    }

    [Test]
    public void ShapeErrorsNameTheOpAndTheShapes()
    {
        var a = Tensor.Zeros([2, 3]);
        var b = Tensor.Zeros([4, 5]);
        var e = Assert.Throws<EngineException>(() => Ops.MatMul(a, b));
        Assert.That(e!.Message, Does.Contain("matmul").And.Contain("[2, 3]").And.Contain("[4, 5]"));
        e = Assert.Throws<EngineException>(() => Ops.Add(a, b));
        Assert.That(e!.Message, Does.Contain("add").And.Contain("broadcast"));
        e = Assert.Throws<EngineException>(() => Ops.Add(a, Tensor.Zeros([2, 3], DType.F64)));
        Assert.That(e!.Message, Does.Contain("F32").And.Contain("F64"));
        e = Assert.Throws<EngineException>(() => Ops.Embedding(Tensor.FromArray(new[] { 0, 7 }, 2), Tensor.Zeros([5, 2])));
        Assert.That(e!.Message, Does.Contain("7"));
    }

    [TestCase(DType.F32, 0.3)]
    [TestCase(DType.F64, 0.3)]
    [TestCase(DType.F32, 0.1)]
    [TestCase(DType.F32, 0.5)] // p·2^24 an integer: the boundary value itself is kept
    public void TheCpuDropoutMaskIsRngUniformOfEveryIndex(DType dtype, double p)
    {
        int n = 3 * 16384 + 5; // several parallel chunks and a partial one
        var x = Tensor.Randn([n], new Random(8), dtype);
        var y = Tensor.Zeros([n], dtype);
        var acc = Tensor.Full([n], 1.0, dtype);
        Backend.Backends.Cpu.Dropout(x, y, p, 77);
        Backend.Backends.Cpu.DropoutBackward(x, acc, p, 77);
        double[] xv = x.ToDoubleArray(), yv = y.ToDoubleArray(), av = acc.ToDoubleArray();
        double scale = dtype == DType.F32 ? (float)(1 / (1 - p)) : 1 / (1 - p);
        int kept = 0;
        for (int i = 0; i < n; i++)
        {
            bool keep = Rng.Uniform(77, (ulong)i) >= (float)p;
            double expect = keep ? (dtype == DType.F32 ? (double)(float)((float)xv[i] * (float)scale) : xv[i] * scale) : 0;
            Assert.That(yv[i], Is.EqualTo(expect), $"element {i}");
            Assert.That(av[i], Is.EqualTo(dtype == DType.F32 ? (double)(1f + (float)expect) : 1 + expect), $"accumulated element {i}");
            if (keep) kept++;
        }
        Assert.That(kept / (double)n, Is.EqualTo(1 - p).Within(0.01));
    }

    /// <summary>The integer form of the dropout test (k ≥ ⌈p·2^24⌉ on the top 24 bits) decides exactly as
    /// Rng.ToUniform(mixed) ≥ p, at and around the boundary, for rates with and without an exact p·2^24.</summary>
    [Test]
    public void TheDropoutIntegerTestIsTheUniformTest()
    {
        var rng = new Random(3);
        var rates = new List<float> { 0f, 0.1f, 0.25f, 0.3f, 0.5f, 0.9f, 1 - 1f / 16777216 };
        for (int i = 0; i < 200; i++) rates.Add((float)rng.NextDouble());
        foreach (float p in rates)
        {
            ulong from = Backend.CpuBackend.DropoutKeepFrom(p);
            foreach (long k in new[] { 0L, (long)from - 2, (long)from - 1, (long)from, (long)from + 1, (1L << 24) - 1 })
            {
                if (k < 0 || k >= 1L << 24) continue;
                ulong mixed = ((ulong)k << 40) | (ulong)rng.NextInt64(1L << 40);   // the low bits do not count
                bool want = Rng.ToUniform(mixed) >= p, got = Backend.CpuBackend.DropoutKeepMask(mixed, from) == ulong.MaxValue;
                Assert.That(got, Is.EqualTo(want), $"p {p:R}, k {k} (keep from {from})");
                Assert.That(Backend.CpuBackend.DropoutKeepMask(mixed, from), Is.EqualTo(got ? ulong.MaxValue : 0UL));
            }
        }
    }

    [Test]
    public void DropoutIsSeededAndInvertedAndItsMaskIsReusedByBackward()
    {
        var x = Tensor.Full([10000], 1.0, DType.F64);
        x.RequiresGrad = true;
        var y1 = Ops.Dropout(x, 0.25, 42).ToDoubleArray();
        var y2 = Ops.Dropout(x, 0.25, 42).ToDoubleArray();
        var y3 = Ops.Dropout(x, 0.25, 43).ToDoubleArray();
        Assert.That(y1, Is.EqualTo(y2));
        Assert.That(y1, Is.Not.EqualTo(y3));
        double kept = y1.Count(v => v != 0) / 10000.0;
        Assert.That(kept, Is.EqualTo(0.75).Within(0.02));
        Assert.That(y1.Where(v => v != 0), Is.All.EqualTo(1 / 0.75).Within(1e-12));
        var y = Ops.Dropout(x, 0.25, 42);
        Ops.Sum(y).Backward();
        Assert.That(x.Grad!.ToDoubleArray(), Is.EqualTo(y.ToDoubleArray()), "gradient mask = forward mask");
    }

    [Test]
    public void EveryPublicOpIsInTheCatalog()
    {
        var special = new Dictionary<string, string> { ["MatMul"] = "matmul" };
        var names = typeof(Ops).GetMethods(BindingFlags.Public | BindingFlags.Static)
            .Where(m => m.ReturnType == typeof(Tensor)).Select(m => m.Name).Distinct();
        foreach (var n in names)
        {
            var snake = special.TryGetValue(n, out var s) ? s
                : string.Concat(n.Select((c, i) => i > 0 && char.IsUpper(c) ? "_" + char.ToLowerInvariant(c) : char.ToLowerInvariant(c).ToString()));
            Assert.That(OpCatalog.Find(snake), Is.Not.Null, $"Ops.{n} has no catalog entry '{snake}'");
        }
    }
}

/// <summary>The catalog's cases are tiny; these run the kernels at sizes that take the
/// parallel and large-buffer paths, against plain loops.</summary>
public class KernelScaleTests
{
    private static double[] NaiveMatMul(double[] a, double[] b, int batch, int m, int n, int k, bool ta, bool tb, bool sharedB)
    {
        var c = new double[batch * m * n];
        for (int z = 0; z < batch; z++)
            for (int i = 0; i < m; i++)
                for (int j = 0; j < n; j++)
                {
                    double s = 0;
                    for (int p = 0; p < k; p++)
                    {
                        double av = ta ? a[z * m * k + p * m + i] : a[z * m * k + i * k + p];
                        int bz = sharedB ? 0 : z * k * n;
                        double bv = tb ? b[bz + j * k + p] : b[bz + p * n + j];
                        s += av * bv;
                    }
                    c[(z * m + i) * n + j] = s;
                }
        return c;
    }

    [TestCase(false, false, false, DType.F32)]
    [TestCase(true, false, false, DType.F32)]
    [TestCase(false, true, true, DType.F32)]
    [TestCase(true, true, true, DType.F64)]
    [TestCase(false, true, false, DType.F64)]
    public void LargeMatMulMatchesPlainLoops(bool ta, bool tb, bool sharedB, DType dtype)
    {
        int batch = 3, m = 70, n = 90, k = 1100; // k > 1024 takes the heap scratch path
        var rng = new Random(5);
        var a = Tensor.Randn(ta ? [batch, k, m] : [batch, m, k], rng, dtype);
        var b = Tensor.Randn(sharedB ? (tb ? [n, k] : [k, n]) : (tb ? [batch, n, k] : [batch, k, n]), rng, dtype);
        var c = Ops.MatMul(a, b, ta, tb).ToDoubleArray();
        var expect = NaiveMatMul(a.ToDoubleArray(), b.ToDoubleArray(), batch, m, n, k, ta, tb, sharedB);
        double tol = dtype == DType.F64 ? 1e-9 : 2e-3; // float32 sums of 1100 products of N(0,1)
        for (int i = 0; i < c.Length; i++) Assert.That(c[i], Is.EqualTo(expect[i]).Within(tol));
    }

    [Test]
    public void LargeAttentionMatchesComposedOps()
    {
        var rng = new Random(9);
        int B = 2, H = 4, Hkv = 2, T = 40, S = 48, D = 16;
        var q = Tensor.Randn([B, H, T, D], rng, DType.F64);
        var k = Tensor.Randn([B, Hkv, S, D], rng, DType.F64);
        var v = Tensor.Randn([B, Hkv, S, D], rng, DType.F64);
        var o = Ops.Attention(q, k, v, null, causal: true).ToDoubleArray();
        // Reference: expand kv heads, scores, explicit causal mask, softmax, weighted sum.
        var qa = q.ToDoubleArray(); var ka = k.ToDoubleArray(); var va = v.ToDoubleArray();
        for (int b = 0; b < B; b++)
            for (int h = 0; h < H; h++)
                for (int t = 0; t < T; t++)
                {
                    int kh = h / (H / Hkv);
                    var sc = new double[S];
                    double max = double.NegativeInfinity;
                    for (int s = 0; s < S; s++)
                    {
                        if (s > t + S - T) { sc[s] = double.NegativeInfinity; continue; }
                        double dot = 0;
                        for (int d = 0; d < D; d++) dot += qa[((b * H + h) * T + t) * D + d] * ka[((b * Hkv + kh) * S + s) * D + d];
                        sc[s] = dot / Math.Sqrt(D);
                        max = Math.Max(max, sc[s]);
                    }
                    double sum = sc.Sum(x => Math.Exp(x - max));
                    for (int d = 0; d < D; d++)
                    {
                        double acc = 0;
                        for (int s = 0; s < S; s++) acc += Math.Exp(sc[s] - max) / sum * va[((b * Hkv + kh) * S + s) * D + d];
                        Assert.That(o[((b * H + h) * T + t) * D + d], Is.EqualTo(acc).Within(1e-10));
                    }
                }
    }

    [Test]
    public void Float32ResultsAreBitwiseRepeatable()
    {
        var rng = new Random(11);
        var x = Tensor.Randn([64, 256], rng);
        var w = Tensor.Randn([512, 256], rng);
        var first = Ops.Softmax(Ops.MatMul(x, w, transB: true)).ToFloatArray();
        for (int i = 0; i < 3; i++)
            Assert.That(Ops.Softmax(Ops.MatMul(x, w, transB: true)).ToFloatArray(), Is.EqualTo(first));
    }
}
