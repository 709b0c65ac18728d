using Engine.Backend;
using NUnit.Framework;

namespace Engine.Tests;

/// <summary>The CPU's float32 fast paths against the simple reference kernels, on random shapes
/// that include sizes not a multiple of any tile (4 rows, 16 columns, 32-row blocks): the packed
/// 4×16 GEMM (CpuBackend.Gemm32.cs) and the per-head attention built on it
/// (CpuBackend.AttentionF32.cs). The references are the generic kernels run in float64 on the same
/// float32 values, and for attention also the simple kernel in float32. Tolerances are relative to
/// each output tensor's own largest magnitude.</summary>
public class CpuFastKernelTests
{
    private static Tensor As(Tensor t, DType dtype) => Tensor.FromDoubles(t.ToDoubleArray(), t.ShapeArray, dtype);

    private static void Near(Tensor got, Tensor want, double relative, string what)
    {
        var g = got.ToDoubleArray();
        var w = want.ToDoubleArray();
        double scale = w.Length == 0 ? 1 : w.Max(Math.Abs);
        Assert.That(g.Length, Is.EqualTo(w.Length), what);
        for (int i = 0; i < g.Length; i++)
            if (!(Math.Abs(g[i] - w[i]) <= relative * scale))
                Assert.Fail($"{what}: element {i} is {g[i]}, the reference {w[i]} (scale {scale})");
    }

    [TestCase(1, 1, 1, false, false)]
    [TestCase(37, 53, 19, false, false)]
    [TestCase(37, 53, 19, false, true)]
    [TestCase(37, 53, 19, true, false)]
    [TestCase(37, 53, 19, true, true)]
    [TestCase(68, 33, 130, false, true)]
    [TestCase(5, 70, 3, true, false)]
    public void Float32GemmMatchesTheFloat64Reference(int m, int n, int k, bool transA, bool transB)
    {
        var rng = new Random(m * 1000 + n * 10 + k);
        var a = Tensor.Randn(transA ? [k, m] : [m, k], rng);
        var b = Tensor.Randn(transB ? [n, k] : [k, n], rng);
        var c = Tensor.Randn([m, n], rng);
        var c64 = As(c, DType.F64);
        Backends.Cpu.Gemm(a, 0, 0, transA, b, 0, 0, transB, c, 0, 0, 1, m, n, k, 0.5, 0.25);
        Backends.Cpu.Gemm(As(a, DType.F64), 0, 0, transA, As(b, DType.F64), 0, 0, transB, c64, 0, 0, 1, m, n, k, 0.5, 0.25);
        Near(c, c64, 1e-5 * Math.Sqrt(k), "C");
    }

    /// <summary>The 8×16 AVX-512 tile sums each element in the same order as two 4×16 tiles: same bits
    /// (so the float32 results do not depend on which tile a machine uses).</summary>
    [Test]
    public unsafe void WideTileGivesTheBitsOfTwoNarrowTiles()
    {
        if (!System.Runtime.Intrinsics.Vector512.IsHardwareAccelerated) Assert.Ignore("no AVX-512 here");
        const int k = 77, n = 19;
        var rng = new Random(3);
        var a = Enumerable.Range(0, 8 * k).Select(_ => (float)rng.NextDouble() - 0.5f).ToArray();
        var b = Enumerable.Range(0, 16 * k).Select(_ => (float)rng.NextDouble() - 0.5f).ToArray();
        var c0 = Enumerable.Range(0, 8 * n).Select(_ => (float)rng.NextDouble()).ToArray();
        var (wide, narrow) = ((float[])c0.Clone(), (float[])c0.Clone());
        fixed (float* pa = a, pb = b, pw = wide, pn = narrow)
        {
            CpuBackend.Tile8x16(pa, pb, pw, n, k, 0.75f);
            CpuBackend.Tile4x16(pa, pb, pn, n, k, 0.75f);
            CpuBackend.Tile4x16(pa + 4 * k, pb, pn + 4 * n, n, k, 0.75f);
        }
        Assert.That(wide, Is.EqualTo(narrow));
        Assert.That(wide, Is.Not.EqualTo(c0));
    }

    public static IEnumerable<TestCaseData> AttentionShapes()
    {
        // B, H, Hkv, T, S, D, causal, masked
        yield return new TestCaseData(2, 4, 2, 5, 7, 3, true, false);
        yield return new TestCaseData(1, 3, 1, 37, 53, 19, false, true);
        yield return new TestCaseData(2, 2, 2, 33, 33, 16, true, true);
        yield return new TestCaseData(1, 6, 2, 17, 70, 64, true, false);
        yield return new TestCaseData(2, 2, 1, 64, 64, 64, false, false);
        yield return new TestCaseData(1, 1, 1, 1, 1, 1, false, false);
    }

    [TestCaseSource(nameof(AttentionShapes))]
    public void Float32AttentionMatchesTheSimpleKernel(int B, int H, int Hkv, int T, int S, int D, bool causal, bool masked)
    {
        var rng = new Random(B * 7919 + H * 104729 + T * 31 + S);
        var q = Tensor.Randn([B, H, T, D], rng);
        var k = Tensor.Randn([B, Hkv, S, D], rng);
        var v = Tensor.Randn([B, Hkv, S, D], rng);
        var dO = Tensor.Randn([B, H, T, D], rng);
        // Padding: the last key of each batch row and one random key more (never all of them).
        var mask = masked
            ? Tensor.FromArray(Enumerable.Range(0, B * S).Select(i => i % S == S - 1 && S > 1 || i % S == rng.Next(S - 1) ? -1e9f : 0f).ToArray(), B, S)
            : null;
        double scale = 1 / Math.Sqrt(D);

        (Tensor O, Tensor P, Tensor dQ, Tensor dK, Tensor dV) Run(DType dtype, bool simple)
        {
            Tensor C(Tensor t) => As(t, dtype);
            var (tq, tk, tv, tdo, tm) = (C(q), C(k), C(v), C(dO), mask is null ? null : C(mask));
            var o = Tensor.Zeros([B, H, T, D], dtype);
            var p = Tensor.Zeros([B, H, T, S], dtype);
            // The gradients start non-zero: the backward adds into them.
            var (dq, dk, dv) = (C(Tensor.Full([B, H, T, D], 0.5)), C(Tensor.Full([B, Hkv, S, D], -0.25)), C(Tensor.Full([B, Hkv, S, D], 0.125)));
            if (simple)
            {
                if (dtype == DType.F64) CpuBackend.Attention<double>(tq, tk, tv, tm, causal, scale, o, p);
                else CpuBackend.Attention<float>(tq, tk, tv, tm, causal, scale, o, p);
                if (dtype == DType.F64) CpuBackend.AttentionBackward<double>(tq, tk, tv, p, tdo, scale, dq, dk, dv);
                else CpuBackend.AttentionBackward<float>(tq, tk, tv, p, tdo, scale, dq, dk, dv);
            }
            else
            {
                Backends.Cpu.Attention(tq, tk, tv, tm, causal, scale, o, p);
                Backends.Cpu.AttentionBackward(tq, tk, tv, p, tdo, scale, dq, dk, dv);
            }
            return (o, p, dq, dk, dv);
        }

        var fast = Run(DType.F32, simple: false);
        foreach (var (reference, name, tol) in new[] { (Run(DType.F64, simple: true), "float64", 2e-5), (Run(DType.F32, simple: true), "float32", 2e-5) })
        {
            Near(fast.P, reference.P, tol, $"probabilities vs the simple {name} kernel");
            Near(fast.O, reference.O, tol, $"output vs the simple {name} kernel");
            Near(fast.dQ, reference.dQ, tol * Math.Sqrt(S), $"dQ vs the simple {name} kernel");
            Near(fast.dK, reference.dK, tol * Math.Sqrt(T * H / Hkv), $"dK vs the simple {name} kernel");
            Near(fast.dV, reference.dV, tol * Math.Sqrt(T * H / Hkv), $"dV vs the simple {name} kernel");
        }
        if (causal)
        {
            // Keys past t + S − T get probability exactly 0.
            var p = fast.P.ToDoubleArray();
            for (int row = 0; row < B * H * T; row++)
                for (int s = row % T + S - T + 1; s < S; s++)
                    Assert.That(p[row * S + s], Is.EqualTo(0.0), $"causal probability at row {row}, key {s}");
        }
    }

    [Test]
    public void Float32AttentionIsBitwiseRepeatable()
    {
        var rng = new Random(5);
        var q = Tensor.Randn([3, 4, 45, 32], rng);
        var k = Tensor.Randn([3, 2, 45, 32], rng);
        var v = Tensor.Randn([3, 2, 45, 32], rng);
        var dO = Tensor.Randn([3, 4, 45, 32], rng);
        float[][] Once()
        {
            var o = Tensor.Zeros([3, 4, 45, 32]);
            var p = Tensor.Zeros([3, 4, 45, 45]);
            var (dq, dk, dv) = (Tensor.Zeros([3, 4, 45, 32]), Tensor.Zeros([3, 2, 45, 32]), Tensor.Zeros([3, 2, 45, 32]));
            Backends.Cpu.Attention(q, k, v, null, true, 0.2, o, p);
            Backends.Cpu.AttentionBackward(q, k, v, p, dO, 0.2, dq, dk, dv);
            return [o.ToFloatArray(), p.ToFloatArray(), dq.ToFloatArray(), dk.ToFloatArray(), dv.ToFloatArray()];
        }
        var first = Once();
        var second = Once();
        for (int i = 0; i < first.Length; i++) Assert.That(second[i], Is.EqualTo(first[i]), $"output {i}");
    }
}
