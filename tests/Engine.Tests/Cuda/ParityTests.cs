using Engine.Backend;
using Engine.Kernels;
using Engine.Optim;
using NUnit.Framework;

namespace Engine.Tests.Cuda;

/// <summary>CUDA against the CPU: every catalog op, the optimizers, the dropout mask, a few
/// training steps. On a GPU when there is one, else on the CPU emulator (race-checked:
/// <see cref="CudaTestSupport.Backend"/>).</summary>
public class ParityTests
{
    public static IEnumerable<string> OpNames => OpCatalog.All.Select(e => e.Name);

    [TestCaseSource(nameof(OpNames))]
    public void EveryOpMatchesTheCpuForwardAndBackward(string name)
    {
        var gpu = CudaTestSupport.Backend();
        var entry = OpCatalog.Find(name)!;
        foreach (var seed in new[] { 1, 2, 3, 4, 5 })
        {
            var r = CudaParity.Check(entry, seed, gpu.Device);
            Assert.That(r.Error, Is.Null, $"{name} seed {seed}: {r.Case}");
            // F32 on the GPU vs F64 on the CPU: scaled max error ≤ 1e-4 (CudaParity.F32Tolerance).
            Assert.That(r.ForwardError, Is.LessThanOrEqualTo(CudaParity.F32Tolerance), $"{name} seed {seed} forward: {r.Case}");
            Assert.That(r.GradientError, Is.LessThanOrEqualTo(CudaParity.F32Tolerance), $"{name} seed {seed} gradients: {r.Case}");
        }
    }

    /// <summary>Ops at shapes the catalog's small random ones never reach: rows longer than a
    /// warp and than a block (several warps in a block reduction, threads looping over a row),
    /// parameter-gradient column sums over several row chunks and column blocks, attention over
    /// 300 keys, an embedding 300 wide (two column blocks) with repeated ids, whole-tensor sums
    /// with 1024 partials, and more elements than a grid-stride loop covers in one sweep.</summary>
    public static IEnumerable<string> LargeShapeNames => LargeShapes().Select(e => e.Name);

    private static IEnumerable<OpEntry> LargeShapes()
    {
        static Tensor N(Random r, DType t, params int[] shape) => Tensor.Randn(shape, r, t);
        static OpEntry Entry(string name, int[] shape, Func<Random, DType, Tensor[]> inputs, bool[] differentiable, Func<Tensor[], Tensor> apply) =>
            new(name, "large", name, (r, t) => new OpCase(name, inputs(r, t), differentiable, apply, shape));
        return
        [
            Entry("softmax [3, 700]", [3, 700], (r, t) => [N(r, t, 3, 700)], [true], i => Ops.Softmax(i[0])),
            Entry("sum [2, 1000]", [2], (r, t) => [N(r, t, 2, 1000)], [true], i => Ops.Sum(i[0])),
            Entry("layer_norm [130, 300]", [130, 300], (r, t) => [N(r, t, 130, 300), N(r, t, 300), N(r, t, 300)], [true, true, true], i => Ops.LayerNorm(i[0], i[1], i[2])),
            Entry("rms_norm [130, 300]", [130, 300], (r, t) => [N(r, t, 130, 300), N(r, t, 300)], [true, true], i => Ops.RmsNorm(i[0], i[1])),
            Entry("cross_entropy [70, 300]", [], (r, t) => [N(r, t, 70, 300), Tensor.FromArray(Enumerable.Range(0, 70).Select(k => k % 9 == 4 ? -100 : k * 37 % 300).ToArray(), 70)],
                [true, false], i => Ops.CrossEntropy(i[0], i[1])),
            Entry("attention 300 keys, causal", [1, 2, 3, 4], (r, t) => [N(r, t, 1, 2, 3, 4), N(r, t, 1, 1, 300, 4), N(r, t, 1, 1, 300, 4)],
                [true, true, true], i => Ops.Attention(i[0], i[1], i[2], causal: true)),
            Entry("embedding [60] into [7, 300]", [60, 300], (r, t) => [Tensor.FromArray(Enumerable.Range(0, 60).Select(k => k * k % 7).ToArray(), 60), N(r, t, 7, 300)],
                [false, true], i => Ops.Embedding(i[0], i[1])),
            Entry("mse [300000]", [], (r, t) => [N(r, t, 300_000), N(r, t, 300_000)], [true, false], i => Ops.Mse(i[0], i[1])),
            Entry("weighted_sum 2 × [300000]", [300_000], (r, t) => [N(r, t, 300_000), N(r, t, 300_000), N(r, t, 2)],
                [true, true, true], i => Ops.WeightedSum([i[0], i[1]], i[2])),
            Entry("scale [1100000]", [1_100_000], (r, t) => [N(r, t, 1_100_000)], [true], i => Ops.Scale(i[0], 0.5)),
        ];
    }

    [TestCaseSource(nameof(LargeShapeNames))]
    public void LargeShapesMatchTheCpu(string name)
    {
        var gpu = CudaTestSupport.Backend();
        var entry = LargeShapes().Single(e => e.Name == name);
        var r = CudaParity.Check(entry, 1, gpu.Device);
        Assert.That(r.Error, Is.Null, entry.Name);
        Assert.That(r.ForwardError, Is.LessThanOrEqualTo(CudaParity.F32Tolerance), $"{entry.Name} forward");
        Assert.That(r.GradientError, Is.LessThanOrEqualTo(CudaParity.F32Tolerance), $"{entry.Name} gradients");
    }

    [Test]
    public void F64KernelsMatchTheCpuToRoundoff()
    {
        var gpu = CudaTestSupport.Backend();
        foreach (var entry in OpCatalog.All)
        {
            var c = entry.Generate(new Random(11), DType.F64);
            using var scope = Scope.Begin();
            var yc = c.Apply(c.Inputs).ToDoubleArray();
            var yg = c.Apply(c.Inputs.Select(t => t.To(gpu.Device)).ToArray()).ToDoubleArray();
            // Same formulas in float64; only summation order differs: 1e-12 scaled.
            Assert.That(CudaParity.Error(yg, yc), Is.LessThanOrEqualTo(1e-12), entry.Name);
        }
    }

    [Test]
    public void DropoutMaskIsTheHostMaskBitForBit()
    {
        var gpu = CudaTestSupport.Backend();
        foreach (ulong seed in new[] { 0UL, 1UL, 0xDEADBEEFCAFEF00DUL })
        {
            var draws = gpu.UniformDraws(seed, 4096);
            for (int i = 0; i < draws.Length; i++)
                Assert.That(BitConverter.SingleToInt32Bits(draws[i]), Is.EqualTo(BitConverter.SingleToInt32Bits(Rng.Uniform(seed, (ulong)i))), $"seed {seed}, i {i}");
        }
    }

    [Test]
    public void AdamWAndSgdStepsMatchTheCpu()
    {
        var gpu = CudaTestSupport.Backend();
        var rng = new Random(5);
        int n = 1000;
        var p = Tensor.Randn([n], rng); var g = Tensor.Randn([n], rng);
        var m = Tensor.Zeros([n]); var v = Tensor.Zeros([n]); var buf = Tensor.Zeros([n]);
        var (pg, gg, mg, vg) = (p.To(gpu.Device), g.To(gpu.Device), m.To(gpu.Device), v.To(gpu.Device));
        for (int step = 1; step <= 5; step++)
        {
            Backends.Cpu.AdamW(p, g, m, v, 1e-2, 0.9, 0.999, 1e-8, 0.01, step);
            gpu.AdamW(pg, gg, mg, vg, 1e-2, 0.9, 0.999, 1e-8, 0.01, step);
        }
        // Same float32 formula; differences come from FMA contraction only: 1e-6 scaled.
        Assert.That(CudaParity.Error(pg.ToDoubleArray(), p.ToDoubleArray()), Is.LessThanOrEqualTo(1e-6));
        Assert.That(CudaParity.Error(vg.ToDoubleArray(), v.ToDoubleArray()), Is.LessThanOrEqualTo(1e-6));

        var bg = buf.To(gpu.Device);
        for (int step = 0; step < 3; step++)
        {
            Backends.Cpu.Sgd(p, g, buf, 1e-2, 0.9, 0.1, 0.01, true, step == 0);
            gpu.Sgd(pg, gg, bg, 1e-2, 0.9, 0.1, 0.01, true, step == 0);
        }
        Assert.That(CudaParity.Error(pg.ToDoubleArray(), p.ToDoubleArray()), Is.LessThanOrEqualTo(1e-6));
    }

    [Test]
    public void SumSquaresAndStrideZeroGemmMatchTheCpu()
    {
        var gpu = CudaTestSupport.Backend();
        var rng = new Random(9);
        var x = Tensor.Randn([3, 1000], rng, DType.F64);
        Assert.That(gpu.SumSquares(x.To(gpu.Device)), Is.EqualTo(Backends.Cpu.SumSquares(x)).Within(1e-9).Percent);
        // The list form (gradient clipping): one readback for several tensors, the same total as single calls.
        var xs = new[] { x, Tensor.Randn([7], rng, DType.F64), Tensor.Randn([300, 41], rng, DType.F64) };
        var onGpu = xs.Select(t => t.To(gpu.Device)).ToList();
        Assert.That(gpu.SumSquares(onGpu), Is.EqualTo(onGpu.Sum(t => gpu.SumSquares(t))));
        Assert.That(gpu.SumSquares(onGpu), Is.EqualTo(Backends.Cpu.SumSquares(xs)).Within(1e-9).Percent);

        // A batch of 4 products summed into one C (stride 0), beta applied once.
        var a = Tensor.Randn([4, 3, 5], rng, DType.F64); var b = Tensor.Randn([4, 5, 2], rng, DType.F64);
        var c = Tensor.Randn([3, 2], rng, DType.F64);
        var cg = c.To(gpu.Device);
        Backends.Cpu.Gemm(a, 0, 15, false, b, 0, 10, false, c, 0, 0, 4, 3, 2, 5, 0.5, 2.0);
        gpu.Gemm(a.To(gpu.Device), 0, 15, false, b.To(gpu.Device), 0, 10, false, cg, 0, 0, 4, 3, 2, 5, 0.5, 2.0);
        Assert.That(CudaParity.Error(cg.ToDoubleArray(), c.ToDoubleArray()), Is.LessThanOrEqualTo(1e-12));
    }

    /// <summary>A small transformer classifier built from catalog ops (embedding, layer norm,
    /// attention, linear, GELU, gather, cross-entropy) whose parameters start from one seed on
    /// any device, so one training step compares across backends with nothing but ops (the model
    /// families' own device runs are Devices/DeviceModelTests and the dry-run tests).</summary>
    private sealed class Classifier
    {
        public readonly List<Tensor> Parameters = new();
        private readonly Tensor tok, ln_w, ln_b, wq, wk, wv, w1, b1, head;

        public Classifier(Device device, int seed, int vocab = 16, int dim = 16, int classes = 3)
        {
            var rng = new Random(seed);
            Tensor P(int[] shape, double std) { var p = Tensor.Parameter(Tensor.Randn(shape, rng, DType.F32, std).To(device)); Parameters.Add(p); return p; }
            Tensor C(int[] shape, double value) { var p = Tensor.Parameter(Tensor.Full(shape, value).To(device)); Parameters.Add(p); return p; }
            tok = P([vocab, dim], 0.5); ln_w = C([dim], 1); ln_b = C([dim], 0);
            wq = P([dim, dim], 0.25); wk = P([dim, dim], 0.25); wv = P([dim, dim], 0.25);
            w1 = P([dim, dim], 0.25); b1 = C([dim], 0); head = P([classes, dim], 0.25);
        }

        public Tensor Loss(Tensor ids, Tensor first, Tensor targets)
        {
            int b = ids.Dim(0), t = ids.Dim(1), d = tok.Dim(1);
            var h = Ops.LayerNorm(Ops.Embedding(ids, tok), ln_w, ln_b);
            Tensor Heads(Tensor x) => x.Reshape(b, 1, t, d);
            var a = Ops.Attention(Heads(Ops.Linear(h, wq)), Heads(Ops.Linear(h, wk)), Heads(Ops.Linear(h, wv)), causal: true).Reshape(b, t, d);
            h = Ops.Add(h, Ops.Gelu(Ops.Linear(a, w1, b1)));
            return Ops.CrossEntropy(Ops.Linear(Ops.GatherRows(h, first), head), targets);
        }
    }

    [Test]
    public void AFewTrainingStepsGiveTheCpuLosses()
    {
        var gpu = CudaTestSupport.Backend();
        var rng = new Random(1);
        int b = 4, t = 6;
        var ids = Tensor.FromArray(Enumerable.Range(0, b * t).Select(_ => rng.Next(16)).ToArray(), b, t);
        var first = Tensor.FromArray(new int[b], b);
        var targets = Tensor.FromArray(Enumerable.Range(0, b).Select(_ => rng.Next(3)).ToArray(), b);

        List<double> Train(Device device)
        {
            var model = new Classifier(device, seed: 3);
            var opt = new AdamW(model.Parameters, learningRate: 1e-2);
            var (i, f, y) = (ids.To(device), first.To(device), targets.To(device));
            var losses = new List<double>();
            for (int step = 0; step < 5; step++)
            {
                using var scope = Scope.Begin();
                var loss = model.Loss(i, f, y);
                loss.Backward();
                opt.Step();
                opt.ZeroGrad();
                losses.Add(loss.Item());
            }
            return losses;
        }

        var cpu = Train(Device.Cpu);
        var cuda = Train(gpu.Device);
        // Both float32; the GPU's different summation orders drift by ~1e-6 per step: 1e-4 relative.
        for (int s = 0; s < cpu.Count; s++) Assert.That(cuda[s], Is.EqualTo(cpu[s]).Within(1e-4 * Math.Max(1, Math.Abs(cpu[s]))), $"step {s}");
        Assert.That(cpu[^1], Is.LessThan(cpu[0]), "training should lower the loss");
    }

    [Test]
    public void SteadyStateStepsDoNotAllocateFromTheDriver()
    {
        var gpu = CudaTestSupport.Backend();
        var x = Tensor.Randn([64, 64], new Random(2)).To(gpu.Device);
        void Step() { using var s = Scope.Begin(); Ops.Softmax(Ops.Mul(x, x)).ToDoubleArray(); }
        Step();
        long before = gpu.DriverAllocations;
        for (int i = 0; i < 5; i++) Step();
        Assert.That(gpu.DriverAllocations, Is.EqualTo(before));
    }
}
