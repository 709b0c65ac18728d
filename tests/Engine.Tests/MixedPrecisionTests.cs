using Engine.Backend;
using Engine.Models;
using Engine.Models.Demo;
using Engine.Models.Tokenization;
using Engine.Models.Training;
using NUnit.Framework;

namespace Engine.Tests;

/// <summary>bf16 mixed-precision GEMMs on the CPU (the reference): the scope, the GEMM against an
/// explicit reference, a model forward within bf16 tolerance of float32, and bf16 training.</summary>
public class MixedPrecisionTests
{
    /// <summary>The bf16 value of x, exactly, as torch.tensor(x).bfloat16().double() gives it.</summary>
    internal static double Bf16(float x) => HalfBits.Bf16ToFloat(HalfBits.FloatToBf16(x));

    /// <summary>One batched GEMM case as IBackend.Gemm takes it (row-major, strides in elements).</summary>
    internal sealed record Case(bool TransA, bool TransB, int Batch, int M, int N, int K, bool SharedB, bool SummedC, double Alpha, double Beta)
    {
        public long StrideA => (long)M * K;
        public long StrideB => SharedB ? 0 : (long)K * N;
        public long StrideC => SummedC ? 0 : (long)M * N;
        public override string ToString() => $"{(TransA ? "Aᵀ" : "A")}·{(TransB ? "Bᵀ" : "B")} batch {Batch} m {M} n {N} k {K}{(SharedB ? " shared B" : "")}{(SummedC ? " summed C" : "")} α {Alpha} β {Beta}";
    }

    internal static IEnumerable<Case> Cases()
    {
        // Sizes that are not multiples of the 4×16 tile, so the edge tiles run too.
        foreach (var ta in new[] { false, true })
            foreach (var tb in new[] { false, true })
                yield return new Case(ta, tb, 1, 37, 45, 300, false, false, 1, 0);
        yield return new Case(false, true, 3, 9, 20, 64, SharedB: true, SummedC: false, 1, 0);     // a linear layer over a batch
        yield return new Case(true, false, 4, 7, 11, 33, SharedB: false, SummedC: true, 0.5, 2.0); // a weight gradient summed over the batch
        yield return new Case(false, false, 2, 5, 6, 8, false, false, -1.5, 0.25);
    }

    /// <summary>Element (i, j) of op(X) [rows × cols] for matrix `mat` of a packed row-major buffer:
    /// X is stored rows × cols, or cols × rows when trans.</summary>
    private static float At(float[] x, long stride, int mat, bool trans, int rows, int cols, int i, int j) =>
        trans ? x[mat * stride + (long)j * rows + i] : x[mat * stride + (long)i * cols + j];

    /// <summary>Runs the case on a backend (the CPU's unless given), under the open precision
    /// setting, from fixed random inputs made on the CPU.</summary>
    internal static (float[] A, float[] B, float[] C0, float[] C) Run(Case c, int seed, IBackend? backend = null)
    {
        var be = backend ?? Backends.Cpu;
        var rng = new Random(seed);
        int batchB = c.SharedB ? 1 : c.Batch, batchC = c.SummedC ? 1 : c.Batch;
        var a = Tensor.Randn([c.Batch * c.M * c.K], rng);
        var b = Tensor.Randn([batchB * c.K * c.N], rng);
        var c0 = Tensor.Randn([batchC * c.M * c.N], rng);
        var out_ = Tensor.FromArray(c0.ToFloatArray(), batchC * c.M * c.N).To(be.Device);
        be.Gemm(a.To(be.Device), 0, c.StrideA, c.TransA, b.To(be.Device), 0, c.StrideB, c.TransB, out_, 0, c.StrideC, c.Batch, c.M, c.N, c.K, c.Alpha, c.Beta);
        return (a.ToFloatArray(), b.ToFloatArray(), c0.ToFloatArray(), out_.ToFloatArray());
    }

    /// <summary>The product of the bf16-rounded inputs in float64, and for each element the scale
    /// Σ|a·b|·|α| + |β·c0| that float32 accumulation errors are proportional to.</summary>
    internal static (double[] Value, double[] Scale) Reference(Case c, float[] a, float[] b, float[] c0, bool roundInputs)
    {
        int batchC = c.SummedC ? 1 : c.Batch;
        var value = new double[batchC * c.M * c.N];
        var scale = new double[value.Length];
        for (int o = 0; o < value.Length; o++) { value[o] = c.Beta * c0[o]; scale[o] = Math.Abs(c.Beta * c0[o]); }
        for (int mat = 0; mat < c.Batch; mat++)
        {
            int matB = c.SharedB ? 0 : mat, matC = c.SummedC ? 0 : mat;
            for (int i = 0; i < c.M; i++)
                for (int j = 0; j < c.N; j++)
                {
                    double sum = 0, abs = 0;
                    for (int p = 0; p < c.K; p++)
                    {
                        float av = At(a, c.StrideA, mat, c.TransA, c.M, c.K, i, p), bv = At(b, (long)c.K * c.N, matB, c.TransB, c.K, c.N, p, j);
                        double x = roundInputs ? Bf16(av) : av, y = roundInputs ? Bf16(bv) : bv;
                        sum += x * y;
                        abs += Math.Abs(x * y);
                    }
                    int o = matC * c.M * c.N + i * c.N + j;
                    value[o] += c.Alpha * sum;
                    scale[o] += Math.Abs(c.Alpha) * abs;
                }
        }
        return (value, scale);
    }

    /// <summary>Float32 accumulation of k products (each exact in float32: bf16 × bf16 has 16
    /// significant bits) plus the α, β updates: |error| ≤ (k + 3)·u·scale with u = 2⁻²⁴, the
    /// standard bound for recursive summation, FMA or not. Doubled for margin.</summary>
    internal static double Tolerance(int k, double scale) => 2.0 * (k + 3) * Math.Pow(2, -24) * scale + 1e-30;

    [Test]
    public void Bf16GemmIsTheProductOfRoundedInputsWithFloat32Accumulation()
    {
        foreach (var c in Cases())
        {
            float[] a, b, c0, bf16, f32;
            using (MixedPrecision.Bf16()) (a, b, c0, bf16) = Run(c, 7);
            (_, _, _, f32) = Run(c, 7);
            var (reference, scale) = Reference(c, a, b, c0, roundInputs: true);
            double bf16Off = 0, f32Off = 0;
            for (int o = 0; o < reference.Length; o++)
            {
                Assert.That(Math.Abs(bf16[o] - reference[o]), Is.LessThanOrEqualTo(Tolerance(c.K, scale[o])), $"{c}: element {o}");
                bf16Off = Math.Max(bf16Off, Math.Abs(bf16[o] - reference[o]));
                f32Off = Math.Max(f32Off, Math.Abs(f32[o] - reference[o]));
            }
            // The plain float32 GEMM is far from the rounded-input product (inputs off by up to 2⁻⁹
            // relative, against float32 sums off by ~2⁻²⁴·√k): the mode was really on.
            Assert.That(f32Off, Is.GreaterThan(100 * bf16Off), $"{c}: float32 results should differ from the bf16 reference");

            // And the float32 GEMM (no scope) is the product of the unrounded inputs, to the same bound.
            var (plain, plainScale) = Reference(c, a, b, c0, roundInputs: false);
            for (int o = 0; o < plain.Length; o++)
                Assert.That(Math.Abs(f32[o] - plain[o]), Is.LessThanOrEqualTo(Tolerance(c.K, plainScale[o])), $"{c} float32: element {o}");
        }
    }

    [Test]
    public void VectorisedRoundingIsTheScalarRoundingBitForBit()
    {
        var values = new List<float>
        {
            0f, -0f, 1f, -1f, float.NaN, float.PositiveInfinity, float.NegativeInfinity, float.MaxValue, float.MinValue,
            float.Epsilon, -float.Epsilon, 1e-40f, 3.0e38f, 3.3961776e38f, // the last rounds up to infinity
            BitConverter.UInt32BitsToSingle(0x3F808000), // a tie, even below: rounds down
            BitConverter.UInt32BitsToSingle(0x3F818000), // a tie, odd below: rounds up
            BitConverter.UInt32BitsToSingle(0x3F808001), BitConverter.UInt32BitsToSingle(0x3F807FFF),
            BitConverter.UInt32BitsToSingle(0x7FA00001), // a signalling NaN: becomes a quiet NaN
        };
        var rng = new Random(3);
        for (int i = 0; i < 1000; i++) values.Add(BitConverter.UInt32BitsToSingle((uint)rng.NextInt64(0, 1L << 32)));
        var src = values.ToArray();
        var dst = new float[src.Length];
        HalfBits.RoundToBf16(src, dst);
        for (int i = 0; i < src.Length; i++)
            Assert.That(BitConverter.SingleToUInt32Bits(dst[i]), Is.EqualTo(BitConverter.SingleToUInt32Bits(HalfBits.Bf16ToFloat(HalfBits.FloatToBf16(src[i])))),
                $"0x{BitConverter.SingleToUInt32Bits(src[i]):X8}");
        Assert.That(BitConverter.SingleToUInt32Bits(dst[14]), Is.EqualTo(0x3F800000u));
        Assert.That(BitConverter.SingleToUInt32Bits(dst[15]), Is.EqualTo(0x3F820000u));
        Assert.That(float.IsPositiveInfinity(dst[13]));
        Assert.That(float.IsNaN(dst[18]));
    }

    [Test]
    public void ScopesNestRestoreAndStayOnTheirThread()
    {
        Assert.That(MixedPrecision.Current, Is.EqualTo(GemmPrecision.F32));
        using (MixedPrecision.Bf16())
        {
            Assert.That(MixedPrecision.GemmInBf16);
            using (MixedPrecision.F32()) Assert.That(MixedPrecision.Current, Is.EqualTo(GemmPrecision.F32));
            Assert.That(MixedPrecision.Current, Is.EqualTo(GemmPrecision.Bf16));
            using (MixedPrecision.Bf16()) Assert.That(MixedPrecision.Current, Is.EqualTo(GemmPrecision.Bf16));
            Assert.That(MixedPrecision.Current, Is.EqualTo(GemmPrecision.Bf16), "an inner bf16 scope restores bf16, not f32");
            GemmPrecision other = GemmPrecision.Bf16;
            var thread = new Thread(() => other = MixedPrecision.Current);
            thread.Start();
            thread.Join();
            Assert.That(other, Is.EqualTo(GemmPrecision.F32), "thread-static: another thread does not see this thread's scope");
        }
        Assert.That(MixedPrecision.Current, Is.EqualTo(GemmPrecision.F32));

        var outer = MixedPrecision.Bf16();
        var inner = MixedPrecision.F32();
        Assert.Throws<InvalidOperationException>(() => outer.Dispose(), "out of order");
        inner.Dispose();
        outer.Dispose();
        outer.Dispose(); // a second Dispose does nothing
        Assert.That(MixedPrecision.Current, Is.EqualTo(GemmPrecision.F32));
    }

    [Test]
    public void NamesParseAndAnythingElseIsAOneLineError()
    {
        Assert.That(MixedPrecision.Parse("f32"), Is.EqualTo(GemmPrecision.F32));
        Assert.That(MixedPrecision.Parse("bf16"), Is.EqualTo(GemmPrecision.Bf16));
        var e = Assert.Throws<EngineException>(() => MixedPrecision.Parse("f16", "--dtype"));
        Assert.That(e!.Message, Does.StartWith("--dtype must be f32 or bf16, got 'f16'"));
        Assert.Throws<EngineException>(() => new TrainOptions { Precision = "fp16" }.Validate());
        new TrainOptions { Precision = "bf16" }.Validate();
    }

    [Test]
    public void Float64GemmsIgnoreTheScope()
    {
        var rng = new Random(4);
        var a = Tensor.Randn([6, 9], rng, DType.F64); var b = Tensor.Randn([9, 5], rng, DType.F64);
        var plain = Ops.MatMul(a, b).ToDoubleArray();
        using (MixedPrecision.Bf16()) Assert.That(Ops.MatMul(a, b).ToDoubleArray(), Is.EqualTo(plain));
    }

    [Test]
    public void BackwardGemmsRoundTheirInputsToo()
    {
        // y = x·Wᵀ with an upstream gradient g: dx = g·W and dW = gᵀ·x, each from bf16-rounded inputs.
        var rng = new Random(8);
        int n = 13, din = 40, dout = 24;
        var x = Tensor.Randn([n, din], rng); var w = Tensor.Randn([dout, din], rng); var g = Tensor.Randn([n, dout], rng);
        x.RequiresGrad = true; w.RequiresGrad = true;
        using (Scope.Begin())
        using (MixedPrecision.Bf16())
            Ops.MatMul(x, w, transB: true).Backward(g);
        float[] xs = x.ToFloatArray(), ws = w.ToFloatArray(), gs = g.ToFloatArray(), dx = x.Grad!.ToFloatArray(), dw = w.Grad!.ToFloatArray();
        for (int i = 0; i < n; i++)
            for (int j = 0; j < din; j++)
            {
                double sum = 0, abs = 0;
                for (int o = 0; o < dout; o++) { double t = Bf16(gs[i * dout + o]) * Bf16(ws[o * din + j]); sum += t; abs += Math.Abs(t); }
                Assert.That(Math.Abs(dx[i * din + j] - sum), Is.LessThanOrEqualTo(Tolerance(dout, abs)), $"dx[{i},{j}]");
            }
        for (int o = 0; o < dout; o++)
            for (int j = 0; j < din; j++)
            {
                double sum = 0, abs = 0;
                for (int i = 0; i < n; i++) { double t = Bf16(gs[i * dout + o]) * Bf16(xs[i * din + j]); sum += t; abs += Math.Abs(t); }
                Assert.That(Math.Abs(dw[o * din + j] - sum), Is.LessThanOrEqualTo(Tolerance(n, abs)), $"dW[{o},{j}]");
            }
    }

    private static Tensor Logits(SequenceClassifier model, Tensor ids, Tensor mask)
    {
        using var scope = Scope.Begin();
        using var noGrad = Autograd.Tape.NoGrad();
        return scope.Keep(model.Forward(ids, mask).Logits);
    }

    [Test]
    public void ABertForwardInBf16IsWithinBf16ToleranceOfFloat32()
    {
        using var temp = new TempFolder();
        var folder = DemoModel.CreateFolder(Path.Combine(temp.Path, "bert"), seed: 2, hidden: 64);
        var rng = new Random(5);
        var ids = Tensor.FromArray(Enumerable.Range(0, 4 * 16).Select(_ => rng.Next(4, folder.VocabSize)).ToArray(), 4, 16);
        var mask = Tensor.FromArray(Enumerable.Range(0, 4 * 16).Select(i => i % 16 < 12 + i / 16 ? 1 : 0).ToArray(), 4, 16);
        foreach (var training in new[] { false, true }) // training: dropout on, so BERT composes attention from MatMul (rounded too)
        {
            // A fresh model per pass: the same weights and the same dropout masks (its seed counter starts over).
            SequenceClassifier Model()
            {
                var m = SequenceClassifier.FromFolder(folder, 2, numLabels: 2);
                if (training) m.Train(); else m.Eval();
                return m;
            }
            var f32 = Logits(Model(), ids, mask).ToDoubleArray();
            double[] bf16;
            using (MixedPrecision.Bf16()) bf16 = Logits(Model(), ids, mask).ToDoubleArray();
            double scale = f32.Max(Math.Abs), err = f32.Zip(bf16, (p, q) => Math.Abs(p - q)).Max() / scale;
            // bf16 keeps 8 significant bits: each rounded input is off by up to 2⁻⁹ ≈ 2e-3 relative, and
            // the logits pass through ~10 GEMMs (2 layers × 4–6, pooler, head) with layer norms between.
            // Relative errors of a few 1e-3 per GEMM add to ~1e-2; 3e-2 of the largest logit is the bound
            // (measured: 5.9e-3 in evaluation mode, 1.7e-3 in training mode).
            TestContext.Out.WriteLine($"{(training ? "train" : "eval")}: max |bf16 − f32| / max |f32| = {err:E2}");
            Assert.That(err, Is.LessThanOrEqualTo(3e-2), training ? "training mode" : "evaluation mode");
            Assert.That(err, Is.GreaterThan(1e-6), "bf16 must change the logits (the mode is on)");
        }
    }

    /// <summary>The demo's model and task, memorised: 32 examples, batch 8, lr 5e-3 — small enough
    /// to learn in 60 steps (a fraction of a second), so the loss must fall well below log 2.</summary>
    private static TrainResult TrainDemo(string precision, int steps)
    {
        using var temp = new TempFolder();
        var folder = DemoModel.CreateFolder(Path.Combine(temp.Path, "init"), 3, hidden: 32);
        var model = SequenceClassifier.FromFolder(folder, 3, numLabels: 2);
        var options = new TrainOptions { MaxSteps = steps, BatchSize = 8, LearningRate = 5e-3, MaxLength = 32, Seed = 3, LogEvery = 1, WarmupRatio = 0, Precision = precision };
        options.Validate();
        var trainer = new Trainer(model, folder, TextTokenizer.FromFolder(folder), options, DemoModel.LabelNames, regression: false);
        return trainer.Train(DemoModel.Data(32, 5, "train").Examples, null);
    }

    [Test]
    public void TrainingInBf16ReducesTheLossLikeFloat32()
    {
        const int steps = 60;
        var f32 = TrainDemo("f32", steps).Losses;
        var bf16 = TrainDemo("bf16", steps).Losses;
        double First(IReadOnlyList<double> l) => l.Take(5).Average();
        double Last(IReadOnlyList<double> l) => l.Skip(steps - 10).Average();
        TestContext.Out.WriteLine($"mean loss, first 5 → last 10 steps: f32 {First(f32):F4} → {Last(f32):F4}; bf16 {First(bf16):F4} → {Last(bf16):F4}");
        Assert.That(bf16, Is.Not.EqualTo(f32), "bf16 must change the run");
        Assert.That(Math.Abs(bf16[0] - f32[0]), Is.LessThan(1e-2), "the first step's loss differs only by GEMM rounding");
        // Measured: 0.695 → 0.17 for both (the last steps swing between 0.04 and 0.45 as single batches are memorised).
        Assert.That(Last(f32), Is.LessThan(First(f32) - 0.3), "float32 learns");
        Assert.That(Last(bf16), Is.LessThan(First(bf16) - 0.3), "bf16 learns");
        Assert.That(Math.Abs(Last(bf16) - Last(f32)), Is.LessThan(0.1), "and about as far");
    }
}
