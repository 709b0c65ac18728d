using System.Text.Json;
using Engine.Autograd;
using Engine.Optim;
using NUnit.Framework;

namespace Engine.Tests;

/// <summary>
/// Optimizers, schedules, clipping and accumulation against PyTorch. The fixture
/// (Fixtures/optim_reference.json) is made by tools/reference/optim_reference.py with torch in
/// float64; it holds the initial parameters, every step's gradients, and the parameters,
/// learning rates and gradient norms after every step.
/// </summary>
public class OptimTests
{
    // Tolerances, in units of max(|reference|, 1) (the values are all of order 0.1–1):
    // float64 replays differ from torch's float64 only by rounding order; float32 replays are
    // compared with the same float64 reference, so they carry float32 rounding (~1e-7 per op)
    // through five steps (measured: at most 3.3e-7).
    private const double F64Tolerance = 1e-12;
    private const double F32Tolerance = 2e-6;

    private static readonly JsonElement Fixture = LoadFixture();

    private static JsonElement LoadFixture()
    {
        var path = Path.Combine(TestContext.CurrentContext.TestDirectory, "Fixtures", "optim_reference.json");
        using var doc = JsonDocument.Parse(File.ReadAllText(path));
        return doc.RootElement.Clone();
    }

    private static double[] Doubles(JsonElement e) => e.EnumerateArray().Select(x => x.GetDouble()).ToArray();

    // ------------------------------------------------------------------ replaying a fixture run

    /// <summary>The fixture's parameters (w [3, 4], b [4], late [2, 2]) as fresh trainable tensors.</summary>
    private static List<Tensor> MakeParameters(DType dtype)
    {
        var list = new List<Tensor>();
        foreach (var entry in Fixture.GetProperty("initial").EnumerateObject())
        {
            var shape = Fixture.GetProperty("shapes").GetProperty(entry.Name).EnumerateArray().Select(x => x.GetInt32()).ToArray();
            list.Add(Tensor.Parameter(Tensor.FromDoubles(Doubles(entry.Value), shape, dtype), entry.Name));
        }
        return list;
    }

    /// <summary>Sets each parameter's gradient to the fixture's values for one step (null: no gradient).</summary>
    private static void SetGradients(List<Tensor> parameters, JsonElement step)
    {
        foreach (var p in parameters)
        {
            var g = step.GetProperty(p.Name!);
            if (g.ValueKind == JsonValueKind.Null) { p.Grad = null; continue; }
            var values = Doubles(g);
            var grad = Tape.GradOf(p);
            if (p.DType == DType.F64) values.CopyTo(grad.Span<double>());
            else Array.ConvertAll(values, x => (float)x).CopyTo(grad.Span<float>());
        }
    }

    private sealed record Replay(List<Dictionary<string, double[]>> Parameters, List<double> Rates, List<double> Norms);

    /// <summary>Runs the fixture's gradient sequence through an optimizer made by <paramref name="make"/>,
    /// in the order torch ran it: set gradients, (clip), step, (schedule step).</summary>
    private static Replay Run(string run, DType dtype, Func<List<Tensor>, Optimizer> make,
                              LrSchedule? schedule = null, double? maxNorm = null)
    {
        var parameters = MakeParameters(dtype);
        var opt = make(parameters);
        var scheduler = schedule is null ? null : new LrScheduler(opt, schedule);
        var replay = new Replay(new(), new(), new());
        foreach (var step in Fixture.GetProperty(run).GetProperty("grads").EnumerateArray())
        {
            SetGradients(parameters, step);
            replay.Rates.Add(opt.LearningRate);
            if (maxNorm is { } max) replay.Norms.Add(GradClip.ClipByGlobalNorm(parameters, max));
            opt.Step();
            scheduler?.Step();
            replay.Parameters.Add(parameters.ToDictionary(p => p.Name!, p => p.ToDoubleArray()));
        }
        return replay;
    }

    /// <summary>The largest |actual − expected| / max(|expected|, 1) over every parameter of every step.</summary>
    private static double MaxParameterError(string run, Replay replay)
    {
        double worst = 0;
        var expected = Fixture.GetProperty(run).GetProperty("params").EnumerateArray().ToList();
        Assert.That(replay.Parameters, Has.Count.EqualTo(expected.Count));
        for (int s = 0; s < expected.Count; s++)
            foreach (var (name, actual) in replay.Parameters[s])
                worst = Math.Max(worst, MaxError(actual, Doubles(expected[s].GetProperty(name))));
        return worst;
    }

    private static double MaxError(IReadOnlyList<double> actual, IReadOnlyList<double> expected)
    {
        Assert.That(actual, Has.Count.EqualTo(expected.Count));
        double worst = 0;
        for (int i = 0; i < actual.Count; i++)
            worst = Math.Max(worst, Math.Abs(actual[i] - expected[i]) / Math.Max(Math.Abs(expected[i]), 1.0));
        return worst;
    }

    private static double Get(string run, string key) => Fixture.GetProperty(run).GetProperty(key).GetDouble();

    private static AdamW MakeAdamW(string run, List<Tensor> ps, Func<Tensor, bool>? noDecay = null)
    {
        var betas = Doubles(Fixture.GetProperty(run).GetProperty("betas"));
        return new AdamW(ps, Get(run, "lr"), betas[0], betas[1], Get(run, "eps"), Get(run, "weight_decay"), noDecay);
    }

    private static Sgd MakeSgd(string run, List<Tensor> ps) =>
        new(ps, Get(run, "lr"), Get(run, "momentum"), Get(run, "dampening"), Get(run, "weight_decay"),
            Fixture.GetProperty(run).GetProperty("nesterov").GetBoolean());

    /// <summary>adamw_full: weight decay off for "b", a linear warmup-decay schedule, clipping every step.</summary>
    private static Replay RunFullAdamW(DType dtype) => Run("adamw_full", dtype,
        ps => MakeAdamW("adamw_full", ps, noDecay: p => p.Name == "b"),
        new LrSchedule.LinearWarmupDecay((int)Get("adamw_full", "warmup"), (int)Get("adamw_full", "total")),
        Get("adamw_full", "max_norm"));

    // ------------------------------------------------------------------ AdamW and SGD against torch

    [Test]
    public void AdamWMatchesTorchInFloat64()
    {
        // Includes the parameter "late", which has no gradient on step 1: it is skipped, and its
        // bias correction then counts its own steps (1, 2, 3, 4), as torch does.
        var replay = Run("adamw_plain", DType.F64, ps => MakeAdamW("adamw_plain", ps));
        double error = MaxParameterError("adamw_plain", replay);
        TestContext.Out.WriteLine($"adamw_plain f64: max relative error {error:E2}");
        Assert.That(error, Is.LessThanOrEqualTo(F64Tolerance));
    }

    [Test]
    public void AdamWWithGroupsScheduleAndClippingMatchesTorchInFloat64()
    {
        var replay = RunFullAdamW(DType.F64);
        double error = MaxParameterError("adamw_full", replay);
        double rateError = MaxError(replay.Rates, Doubles(Fixture.GetProperty("adamw_full").GetProperty("lrs")));
        double normError = MaxError(replay.Norms, Doubles(Fixture.GetProperty("adamw_full").GetProperty("norms")));
        TestContext.Out.WriteLine($"adamw_full f64: params {error:E2}, lrs {rateError:E2}, norms {normError:E2}");
        Assert.That(error, Is.LessThanOrEqualTo(F64Tolerance));
        Assert.That(rateError, Is.LessThanOrEqualTo(1e-15));   // lr·multiplier: one rounding
        Assert.That(normError, Is.LessThanOrEqualTo(1e-13));   // torch sums per-tensor norms; we sum squares
    }

    [TestCase("sgd_nesterov")]
    [TestCase("sgd_dampened")]
    public void SgdMatchesTorchInFloat64(string run)
    {
        double error = MaxParameterError(run, Run(run, DType.F64, ps => MakeSgd(run, ps)));
        TestContext.Out.WriteLine($"{run} f64: max relative error {error:E2}");
        Assert.That(error, Is.LessThanOrEqualTo(F64Tolerance));
    }

    [Test]
    public void Float32RunsFollowTheFloat64Reference()
    {
        var errors = new Dictionary<string, double>
        {
            ["adamw_plain"] = MaxParameterError("adamw_plain", Run("adamw_plain", DType.F32, ps => MakeAdamW("adamw_plain", ps))),
            ["adamw_full"] = MaxParameterError("adamw_full", RunFullAdamW(DType.F32)),
            ["sgd_nesterov"] = MaxParameterError("sgd_nesterov", Run("sgd_nesterov", DType.F32, ps => MakeSgd("sgd_nesterov", ps))),
            ["sgd_dampened"] = MaxParameterError("sgd_dampened", Run("sgd_dampened", DType.F32, ps => MakeSgd("sgd_dampened", ps))),
        };
        foreach (var (run, error) in errors)
        {
            TestContext.Out.WriteLine($"{run} f32: max relative error {error:E2}");
            Assert.That(error, Is.LessThanOrEqualTo(F32Tolerance), run);
        }
    }

    // ------------------------------------------------------------------ the comparison has teeth

    /// <summary>Adam with L2 regularisation (λ·p added to the gradient) instead of decoupled decay.</summary>
    private sealed class CoupledDecayAdam(IEnumerable<Tensor> ps, double lr, double b1, double b2, double eps, double wd)
        : Optimizer(ps, lr, null)
    {
        protected override void Update(ParameterState state, Tensor grad)
        {
            var p = state.Parameter;
            var d = Tensor.Zeros(p.ShapeArray, p.DType);
            p.Backend.Axpy(grad, d, 1.0);
            p.Backend.Axpy(p, d, wd);
            p.Backend.AdamW(p, d, state.Buffer(0), state.Buffer(1), LearningRate, b1, b2, eps, 0.0, state.Steps);
        }
    }

    /// <summary>AdamW without bias correction: at step 2³¹−1, βᵗ underflows to 0, so 1 − βᵗ = 1.</summary>
    private sealed class UncorrectedAdamW(IEnumerable<Tensor> ps, double lr, double b1, double b2, double eps, double wd)
        : Optimizer(ps, lr, null)
    {
        protected override void Update(ParameterState state, Tensor grad)
        {
            var p = state.Parameter;
            p.Backend.AdamW(p, grad, state.Buffer(0), state.Buffer(1), LearningRate, b1, b2, eps, wd, int.MaxValue);
        }
    }

    [Test]
    public void WrongAdamVariantsFailTheComparison()
    {
        var betas = Doubles(Fixture.GetProperty("adamw_plain").GetProperty("betas"));
        double lr = Get("adamw_plain", "lr"), eps = Get("adamw_plain", "eps"), wd = Get("adamw_plain", "weight_decay");
        double coupled = MaxParameterError("adamw_plain",
            Run("adamw_plain", DType.F64, ps => new CoupledDecayAdam(ps, lr, betas[0], betas[1], eps, wd)));
        double uncorrected = MaxParameterError("adamw_plain",
            Run("adamw_plain", DType.F64, ps => new UncorrectedAdamW(ps, lr, betas[0], betas[1], eps, wd)));
        TestContext.Out.WriteLine($"L2 instead of decoupled decay: {coupled:E2}; no bias correction: {uncorrected:E2}");
        Assert.That(coupled, Is.GreaterThan(1e6 * F64Tolerance));
        Assert.That(uncorrected, Is.GreaterThan(1e6 * F64Tolerance));
    }

    // ------------------------------------------------------------------ schedules

    [TestCase("constant_with_warmup")]
    [TestCase("linear_warmup_decay")]
    [TestCase("cosine_with_warmup")]
    public void SchedulesMatchTransformersAndLambdaLR(string name)
    {
        var f = Fixture.GetProperty("schedules");
        int warmup = f.GetProperty("warmup").GetInt32(), total = f.GetProperty("total").GetInt32();
        double baseRate = f.GetProperty("base_lr").GetDouble();
        LrSchedule schedule = name switch
        {
            "constant_with_warmup" => new LrSchedule.ConstantWithWarmup(warmup),
            "linear_warmup_decay" => new LrSchedule.LinearWarmupDecay(warmup, total),
            _ => new LrSchedule.CosineWithWarmup(warmup, total),
        };
        var expectedMultipliers = Doubles(f.GetProperty(name).GetProperty("multipliers"));
        var expectedRates = Doubles(f.GetProperty(name).GetProperty("lrs"));

        var opt = new Sgd([Tensor.Parameter(Tensor.Zeros([1], DType.F64))], baseRate);
        var scheduler = new LrScheduler(opt, schedule);
        var multipliers = new List<double>();
        var rates = new List<double>();
        for (int t = 0; t < expectedMultipliers.Length; t++)
        {
            multipliers.Add(schedule.Multiplier(t));
            rates.Add(opt.LearningRate);
            opt.Step();
            scheduler.Step();
        }
        // Same formulas in the same order: equal up to the last bit of cos.
        Assert.That(MaxError(multipliers, expectedMultipliers), Is.LessThanOrEqualTo(1e-15));
        Assert.That(MaxError(rates, expectedRates), Is.LessThanOrEqualTo(1e-15));
    }

    [Test]
    public void ConstantScheduleKeepsTheRate()
    {
        var opt = new AdamW([Tensor.Parameter(Tensor.Zeros([2]))], learningRate: 3e-4);
        var scheduler = new LrScheduler(opt, new LrSchedule.Constant());
        for (int i = 0; i < 3; i++) scheduler.Step();
        Assert.That(opt.LearningRate, Is.EqualTo(3e-4));
        Assert.That(scheduler.CurrentStep, Is.EqualTo(3));
    }

    /// <summary>The custom schedule of docs/optim.md.</summary>
    private sealed record InverseSqrt(int WarmupSteps) : LrSchedule
    {
        public override double Multiplier(int step) =>
            step < WarmupSteps ? (double)step / WarmupSteps : Math.Sqrt((double)WarmupSteps / step);
    }

    [Test]
    public void ACustomScheduleDrivesTheScheduler()
    {
        var opt = new Sgd([Tensor.Parameter(Tensor.Zeros([1]))], learningRate: 1.0);
        var scheduler = new LrScheduler(opt, new InverseSqrt(4));
        Assert.That(opt.LearningRate, Is.EqualTo(0.0));
        for (int i = 0; i < 16; i++) scheduler.Step();
        Assert.That(opt.LearningRate, Is.EqualTo(0.5));
        Assert.That(scheduler.LearningRateAt(2), Is.EqualTo(0.5));
    }

    [Test]
    public void LinearScheduleReachesZeroAtTheTotalAndStaysThere()
    {
        var s = new LrSchedule.LinearWarmupDecay(10, 100);
        Assert.That(s.Multiplier(0), Is.EqualTo(0.0));
        Assert.That(s.Multiplier(5), Is.EqualTo(0.5));
        Assert.That(s.Multiplier(10), Is.EqualTo(1.0));
        Assert.That(s.Multiplier(55), Is.EqualTo(0.5));
        Assert.That(s.Multiplier(100), Is.EqualTo(0.0));
        Assert.That(s.Multiplier(150), Is.EqualTo(0.0));
    }

    // ------------------------------------------------------------------ clipping

    private static Tensor WithGradient(double[] values, double[] grad)
    {
        var p = Tensor.Parameter(Tensor.FromArray(values));
        grad.CopyTo(Tape.GradOf(p).Span<double>());
        return p;
    }

    [Test]
    public void ClippingScalesToTheMaxNormAndReturnsTheNormBefore()
    {
        var a = WithGradient([0, 0], [3, 0]);
        var b = WithGradient([0], [4]);
        double total = GradClip.ClipByGlobalNorm([a, b], 1.0);
        Assert.That(total, Is.EqualTo(5.0));
        double coef = 1.0 / (5.0 + 1e-6);
        Assert.That(a.Grad!.ToDoubleArray(), Is.EqualTo(new[] { 3 * coef, 0 }).Within(1e-15));
        Assert.That(b.Grad!.ToDoubleArray(), Is.EqualTo(new[] { 4 * coef }).Within(1e-15));
        Assert.That(GradClip.GlobalNorm([a, b]), Is.EqualTo(1.0).Within(1e-6));
    }

    [Test]
    public void ClippingLeavesSmallGradientsAlone()
    {
        var a = WithGradient([0, 0], [0.3, -0.4]);
        var none = Tensor.Parameter(Tensor.FromArray(new double[] { 1 }));   // no gradient: counts for nothing
        Assert.That(GradClip.ClipByGlobalNorm([a, none], 1.0), Is.EqualTo(0.5).Within(1e-15));
        Assert.That(a.Grad!.ToDoubleArray(), Is.EqualTo(new[] { 0.3, -0.4 }));
        Assert.That(none.Grad, Is.Null);
    }

    [Test]
    public void ANonFiniteNormIsReturnedAndTheGradientsAreLeftAlone()
    {
        var a = WithGradient([0, 0], [double.NaN, 1]);
        var b = WithGradient([0], [2]);
        Assert.That(double.IsNaN(GradClip.ClipByGlobalNorm([a, b], 1.0)), Is.True);
        Assert.That(b.Grad!.ToDoubleArray(), Is.EqualTo(new[] { 2.0 }));
        var c = WithGradient([0], [double.PositiveInfinity]);
        Assert.That(GradClip.ClipByGlobalNorm([c, b], 1.0), Is.EqualTo(double.PositiveInfinity));
        Assert.That(b.Grad!.ToDoubleArray(), Is.EqualTo(new[] { 2.0 }));
    }

    // ------------------------------------------------------------------ state, frozen parameters, lifetime

    [Test]
    public void FrozenParametersGetNoStateAndAreUntouched()
    {
        var trained = WithGradient([1, 2], [0.5, -0.5]);
        var frozen = Tensor.Parameter(Tensor.FromArray(new double[] { 3, 4 }));
        frozen.RequiresGrad = false;
        var opt = new AdamW([trained, frozen], learningRate: 0.1);
        // Even a gradient someone put on the frozen tensor is ignored: it is not the optimizer's.
        frozen.Grad = Tensor.FromArray(new double[] { 1, 1 });

        opt.Step();

        Assert.That(opt.Parameters, Is.EqualTo(new[] { trained }));
        Assert.That(opt.StateOf(frozen), Is.Null);
        Assert.That(frozen.ToDoubleArray(), Is.EqualTo(new[] { 3.0, 4.0 }));
        Assert.That(opt.StateOf(trained)!.Buffers, Has.Count.EqualTo(2));
        Assert.That(trained.ToDoubleArray(), Is.Not.EqualTo(new[] { 1.0, 2.0 }));
    }

    [Test]
    public void AParameterWithoutAGradientIsSkipped()
    {
        var trained = WithGradient([1, 2], [0.5, -0.5]);
        var idle = Tensor.Parameter(Tensor.FromArray(new double[] { 3, 4 }));
        var opt = new Sgd([trained, idle], learningRate: 0.1, momentum: 0.9);
        opt.Step();
        var state = opt.StateOf(idle)!;
        Assert.That(state.Buffers, Is.Empty);
        Assert.That(state.Steps, Is.EqualTo(0));
        Assert.That(idle.ToDoubleArray(), Is.EqualTo(new[] { 3.0, 4.0 }));
        Assert.That(opt.StateOf(trained)!.Steps, Is.EqualTo(1));
        Assert.That(opt.StepCount, Is.EqualTo(1));
    }

    [Test]
    public void SgdWithoutMomentumKeepsNoState()
    {
        var p = WithGradient([1, 2], [0.5, -0.5]);
        var opt = new Sgd([p], learningRate: 0.1);
        opt.Step();
        Assert.That(opt.StateOf(p)!.Buffers, Is.Empty);
        Assert.That(p.ToDoubleArray(), Is.EqualTo(new[] { 0.95, 2.05 }).Within(1e-15));
    }

    /// <summary>A learning-rate scale makes a parameter group: the scaled parameter steps exactly
    /// as it would under an optimizer whose rate is the product (weight decay included, as in a
    /// PyTorch param group with its own lr), the others as before, and a schedule moves both.</summary>
    [Test]
    public void ALearningRateScaleStepsItsParameterAtThatMultipleOfTheRate()
    {
        double[] g1 = [0.5, -0.25, 2.0], g2 = [-1.5, 0.125, 0.75];
        Tensor Make(double[] g) => WithGradient([1, -2, 3], g);
        var head = Make(g1);
        var body = Make(g1);
        var opt = new AdamW([head, body], learningRate: 0.01, weightDecay: 0.1, learningRateScale: p => ReferenceEquals(p, head) ? 7.0 : 1.0);
        var alone = Make(g1);
        var aloneOpt = new AdamW([alone], learningRate: 0.07, weightDecay: 0.1);
        var plain = Make(g1);
        var plainOpt = new AdamW([plain], learningRate: 0.01, weightDecay: 0.1);
        foreach (var (g, lr) in new[] { (g1, 0.01), (g2, 0.004) })
        {
            foreach (var p in new[] { head, body, alone, plain }) p.Grad = Tensor.FromArray(g);
            opt.LearningRate = lr;          // what a schedule does
            aloneOpt.LearningRate = 7 * lr;
            plainOpt.LearningRate = lr;
            opt.Step(); aloneOpt.Step(); plainOpt.Step();
        }
        Assert.That(head.ToDoubleArray(), Is.EqualTo(alone.ToDoubleArray()).Within(1e-15));
        Assert.That(body.ToDoubleArray(), Is.EqualTo(plain.ToDoubleArray()));
        Assert.That(opt.StateOf(head)!.LearningRateScale, Is.EqualTo(7.0));
        Assert.That(Math.Abs(head.ToDoubleArray()[0] - 1), Is.GreaterThan(5 * Math.Abs(body.ToDoubleArray()[0] - 1)), "the head moved ~7x as far");

        var sgdHead = Make(g1);
        new Sgd([sgdHead], learningRate: 0.1, learningRateScale: _ => 3.0).Step();
        Assert.That(sgdHead.ToDoubleArray(), Is.EqualTo(new[] { 1 - 0.3 * 0.5, -2 + 0.3 * 0.25, 3 - 0.3 * 2.0 }).Within(1e-15));
        Assert.Throws<EngineException>(() => new Sgd([Make(g1)], learningRate: 0.1, learningRateScale: _ => double.NaN));
    }

    [Test]
    public void StateMadeInsideAStepScopeOutlivesIt()
    {
        var p = WithGradient([1, 2], [0.5, -0.5]);
        var opt = new AdamW([p], learningRate: 0.1);
        using (Scope.Begin()) opt.Step();
        var state = opt.StateOf(p)!;
        Assert.That(state.Buffers.All(b => b.IsLongLived && !b.Storage.Released), Is.True);
        Assert.That(state.Buffers[0].ToDoubleArray(), Is.EqualTo(new[] { 0.05, -0.05 }).Within(1e-15));   // m = (1 − β₁)·g
        using (Scope.Begin()) opt.Step();
        Assert.That(state.Steps, Is.EqualTo(2));
    }

    [Test]
    public void AParameterMadeInsideAStepScopeIsRefused()
    {
        using var scope = Scope.Begin();
        var shortLived = Tensor.Zeros([2], DType.F64);
        shortLived.RequiresGrad = true;
        Assert.Throws<EngineException>(() => new AdamW([shortLived]));
    }

    [Test]
    public void ZeroGradFillsWithZerosOrDropsTheGradients()
    {
        var p = WithGradient([1, 2], [0.5, -0.5]);
        var opt = new Sgd([p], learningRate: 0.1);
        var grad = p.Grad!;
        opt.ZeroGrad();
        Assert.That(p.Grad, Is.SameAs(grad));
        Assert.That(grad.ToDoubleArray(), Is.EqualTo(new[] { 0.0, 0.0 }));
        opt.ZeroGrad(setToNone: true);
        Assert.That(p.Grad, Is.Null);
        opt.Step();   // nothing to do
        Assert.That(p.ToDoubleArray(), Is.EqualTo(new[] { 1.0, 2.0 }));
    }

    [Test]
    public void NoDecayPredicateExemptsVectors()
    {
        // Zero gradient: the only change AdamW makes is the decay p ← p·(1 − lr·λ).
        var m2 = Tensor.Parameter(Tensor.FromArray(new double[] { 1, 1, 1, 1 }, 2, 2));
        Tape.GradOf(m2);
        var bias = WithGradient([1, 1], [0, 0]);
        var opt = new AdamW([m2, bias], learningRate: 0.1, weightDecay: 0.5, noDecay: Optimizer.VectorsAndScalars);
        opt.Step();
        Assert.That(m2.ToDoubleArray(), Is.EqualTo(new[] { 0.95, 0.95, 0.95, 0.95 }).Within(1e-15));
        Assert.That(bias.ToDoubleArray(), Is.EqualTo(new[] { 1.0, 1.0 }));
    }

    // ------------------------------------------------------------------ gradient accumulation

    /// <summary>A linear classifier: 8 rows of 5 features, 3 classes, float64.</summary>
    private sealed class Classifier
    {
        public readonly Tensor Weight, Bias;
        public Classifier()
        {
            var rng = new Random(11);
            Weight = Tensor.Parameter(Tensor.Randn([3, 5], rng, DType.F64, 0.5), "weight");
            Bias = Tensor.Parameter(Tensor.Randn([3], rng, DType.F64, 0.5), "bias");
        }
        public Tensor Loss(double[] x, int[] targets) =>
            Ops.CrossEntropy(Ops.Linear(Tensor.FromArray(x, targets.Length, 5), Weight, Bias), Tensor.FromArray(targets, targets.Length));
    }

    [Test]
    public void AccumulatedMicroBatchesEqualOneFullBatch()
    {
        var rng = new Random(5);
        var x = Enumerable.Range(0, 8 * 5).Select(_ => rng.NextDouble() * 2 - 1).ToArray();
        var targets = Enumerable.Range(0, 8).Select(_ => rng.Next(3)).ToArray();

        var full = new Classifier();
        var fullOpt = new AdamW([full.Weight, full.Bias], learningRate: 0.1, weightDecay: 0.1);
        using (Scope.Begin()) full.Loss(x, targets).Backward();

        var micro = new Classifier();
        var microOpt = new AdamW([micro.Weight, micro.Bias], learningRate: 0.1, weightDecay: 0.1);
        var accumulation = new GradientAccumulation(4);
        var boundaries = new List<bool>();
        for (int k = 0; k < 4; k++)
            using (Scope.Begin())
                boundaries.Add(accumulation.Backward(micro.Loss(x[(k * 10)..(k * 10 + 10)], targets[(k * 2)..(k * 2 + 2)])));
        Assert.That(boundaries, Is.EqualTo(new[] { false, false, false, true }));

        // Same sums in another order: equal to rounding.
        const double tolerance = 1e-14;
        Assert.That(MaxError(micro.Weight.Grad!.ToDoubleArray(), full.Weight.Grad!.ToDoubleArray()), Is.LessThanOrEqualTo(tolerance));
        Assert.That(MaxError(micro.Bias.Grad!.ToDoubleArray(), full.Bias.Grad!.ToDoubleArray()), Is.LessThanOrEqualTo(tolerance));

        fullOpt.Step();
        microOpt.Step();
        Assert.That(MaxError(micro.Weight.ToDoubleArray(), full.Weight.ToDoubleArray()), Is.LessThanOrEqualTo(tolerance));
        Assert.That(MaxError(micro.Bias.ToDoubleArray(), full.Bias.ToDoubleArray()), Is.LessThanOrEqualTo(tolerance));
    }

    /// <summary>The CPU AdamW kernel runs in parallel chunks with a vector loop; it must give the
    /// bits of the plain scalar update (same operations, same order), across chunk and vector tails.</summary>
    [TestCase(DType.F32)]
    [TestCase(DType.F64)]
    public void TheAdamWKernelGivesTheScalarUpdatesBits(DType dtype)
    {
        int n = 3 * 65536 + 13;
        var rng = new Random(11);
        var p = Tensor.Randn([n], rng, dtype); var g = Tensor.Randn([n], rng, dtype);
        var m = Tensor.Randn([n], rng, dtype, 0.1); var v = Tensor.Uniform([n], rng, 0, 0.01, dtype);
        double[] P = p.ToDoubleArray(), G = g.ToDoubleArray(), M = m.ToDoubleArray(), V = v.ToDoubleArray();
        double lr = 1e-3, b1 = 0.9, b2 = 0.999, eps = 1e-8, wd = 0.01;
        int step = 3;
        Backend.Backends.Cpu.AdamW(p, g, m, v, lr, b1, b2, eps, wd, step);
        double bc1 = 1 - Math.Pow(b1, step), bc2 = 1 - Math.Pow(b2, step);
        if (dtype == DType.F32)
        {
            float fb1 = (float)b1, fb2 = (float)b2, decay = (float)(1 - lr * wd), size = (float)(lr / bc1), q = (float)Math.Sqrt(bc2), e = (float)eps;
            var (pf, mf, vf) = (p.ToFloatArray(), m.ToFloatArray(), v.ToFloatArray());
            for (int i = 0; i < n; i++)
            {
                float pi = (float)P[i], gi = (float)G[i], mi = (float)M[i], vi = (float)V[i];
                pi *= decay;
                mi = fb1 * mi + (1f - fb1) * gi;
                vi = fb2 * vi + (1f - fb2) * gi * gi;
                pi -= size * mi / (MathF.Sqrt(vi) / q + e);
                Assert.That((pf[i], mf[i], vf[i]), Is.EqualTo((pi, mi, vi)), $"element {i}");
            }
        }
        else
        {
            double decay = 1 - lr * wd, size = lr / bc1, q = Math.Sqrt(bc2);
            var (pd, md, vd) = (p.ToDoubleArray(), m.ToDoubleArray(), v.ToDoubleArray());
            for (int i = 0; i < n; i++)
            {
                double pi = P[i], gi = G[i], mi = M[i], vi = V[i];
                pi *= decay;
                mi = b1 * mi + (1 - b1) * gi;
                vi = b2 * vi + (1 - b2) * gi * gi;
                pi -= size * mi / (Math.Sqrt(vi) / q + eps);
                Assert.That((pd[i], md[i], vd[i]), Is.EqualTo((pi, mi, vi)), $"element {i}");
            }
        }
    }

    [Test]
    public void TheFloat32SumOfSquaresIsAFloat64SumOfEveryElement()
    {
        var rng = new Random(12);
        var x = Tensor.Randn([5 * 65536 + 7], rng);
        double expect = x.ToDoubleArray().Sum(v => v * v);
        Assert.That(Backend.Backends.Cpu.SumSquares(x), Is.EqualTo(expect).Within(1e-10).Percent); // float64 sums in another order
    }
}
