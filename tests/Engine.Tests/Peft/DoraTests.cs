using Engine.Autograd;
using Engine.IO;
using Engine.Models;
using Engine.Models.Peft;
using Engine.Models.Peft.Dora;
using Engine.Models.Peft.Lora;
using Engine.Nn;
using NUnit.Framework;

namespace Engine.Tests.Peft;

/// <summary>DoRA (--method dora) on the demo BERT and the tiny Llama.</summary>
public class DoraTests
{
    private TempFolder temp = null!;

    [SetUp] public void SetUp() => temp = new TempFolder();
    [TearDown] public void TearDown() => temp.Dispose();

    private static PeftOptions Options(string? pooling = null, string? targets = null) =>
        new() { Method = "dora", Pooling = pooling, Settings = new LoraOptions { Rank = 4, Alpha = 8, Dropout = 0.1, Targets = targets } };

    private static void Randomise(SequenceClassifier model, string suffix, double std, int seed = 1)
    {
        var rng = new Random(seed);
        using var noGrad = Tape.NoGrad();
        foreach (var (_, p) in model.NamedParameters().Where(p => p.Name.EndsWith(suffix, StringComparison.Ordinal)))
            Backend.Backends.Copy(Ops.Add(p, Tensor.Randn(p.ShapeArray, rng, p.DType, std)), p);
    }

    [TestCase("bert")]
    [TestCase("llama")]
    public void DoraStartsAsTheBaseModelAndTheMergeEqualsTheUnmergedForward(string family)
    {
        var folder = family == "bert" ? MethodChecks.Bert(temp) : MethodChecks.Llama(temp);
        var plain = MethodChecks.Logits(SequenceClassifier.FromFolder(folder, 3, numLabels: 2), folder, MethodChecks.Sentences);
        var model = SequenceClassifier.FromFolder(folder, 3, numLabels: 2);
        PeftSetup.Apply(model, Options(targets: "all-linear"), folder.Path, seed: 3);
        var magnitudes = model.NamedParameters().Where(p => p.Name.EndsWith(".lora_magnitude_vector")).ToList();
        Assert.That(magnitudes, Has.Count.EqualTo(family == "bert" ? 2 * 6 + 1 : 2 * 7));
        // m = ‖W‖ per output row at the start (checked on one layer against the host's norms).
        var (qName, m) = magnitudes[0];
        var w = model.NamedParameters().Single(p => p.Name == qName.Replace("lora_magnitude_vector", "weight")).Param;
        var rows = w.ToDoubleArray().Chunk(w.Dim(1)).Select(r => Math.Sqrt(r.Sum(v => v * v))).ToArray();
        Assert.That(m.ToDoubleArray(), Is.EqualTo(rows).Within(1e-6 * rows.Max()));
        var start = MethodChecks.Logits(model, folder, MethodChecks.Sentences);
        Assert.That(start, Is.EqualTo(plain).Within(1e-5 * plain.Max(Math.Abs)), "B = 0 and m = ‖W‖: the base model");

        Randomise(model, "lora_B.weight", 0.2);
        Randomise(model, "lora_magnitude_vector", 0.2);
        var unmerged = MethodChecks.Logits(model, folder, MethodChecks.Sentences);
        Assert.That(unmerged, Is.Not.EqualTo(start).Within(1e-3));
        PeftSetup.Merge(model);
        var merged = MethodChecks.Logits(model, folder, MethodChecks.Sentences);
        Assert.That(merged, Is.EqualTo(unmerged).Within(1e-5 * unmerged.Max(Math.Abs)));
        model.Peft!.Method.Unmerge();
        Assert.That(MethodChecks.Logits(model, folder, MethodChecks.Sentences), Is.EqualTo(unmerged).Within(1e-5 * unmerged.Max(Math.Abs)));
    }

    /// <summary>
    /// The adapter's gradients (composed from catalog ops, each gradient-checked in the catalog)
    /// against central differences in float64 of y = (m / n₀) ⊙ (W + s·B A) x + b with the norm
    /// n₀ = ‖W + s·B A‖ held at its value (PEFT's detached norm): for A, B and m. The same
    /// differences with the norm recomputed disagree for A and B, which shows the norm is detached.
    /// </summary>
    [Test]
    public void TheGradientsAreThoseOfTheDetachedNormForm()
    {
        var rng = new Random(4);
        var layer = new Linear(5, 4, rng, dtype: DType.F64);
        var adapter = new DoraAdapter(layer, new LoraOptions { Rank = 2, Alpha = 3, Dropout = 0 }, rng, new DropoutSeeds(1));
        using (Tape.NoGrad())
        {
            Backend.Backends.Copy(Tensor.Randn([4, 2], rng, DType.F64, 0.5), adapter.B);
            Backend.Backends.Copy(Ops.Add(adapter.Magnitude, Tensor.Randn([4], rng, DType.F64, 0.3)), adapter.Magnitude);
        }
        foreach (var p in layer.Parameters()) p.RequiresGrad = false;
        var x = Tensor.Randn([3, 5], rng, DType.F64);
        double s = adapter.Scale;

        double[] Norms(double[] a, double[] b)
        {
            var w = layer.Weight.ToDoubleArray();
            var n = new double[4];
            for (int o = 0; o < 4; o++)
            {
                double sum = 0;
                for (int i = 0; i < 5; i++)
                {
                    double v = w[o * 5 + i] + s * (b[o * 2] * a[i] + b[o * 2 + 1] * a[5 + i]);
                    sum += v * v;
                }
                n[o] = Math.Sqrt(sum);
            }
            return n;
        }
        // The loss Σ tanh(y)² of the reference form, with the norm fixed at n0 (or recomputed when n0 is null).
        double Reference(double[] a, double[] b, double[] m, double[]? n0)
        {
            var n = n0 ?? Norms(a, b);
            double[] w = layer.Weight.ToDoubleArray(), bias = layer.Bias!.ToDoubleArray(), xs = x.ToDoubleArray();
            double loss = 0;
            for (int r = 0; r < 3; r++)
                for (int o = 0; o < 4; o++)
                {
                    double y = 0;
                    for (int i = 0; i < 5; i++) y += (w[o * 5 + i] + s * (b[o * 2] * a[i] + b[o * 2 + 1] * a[5 + i])) * xs[r * 5 + i];
                    y = m[o] / n[o] * y + bias[o];
                    loss += Math.Tanh(y) * Math.Tanh(y);
                }
            return loss;
        }
        double[] A = adapter.A.ToDoubleArray(), B = adapter.B.ToDoubleArray(), M = adapter.Magnitude.ToDoubleArray();
        var n0 = Norms(A, B);
        Assert.That(adapter.WeightNorm().ToDoubleArray(), Is.EqualTo(n0).Within(1e-12 * n0.Max()), "the row norm from catalog ops");

        var outY = adapter.Forward(x);
        var lossT = Ops.Sum(Ops.Sum(Ops.Mul(Ops.Tanh(outY), Ops.Tanh(outY))));
        Assert.That(lossT.Item(), Is.EqualTo(Reference(A, B, M, n0)).Within(1e-12));
        lossT.Backward();

        bool fullDiffers = false;
        foreach (var (name, values, grad) in new[] { ("A", A, adapter.A.Grad!), ("B", B, adapter.B.Grad!), ("m", M, adapter.Magnitude.Grad!) })
        {
            var g = grad.ToDoubleArray();
            double scale = g.Max(Math.Abs);
            for (int i = 0; i < values.Length; i++)
            {
                double keep = values[i], eps = 1e-6;
                values[i] = keep + eps;
                double up = Reference(A, B, M, n0), upFull = Reference(A, B, M, null);
                values[i] = keep - eps;
                double down = Reference(A, B, M, n0), downFull = Reference(A, B, M, null);
                values[i] = keep;
                Assert.That(g[i], Is.EqualTo((up - down) / (2 * eps)).Within(1e-7 * scale), $"d/d{name}[{i}]");
                if (Math.Abs(g[i] - (upFull - downFull) / (2 * eps)) > 1e-4 * scale) fullDiffers = true;
            }
        }
        Assert.That(fullDiffers, "differentiating through the norm would give other gradients");
    }

    [Test]
    public void ADoraAdapterSavesInPeftsFormatAndReloads()
    {
        var folder = MethodChecks.Bert(temp);
        var checkpoint = MethodChecks.AdapterAndCheckpointReload(folder, Options(), temp);
        var config = System.Text.Json.Nodes.JsonNode.Parse(File.ReadAllText(Path.Combine(checkpoint, AdapterFiles.ConfigFile)))!;
        Assert.That(config["peft_type"]!.GetValue<string>(), Is.EqualTo("LORA"));
        Assert.That(config["use_dora"]!.GetValue<bool>(), Is.True);
        Assert.That(config["target_modules"]!.AsArray().Select(n => n!.GetValue<string>()), Is.EquivalentTo(new[] { "query", "value" }));
        using var weights = SafeTensors.Open(Path.Combine(checkpoint, AdapterFiles.WeightsFile));
        Assert.That(weights.Info("base_model.model.bert.encoder.layer.0.attention.self.query.lora_A.weight").Shape, Is.EqualTo(new[] { 4, 32 }));
        Assert.That(weights.Info("base_model.model.bert.encoder.layer.1.attention.self.value.lora_B.weight").Shape, Is.EqualTo(new[] { 32, 4 }));
        Assert.That(weights.Info("base_model.model.bert.encoder.layer.1.attention.self.value.lora_magnitude_vector").Shape, Is.EqualTo(new[] { 32 }));
        Assert.That(weights.Names, Has.Count.EqualTo(4 * 3 + 2));
        // A LoRA run reads a DoRA adapter as what it is.
        var e = Assert.Throws<EngineException>(() => AdapterFiles.Load(SequenceClassifier.FromFolder(folder, 3, numLabels: 2), checkpoint, expectedMethod: "lora"));
        Assert.That(e!.Message, Does.Contain("a dora adapter"));
    }

    [Test]
    public void ALlamaDoraAdapterSavesAndReloads()
    {
        var checkpoint = MethodChecks.AdapterAndCheckpointReload(MethodChecks.Llama(temp), Options(), temp);
        using var weights = SafeTensors.Open(Path.Combine(checkpoint, AdapterFiles.WeightsFile));
        Assert.That(weights.Info("base_model.model.model.layers.0.self_attn.v_proj.lora_magnitude_vector").Shape, Is.EqualTo(new[] { 16 }), "kv heads · head dim");
    }

    [TestCase("bert")]
    [TestCase("llama")]
    public void AResumedDoraRunContinuesExactly(string family) =>
        MethodChecks.ResumeContinuesExactly(family == "bert" ? MethodChecks.Bert(temp) : MethodChecks.Llama(temp), Options("depthwise"), temp);

    [Test]
    public void TheParameterTableCountsDoraAdapters()
    {
        var folder = MethodChecks.Bert(temp);
        var model = SequenceClassifier.FromFolder(folder, 3, numLabels: 2);
        PeftSetup.Apply(model, Options(), folder.Path);
        Assert.That(PeftSetup.ParameterTable(model), Does.Contain("DoRA adapters"));
        // query and value of 2 layers: 4 adapters of r·(32 + 32) + 32 = 288.
        Assert.That(model.NamedParameters().Where(p => DoraMethod.IsAdapterParameter(p.Name)).Sum(p => p.Param.Numel), Is.EqualTo(4 * (4 * 64 + 32)));
        Assert.That(DoraMethod.Adapters(model), Has.Count.EqualTo(4));
    }
}
