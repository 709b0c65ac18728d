using System.Text.RegularExpressions;
using Engine.Backend;
using Engine.Kernels;
using NUnit.Framework;

namespace Engine.Tests.Cuda;

/// <summary>Parts of the CUDA backend checked on the host: the GEMM argument mapping and the
/// dropout hash.</summary>
public class HostSideTests
{
    [Test]
    public void GemmMappingMatchesTheDocumentedCalls()
    {
        // docs/cuda.md: C = A·B → gemm(N, N, N, M, K, B, N, A, K, C, N).
        Assert.That(GemmMapping.RowMajor(false, false, 5, 7, 3), Is.EqualTo(new GemmMapping(false, false, 7, 5, 3, 7, 3, 7)));
        // C = A·Bᵀ with B [N×K] → gemm(T, N, N, M, K, B, K, A, K, C, N).
        Assert.That(GemmMapping.RowMajor(false, true, 5, 7, 3), Is.EqualTo(new GemmMapping(true, false, 7, 5, 3, 3, 3, 7)));
        // C = Aᵀ·B with A [K×M] → gemm(N, T, N, M, K, B, N, A, M, C, N).
        Assert.That(GemmMapping.RowMajor(true, false, 5, 7, 3), Is.EqualTo(new GemmMapping(false, true, 7, 5, 3, 7, 5, 7)));
    }

    /// <summary>A device allocation that fails for want of memory is one line naming what was asked
    /// for, what the device has free and what to change (issue: reliability).</summary>
    [Test]
    public void OutOfMemoryNamesRequestedAndFreeBytes()
    {
        var line = DeviceAllocator.OutOfMemoryMessage(1, 3L << 30, 512L << 20, 80L << 30, 70L << 30);
        Assert.That(line, Does.StartWith("cuda:1 is out of memory: 3072 MiB requested, 512 MiB free of 81920 MiB"));
        Assert.That(line, Does.Contain("71680 MiB").And.Contain("--batch").And.Not.Contain("\n"));
    }

    /// <summary>A column-major reference GEMM with cuBLAS's argument meaning:
    /// C[m×n] = op(X)[m×k]·op(Y)[k×n] + beta·C, X with leading dim ldx, etc.</summary>
    private static void ColumnMajorGemm(bool tx, bool ty, int m, int n, int k, double[] x, int ldx, double[] y, int ldy, double[] c, int ldc, double beta)
    {
        for (int j = 0; j < n; j++)
            for (int i = 0; i < m; i++)
            {
                double s = 0;
                for (int p = 0; p < k; p++)
                    s += (tx ? x[p + i * ldx] : x[i + p * ldx]) * (ty ? y[j + p * ldy] : y[p + j * ldy]);
                c[i + j * ldc] = s + beta * c[i + j * ldc];
            }
    }

    [Test]
    public void GemmMappingOnAColumnMajorGemmGivesTheRowMajorProduct()
    {
        var rng = new Random(7);
        foreach (var (ta, tb) in new[] { (false, false), (false, true), (true, false), (true, true) })
        {
            int m = 4, n = 3, k = 5;
            var a = Tensor.Randn(ta ? [k, m] : [m, k], rng, DType.F64);
            var b = Tensor.Randn(tb ? [n, k] : [k, n], rng, DType.F64);
            var expected = Tensor.Zeros([m, n], DType.F64);
            Backends.Cpu.Gemm(a, 0, 0, ta, b, 0, 0, tb, expected, 0, 0, 1, m, n, k, 1.0, 0.0);

            var map = GemmMapping.RowMajor(ta, tb, m, n, k);
            var c = new double[m * n];
            ColumnMajorGemm(map.TransFirst, map.TransSecond, map.M, map.N, map.K, b.ToDoubleArray(), map.LdFirst, a.ToDoubleArray(), map.LdSecond, c, map.LdC, 0);
            Assert.That(c, Is.EqualTo(expected.ToDoubleArray()).Within(1e-12), $"transA {ta}, transB {tb}");
        }
    }

    /// <summary>A line-by-line C# port of rng_mix / rng_uniform in Cuda/common.cuh.</summary>
    private static float PortedUniform(ulong seed, ulong index)
    {
        ulong z = seed * 0x9E3779B97F4A7C15UL + index + 0x632BE59BD9B4E019UL;
        z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9UL;
        z = (z ^ (z >> 27)) * 0x94D049BB133111EBUL;
        z ^= z >> 31;
        return (float)(z >> 40) * (1.0f / 16777216.0f);
    }

    [Test]
    public void TheKernelDropoutHashIsRngBitForBit()
    {
        // The port must be the kernel's code: its constants and shifts appear in common.cuh.
        var header = KernelSources.Header;
        var body = header[header.IndexOf("rng_mix(u64 seed", StringComparison.Ordinal)..];
        body = body[..body.IndexOf("rng_uniform", StringComparison.Ordinal)];
        var constants = Regex.Matches(body, @"0x([0-9A-Fa-f]+)ull").Select(m => Convert.ToUInt64(m.Groups[1].Value, 16)).ToArray();
        Assert.That(constants, Is.EqualTo(new[] { 0x9E3779B97F4A7C15UL, 0x632BE59BD9B4E019UL, 0xBF58476D1CE4E5B9UL, 0x94D049BB133111EBUL }));
        Assert.That(Regex.Matches(body, @">> (\d+)").Select(m => m.Groups[1].Value), Is.EqualTo(new[] { "30", "27", "31" }));
        Assert.That(header, Does.Contain("(rng_mix(seed, index) >> 40) * (1.0f / 16777216.0f)"));

        var rng = new Random(3);
        for (int s = 0; s < 50; s++)
        {
            ulong seed = (ulong)rng.NextInt64() ^ ((ulong)rng.Next() << 40);
            for (ulong i = 0; i < 2000; i += 1 + (ulong)rng.Next(5))
                Assert.That(BitConverter.SingleToInt32Bits(PortedUniform(seed, i)), Is.EqualTo(BitConverter.SingleToInt32Bits(Rng.Uniform(seed, i))));
        }
    }

    /// <summary>The GPU embedding backward's grouping, run through a host copy of the kernel's
    /// loop: equal to the CPU scatter-add bit for bit (same order of additions per row), with
    /// repeated ids, ids in any order and out-of-range ids left out.</summary>
    [Test]
    public void EmbeddingSegmentsGiveTheCpuScatterAdd()
    {
        var rng = new Random(4);
        int vocab = 23, d = 5, n = 200;
        var ids = Enumerable.Range(0, n).Select(_ => rng.Next(0, 12) * 2 % vocab).ToArray();
        ids[7] = -1; ids[50] = vocab; // left out (the kernel must not write outside the table)
        var dy = Tensor.Randn([n, d], rng);
        var plan = EmbeddingSegments.Plan(ids, vocab);
        Assert.That(plan.Tokens, Is.EqualTo(n - 2));
        Assert.That(plan.Segments, Is.EqualTo(ids.Where(i => i >= 0 && i < vocab).Distinct().Count()));

        var order = plan.Packed.AsSpan(0, plan.Tokens);
        var starts = plan.Packed.AsSpan(plan.Tokens, plan.Segments + 1);
        var segIds = plan.Packed.AsSpan(plan.Tokens + plan.Segments + 1, plan.Segments);
        var dyv = dy.ToFloatArray();
        var dw = new float[vocab * d];
        for (int s = 0; s < plan.Segments; s++)
            for (int j = 0; j < d; j++)
            {
                float acc = dw[segIds[s] * d + j];
                for (int r = starts[s]; r < starts[s + 1]; r++)
                {
                    Assert.That(ids[order[r]], Is.EqualTo(segIds[s]));
                    if (r > starts[s]) Assert.That(order[r], Is.GreaterThan(order[r - 1]), "token order within an id");
                    acc += dyv[order[r] * d + j];
                }
                dw[segIds[s] * d + j] = acc;
            }

        var inRange = ids.Select((id, r) => (id, r)).Where(p => p.id >= 0 && p.id < vocab).ToArray();
        var cpuIds = Tensor.FromArray(inRange.Select(p => p.id).ToArray(), inRange.Length);
        var cpuDy = Tensor.FromArray(inRange.SelectMany(p => dyv.Skip(p.r * d).Take(d)).ToArray(), inRange.Length, d);
        var cpuDw = Tensor.Zeros([vocab, d]);
        Backends.Cpu.EmbeddingBackward(cpuIds, cpuDy, cpuDw);
        Assert.That(dw, Is.EqualTo(cpuDw.ToFloatArray()));
    }

    /// <summary>The GEMM decomposition the CUDA attention runs (<see cref="AttentionGemms"/>),
    /// executed with the CPU's GEMM and softmax backward and a host copy of the masked-softmax
    /// kernel: equal to the CPU's fused attention forward and backward in float64, for grouped
    /// heads, a padding mask, and causal masking with as many or fewer queries than keys (the op
    /// refuses more).</summary>
    [TestCase(2, 4, 2, 5, 7, 3, true, false)]
    [TestCase(2, 4, 2, 5, 7, 3, false, true)]
    [TestCase(1, 3, 1, 4, 6, 2, true, true)]
    [TestCase(3, 2, 2, 4, 4, 5, false, false)]
    public void AttentionAsBatchedGemmsEqualsTheFusedOp(int B, int H, int Hkv, int T, int S, int D, bool causal, bool masked)
    {
        var be = Backends.Cpu;
        var rng = new Random(B * 100 + T * 10 + S);
        var q = Tensor.Randn([B, H, T, D], rng, DType.F64);
        var k = Tensor.Randn([B, Hkv, S, D], rng, DType.F64);
        var v = Tensor.Randn([B, Hkv, S, D], rng, DType.F64);
        var dO = Tensor.Randn([B, H, T, D], rng, DType.F64);
        var mask = masked ? Tensor.FromDoubles(Enumerable.Range(0, B * S).Select(i => i % S == S - 1 ? double.MinValue : 0.0).ToArray(), [B, S], DType.F64) : null;
        double scale = 1 / Math.Sqrt(D);
        void Run(GemmSpec g, Tensor a, Tensor b, Tensor c) =>
            be.Gemm(a, 0, g.StrideA, g.TransA, b, 0, g.StrideB, g.TransB, c, 0, g.StrideC, g.Batch, g.M, g.N, g.K, g.Alpha, g.Beta);

        var probs = Tensor.Zeros([B, H, T, S], DType.F64);
        Run(AttentionGemms.Scores(B, H, T, D, Hkv, S, scale), q, k, probs);
        // attention_softmax, on the host
        var p = probs.Span<double>();
        var m = mask?.ToDoubleArray();
        for (int row = 0; row < B * H * T; row++)
        {
            int t = row % T, b = row / T / H;
            int visible = causal ? Math.Clamp(t + S - T + 1, 0, S) : S;
            var r = p.Slice(row * S, S);
            double max = double.NegativeInfinity, sum = 0;
            for (int s2 = 0; s2 < visible; s2++) { if (m is not null) r[s2] += m[b * S + s2]; max = Math.Max(max, r[s2]); }
            for (int s2 = 0; s2 < S; s2++) { if (s2 < visible) { r[s2] = Math.Exp(r[s2] - max); sum += r[s2]; } else r[s2] = 0; }
            for (int s2 = 0; s2 < visible; s2++) r[s2] /= sum;
        }
        var o = Tensor.Zeros([B, H, T, D], DType.F64);
        Run(AttentionGemms.Output(B, H, T, D, Hkv, S), probs, v, o);

        var o2 = Tensor.Zeros([B, H, T, D], DType.F64);
        var probs2 = Tensor.Zeros([B, H, T, S], DType.F64);
        be.Attention(q, k, v, mask, causal, scale, o2, probs2);
        Assert.That(probs.ToDoubleArray(), Is.EqualTo(probs2.ToDoubleArray()).Within(1e-12), "probabilities");
        Assert.That(o.ToDoubleArray(), Is.EqualTo(o2.ToDoubleArray()).Within(1e-12), "output");

        var dP = Tensor.Zeros([B, H, T, S], DType.F64);
        var dS = Tensor.Zeros([B, H, T, S], DType.F64);
        Run(AttentionGemms.ProbabilityGradient(B, H, T, D, Hkv, S), dO, v, dP);
        be.SoftmaxBackward(probs, dP, dS);
        Tensor dq = Tensor.Zeros([B, H, T, D], DType.F64), dk = Tensor.Zeros([B, Hkv, S, D], DType.F64), dv = Tensor.Zeros([B, Hkv, S, D], DType.F64);
        Run(AttentionGemms.QueryGradient(B, H, T, D, Hkv, S, scale), dS, k, dq);
        Run(AttentionGemms.KeyGradient(B, H, T, D, Hkv, S, scale), dS, q, dk);
        Run(AttentionGemms.ValueGradient(B, H, T, D, Hkv, S), probs, dO, dv);
        Tensor dq2 = Tensor.Zeros([B, H, T, D], DType.F64), dk2 = Tensor.Zeros([B, Hkv, S, D], DType.F64), dv2 = Tensor.Zeros([B, Hkv, S, D], DType.F64);
        be.AttentionBackward(q, k, v, probs2, dO, scale, dq2, dk2, dv2);
        Assert.That(dq.ToDoubleArray(), Is.EqualTo(dq2.ToDoubleArray()).Within(1e-12), "dq");
        Assert.That(dk.ToDoubleArray(), Is.EqualTo(dk2.ToDoubleArray()).Within(1e-12), "dk");
        Assert.That(dv.ToDoubleArray(), Is.EqualTo(dv2.ToDoubleArray()).Within(1e-12), "dv");
    }
}
