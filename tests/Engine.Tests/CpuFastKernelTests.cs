using Engine.Backend;
using NUnit.Framework;

namespace Engine.Tests;

/// <summary>The CPU's float32 fast paths against the simple reference kernels, on random shapes
/// that include sizes not a multiple of any tile (4 rows, 16 columns, 32-row blocks): the packed
/// 4×16 / 8×16 GEMM (CpuBackend.Gemm32.cs), the blocked 12×32 AVX-512 GEMM (CpuBackend.GemmBlocked.cs)
/// and the per-head attention built on the former
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
    [TestCase(130, 150, 90, false, true)] // big enough for the blocked AVX-512 path
    [TestCase(101, 111, 333, true, false)]
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

    // ---------------------------------------------- the blocked GEMM (CpuBackend.GemmBlocked.cs)
    // Shapes around its blocking: 12- or 6-row micro-panels, 32- or 16-column panels, K-blocks of
    // ≤ 256 (641 → 3 blocks of 214, the last 213), C blocks of 96 × 256; none a multiple, plus exact
    // ones and 1s. Both kernels run on every machine (the one the machine lacks is emulated).

    private static Tensor Abs(Tensor t) => Tensor.FromDoubles(t.ToDoubleArray().Select(Math.Abs).ToArray(), t.ShapeArray, DType.F64);

    /// <summary>C = alpha·op(A)·op(B) + beta·C over a batch (a stride of 0 = one shared matrix; a shared
    /// C sums the batch) by the blocked kernel, checked against the float64 generic kernel on the same
    /// values: each element within 2·√(K·batch)·ε₃₂ of its own scale |alpha|·Σ|a||b| + |beta||c|
    /// (the scale itself from the reference kernel run on absolute values). Returns C's bits.</summary>
    private static float[] CheckBlocked(int batch, int m, int n, int k, bool transA, bool transB,
                                        bool sharedA, bool sharedB, bool sharedC, double alpha, double beta, bool parallel = true, bool? wide = null)
    {
        var rng = new Random(((batch * 31 + m) * 31 + n) * 31 + k);
        int sa = sharedA ? 0 : m * k, sb = sharedB ? 0 : k * n, sc = sharedC ? 0 : m * n;
        var a = Tensor.Randn([(sharedA ? 1 : batch) * m * k], rng);
        var b = Tensor.Randn([(sharedB ? 1 : batch) * k * n], rng);
        var c = Tensor.Randn([(sharedC ? 1 : batch) * m * n], rng);
        var (a64, b64, c64, scale) = (As(a, DType.F64), As(b, DType.F64), As(c, DType.F64), Abs(c));
        CpuBackend.GemmBlocked(a.Span<float>(), 0, sa, transA, b.Span<float>(), 0, sb, transB, c.Span<float>(), 0, sc,
                               batch, m, n, k, (float)alpha, (float)beta, parallel, wide);
        Backends.Cpu.Gemm(a64, 0, sa, transA, b64, 0, sb, transB, c64, 0, sc, batch, m, n, k, alpha, beta);
        Backends.Cpu.Gemm(Abs(a64), 0, sa, transA, Abs(b64), 0, sb, transB, scale, 0, sc, batch, m, n, k, Math.Abs(alpha), Math.Abs(beta));
        var (got, want, s) = (c.ToDoubleArray(), c64.ToDoubleArray(), scale.ToDoubleArray());
        double tol = 2 * Math.Sqrt((double)k * batch) * Math.Pow(2, -23);
        for (int i = 0; i < got.Length; i++)
            if (!(Math.Abs(got[i] - want[i]) <= tol * s[i] + 1e-30))
                Assert.Fail($"C element {i} (row {i % (m * n) / n}, column {i % n}) is {got[i]}, the reference {want[i]} (scale {s[i]})");
        return c.ToFloatArray();
    }

    // batch, m, n, k, transA, transB, sharedA, sharedB, sharedC, alpha, beta
    [TestCase(1, 1, 1, 1, false, false, false, false, false, 1.0, 0.0)]
    [TestCase(1, 13, 33, 1, false, false, false, false, false, 0.5, 0.25)]
    [TestCase(1, 12, 32, 256, false, false, false, false, false, 1.0, 1.0)]   // exactly one tile, one K-block
    [TestCase(1, 24, 64, 512, true, false, false, false, false, 1.0, 0.0)]    // exactly 2 × 2 tiles, two K-blocks
    [TestCase(1, 25, 65, 641, false, true, false, false, false, 0.5, 0.25)]
    [TestCase(1, 25, 65, 641, true, false, false, false, false, -2.0, 0.0)]
    [TestCase(1, 25, 65, 641, true, true, false, false, false, 1.0, -1.0)]
    [TestCase(1, 100, 300, 700, false, false, false, false, false, -1.5, 1.0)]
    [TestCase(1, 97, 257, 321, false, true, false, false, false, 1.0, 0.0)]
    [TestCase(1, 7, 3, 1000, true, true, false, false, false, 1.0, 0.5)]
    [TestCase(3, 29, 47, 333, true, false, false, false, true, 1.0, 0.5)]   // weight gradient summed over the batch
    [TestCase(3, 29, 47, 333, false, true, false, true, false, 0.75, 0.0)]  // one weight for every matrix
    [TestCase(2, 50, 40, 30, true, true, true, false, false, 1.0, 2.0)]
    public void BlockedGemmMatchesTheFloat64Reference(int batch, int m, int n, int k, bool transA, bool transB,
                                                       bool sharedA, bool sharedB, bool sharedC, double alpha, double beta)
    {
        var wide = CheckBlocked(batch, m, n, k, transA, transB, sharedA, sharedB, sharedC, alpha, beta, wide: true);
        var narrow = CheckBlocked(batch, m, n, k, transA, transB, sharedA, sharedB, sharedC, alpha, beta, wide: false);
        // Each C element is summed in the same order by both (K-blocks in order, p ascending, one FMA
        // per step): an AVX2 machine computes the bits an AVX-512 machine does.
        Assert.That(narrow, Is.EqualTo(wide), "the 6×16 kernel's bits against the 12×32 kernel's");
    }

    /// <summary>The blocked GEMM's bits repeat run to run and do not depend on the thread count (the C
    /// blocks are fixed, each element summed in one order): two parallel runs and a serial one agree,
    /// for a batch summed into one C and for a batch of separate products.</summary>
    [Test]
    public void BlockedGemmIsBitwiseRepeatableAndIndependentOfThreads()
    {
        var first = CheckBlocked(2, 205, 600, 700, false, true, false, false, true, 1.0, 0.5);
        var second = CheckBlocked(2, 205, 600, 700, false, true, false, false, true, 1.0, 0.5);
        var serial = CheckBlocked(2, 205, 600, 700, false, true, false, false, true, 1.0, 0.5, parallel: false);
        Assert.That(second, Is.EqualTo(first));
        Assert.That(serial, Is.EqualTo(first));
        // A batch with its own C per matrix runs whole matrices in parallel: the same bits again.
        var batched = CheckBlocked(5, 60, 70, 300, true, false, false, false, false, 1.0, 0.0);
        var batchedSerial = CheckBlocked(5, 60, 70, 300, true, false, false, false, false, 1.0, 0.0, parallel: false);
        Assert.That(batchedSerial, Is.EqualTo(batched));
    }

    /// <summary>A small C over a long K (a weight gradient: llama-mini's 64 × 256 key projection over
    /// 4,096 tokens) is cut into at least four blocks per core, not one block on one core; smaller
    /// blocks change no bits (a serial run, one core's larger blocks, agrees); big products keep the
    /// full blocks.</summary>
    [Test]
    public void ASmallCIsSpreadOverTheCoresWithTheSameBits()
    {
        foreach (var (mr, nr) in new[] { (CpuBackend.MRNarrow, CpuBackend.NRNarrow), (CpuBackend.MRWide, CpuBackend.NRWide) })
        {
            foreach (var (m, n) in new[] { (64, 256), (256, 256), (6, 16), (1, 1000) })
            {
                var (bm, bn) = CpuBackend.CBlocks(m, n, mr, nr, cores: 2);
                long blocks = (long)((m + bm - 1) / bm) * ((n + bn - 1) / bn);
                Assert.That(bm % mr == 0 && bn % nr == 0, $"{m}×{n}: blocks {bm}×{bn} are whole tiles of {mr}×{nr}");
                Assert.That(blocks, Is.GreaterThanOrEqualTo(Math.Min(8, ((m + mr - 1) / mr) * ((n + nr - 1) / nr))), $"{m}×{n}: {bm}×{bn}");
            }
            Assert.That(CpuBackend.CBlocks(2048, 1024, mr, nr, cores: 2), Is.EqualTo((96, 256)));
        }
        var parallel = CheckBlocked(1, 64, 256, 4096, true, false, false, false, false, 1.0, 0.0);
        var serial = CheckBlocked(1, 64, 256, 4096, true, false, false, false, false, 1.0, 0.0, parallel: false);
        Assert.That(serial, Is.EqualTo(parallel));
    }

    /// <summary>beta = 0 writes C without reading it (the first K-block overwrites): NaNs in the old C
    /// must not survive, as with the clearing pass of the other kernels.</summary>
    [Test]
    public void BlockedGemmWithBetaZeroIgnoresTheOldC()
    {
        const int m = 30, n = 40, k = 300;
        var rng = new Random(11);
        var a = Tensor.Randn([m, k], rng).Span<float>().ToArray();
        var b = Tensor.Randn([k, n], rng).Span<float>().ToArray();
        var (fromNaN, fromZero) = (Enumerable.Repeat(float.NaN, m * n).ToArray(), new float[m * n]);
        CpuBackend.GemmBlocked(a, 0, 0, false, b, 0, 0, false, fromNaN, 0, 0, 1, m, n, k, 1f, 0f);
        CpuBackend.GemmBlocked(a, 0, 0, false, b, 0, 0, false, fromZero, 0, 0, 1, m, n, k, 1f, 0f);
        Assert.That(fromNaN, Is.EqualTo(fromZero));
    }

    [Test]
    public void Float32GemmsFrom40CubedTakeTheBlockedPath()
    {
        if (Environment.GetEnvironmentVariable("ENGINE_GEMM") is not null) Assert.Ignore("ENGINE_GEMM picks a kernel");
        bool avx2 = System.Runtime.Intrinsics.Vector256.IsHardwareAccelerated && System.Runtime.Intrinsics.X86.Fma.IsSupported;
        if (!System.Runtime.Intrinsics.Vector512.IsHardwareAccelerated && !avx2)
        {
            Assert.That(CpuBackend.UsesBlocked(130, 150, 90), Is.False, "without AVX-512 or AVX2 the tiles serve every shape");
            return;
        }
        Assert.That(CpuBackend.UsesBlocked(130, 150, 90), Is.True);
        Assert.That(CpuBackend.BlockedWide, Is.EqualTo(System.Runtime.Intrinsics.Vector512.IsHardwareAccelerated));
        Assert.That(CpuBackend.UsesBlocked(32, 32, 32), Is.False, "tiny products stay on the tiles");
    }

    /// <summary>The float32 e^x that GELU, SiLU, softmax and cross-entropy share: within 2 ulp of the
    /// float64 exponential from −87.3 to 88.0 (to 88.7 it may give +∞), 0 below, +∞ above, NaN for NaN (the clamp's operand order
    /// lets a NaN through: the activations' own tests cannot see this, their other terms carry the NaN).</summary>
    [Test]
    public void TheFloat32ExponentialIsAccurateAndKeepsNaN()
    {
        if (!System.Runtime.Intrinsics.Vector256.IsHardwareAccelerated) Assert.Ignore("no 256-bit vectors");
        var xs = new List<float> { float.NaN, float.PositiveInfinity, float.NegativeInfinity, -87.4f, -87.3f, 88.7f, 88.8f, 0f, -0f, 1f, -1f, 1e-8f, -1e-8f };
        for (int i = 0; i < 2000; i++) xs.Add(-87f + 175.5f * i / 1999f);
        while (xs.Count % 8 != 0) xs.Add(0.5f);
        for (int i = 0; i < xs.Count; i += 8)
        {
            var e = CpuBackend.ExpF32(System.Runtime.Intrinsics.Vector256.Create(xs.GetRange(i, 8).ToArray()));
            for (int j = 0; j < 8; j++)
            {
                float x = xs[i + j], got = e[j];
                if (float.IsNaN(x)) { Assert.That(float.IsNaN(got), $"e^NaN gave {got}"); continue; }
                if (x < -87.3365447f) { Assert.That(got, Is.EqualTo(0f), $"e^{x}"); continue; }
                if (x > 88.7228391f) { Assert.That(got, Is.EqualTo(float.PositiveInfinity), $"e^{x}"); continue; }
                double want = Math.Exp(x);
                if (x > 88.02f && float.IsPositiveInfinity(got)) continue;   // 2^128 overflows in the scaling step: the documented +∞ from ≈ 88.03
                Assert.That(Math.Abs(got - want), Is.LessThanOrEqualTo(2 * (MathF.BitIncrement((float)want) - (float)want)), $"e^{x}: {got} vs {want}");
            }
        }
    }

    /// <summary>The vectorised float32 activations (SiLU; GELU, erf form) against the float64 kernel on
    /// the same values, forward and backward: within 4e-7 of each element's own scale (|y| or 1,
    /// |dx|), over −30 … 30 (1,003 values, so 8-lane blocks and a scalar tail), ±100 and 0; a NaN stays NaN.</summary>
    [TestCase(UnaryOp.Silu)]
    [TestCase(UnaryOp.GeluErf)]
    public void Float32ActivationsMatchTheFloat64Kernel(UnaryOp op)
    {
        var values = Enumerable.Range(0, 1003).Select(i => -30.0 + 60.0 * i / 1002).Concat(new[] { -100.0, 100.0, 0.0, double.NaN }).ToArray();
        var rng = new Random(5);
        var upstream = values.Select(_ => rng.NextDouble() * 2 - 1).ToArray();
        double[] Run(DType dtype, bool backward)
        {
            var x = Tensor.FromDoubles(values, [values.Length], dtype);
            var y = Tensor.FromDoubles(new double[values.Length], [values.Length], dtype);
            Backends.Cpu.Unary(op, x, y);
            if (!backward) return y.ToDoubleArray();
            var dy = Tensor.FromDoubles(upstream, [values.Length], dtype);
            var dx = Tensor.FromDoubles(Enumerable.Repeat(0.5, values.Length).ToArray(), [values.Length], dtype); // accumulates into dx
            Backends.Cpu.UnaryBackward(op, x, y, dy, dx);
            return dx.ToDoubleArray();
        }
        foreach (bool backward in new[] { false, true })
        {
            var (got, want) = (Run(DType.F32, backward), Run(DType.F64, backward));
            for (int i = 0; i < values.Length; i++)
            {
                string what = $"{op} {(backward ? "backward" : "forward")} at x = {values[i]}";
                if (double.IsNaN(values[i])) { Assert.That(got[i], Is.NaN, what); continue; }
                // The float64 result rounded to float32 is as close as float32 can be: allow a few ulps more.
                Assert.That(Math.Abs(got[i] - want[i]), Is.LessThanOrEqualTo(4e-7 * Math.Max(1, Math.Abs(want[i]))), what);
            }
        }
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
