using Engine.Autograd;
using Engine.IO;
using Engine.Models;
using Engine.Models.Peft;
using Engine.Models.Peft.Ia3;
using Engine.Nn;
using NUnit.Framework;

namespace Engine.Tests.Peft;

/// <summary>(IA)³ (--method ia3) on the demo BERT and the tiny Llama.</summary>
public class Ia3Tests
{
    private TempFolder temp = null!;

    [SetUp] public void SetUp() => temp = new TempFolder();
    [TearDown] public void TearDown() => temp.Dispose();

    private static PeftOptions Options(string? pooling = null, Ia3Options? settings = null) => new() { Method = "ia3", Pooling = pooling, Settings = settings };

    [TestCase("bert")]
    [TestCase("llama")]
    public void Ia3StartsAsTheBaseModelWithPeftsDefaultVectors(string family)
    {
        var folder = family == "bert" ? MethodChecks.Bert(temp) : MethodChecks.Llama(temp);
        var plain = MethodChecks.Logits(SequenceClassifier.FromFolder(folder, 3, numLabels: 2), folder, MethodChecks.Sentences);
        var model = SequenceClassifier.FromFolder(folder, 3, numLabels: 2);
        PeftSetup.Apply(model, Options(), folder.Path);
        var vectors = model.NamedParameters().Where(p => Ia3Method.IsVector(p.Name)).ToDictionary(p => p.Name, p => p.Param.ShapeArray);
        var expected = family == "bert"
            ? new Dictionary<string, int[]>
            {
                // PEFT's BERT defaults: key, value, output.dense — which also matches attention.output.dense;
                // both output.dense layers are feed-forward (scaled on their input).
                ["bert.encoder.layer.1.attention.self.key.ia3_l"] = [32, 1], ["bert.encoder.layer.1.attention.self.value.ia3_l"] = [32, 1],
                ["bert.encoder.layer.1.attention.output.dense.ia3_l"] = [1, 32], ["bert.encoder.layer.1.output.dense.ia3_l"] = [1, 64],
            }
            : new Dictionary<string, int[]>
            {
                ["model.layers.1.self_attn.k_proj.ia3_l"] = [16, 1], ["model.layers.1.self_attn.v_proj.ia3_l"] = [16, 1],
                ["model.layers.1.mlp.down_proj.ia3_l"] = [1, 48],
            };
        Assert.That(vectors, Has.Count.EqualTo(2 * expected.Count));
        foreach (var (name, shape) in expected) Assert.That(vectors[name], Is.EqualTo(shape), name);
        Assert.That(model.NamedParameters().Where(p => Ia3Method.IsVector(p.Name)).SelectMany(p => p.Param.ToFloatArray()), Has.All.EqualTo(1f));
        Assert.That(MethodChecks.Logits(model, folder, MethodChecks.Sentences), Is.EqualTo(plain), "ones: the base model, bit for bit");
    }

    /// <summary>Both forms against a host computation, and the vectors' gradients against central
    /// differences in float64 (the scaling composes catalog ops, each gradient-checked in the catalog).</summary>
    [TestCase(false)]
    [TestCase(true)]
    public void TheScalingIsPeftsAndItsGradientMatchesFiniteDifferences(bool feedForward)
    {
        var rng = new Random(6);
        var layer = new Linear(5, 4, rng, dtype: DType.F64);
        foreach (var p in layer.Parameters()) p.RequiresGrad = false;
        var scaling = new Ia3Scaling(layer, feedForward);
        using (Tape.NoGrad()) Backend.Backends.Copy(Ops.Add(scaling.L, Tensor.Randn(scaling.L.ShapeArray, rng, DType.F64, 0.5)), scaling.L);
        var x = Tensor.Randn([3, 5], rng, DType.F64);
        double[] w = layer.Weight.ToDoubleArray(), b = layer.Bias!.ToDoubleArray(), xs = x.ToDoubleArray(), l = scaling.L.ToDoubleArray();

        double Reference(double[] v)
        {
            double loss = 0;
            for (int r = 0; r < 3; r++)
                for (int o = 0; o < 4; o++)
                {
                    double y = 0;
                    for (int i = 0; i < 5; i++) y += w[o * 5 + i] * xs[r * 5 + i] * (feedForward ? v[i] : 1);
                    y = feedForward ? y + b[o] : v[o] * (y + b[o]);
                    loss += Math.Tanh(y) * Math.Tanh(y);
                }
            return loss;
        }
        var y = scaling.Forward(x);
        var loss = Ops.Sum(Ops.Sum(Ops.Mul(Ops.Tanh(y), Ops.Tanh(y))));
        Assert.That(loss.Item(), Is.EqualTo(Reference(l)).Within(1e-12));
        loss.Backward();
        var g = scaling.L.Grad!.ToDoubleArray();
        double scale = g.Max(Math.Abs);
        for (int i = 0; i < l.Length; i++)
        {
            double keep = l[i], eps = 1e-6;
            l[i] = keep + eps; double up = Reference(l);
            l[i] = keep - eps; double down = Reference(l);
            l[i] = keep;
            Assert.That(g[i], Is.EqualTo((up - down) / (2 * eps)).Within(1e-7 * scale), $"d/dl[{i}]");
        }
    }

    [Test]
    public void AnIa3AdapterSavesInPeftsFormatAndReloads()
    {
        var folder = MethodChecks.Bert(temp);
        var checkpoint = MethodChecks.AdapterAndCheckpointReload(folder, Options(), temp);
        var config = System.Text.Json.Nodes.JsonNode.Parse(File.ReadAllText(Path.Combine(checkpoint, AdapterFiles.ConfigFile)))!;
        Assert.That(config["peft_type"]!.GetValue<string>(), Is.EqualTo("IA3"));
        Assert.That(config["task_type"]!.GetValue<string>(), Is.EqualTo("SEQ_CLS"));
        Assert.That(config["target_modules"]!.AsArray().Select(n => n!.GetValue<string>()), Is.EqualTo(new[] { "key", "value", "output.dense" }));
        Assert.That(config["feedforward_modules"]!.AsArray().Select(n => n!.GetValue<string>()), Is.EqualTo(new[] { "output.dense" }));
        Assert.That(config["modules_to_save"]!.AsArray().Select(n => n!.GetValue<string>()), Is.EqualTo(new[] { "classifier", "score" }));
        using var weights = SafeTensors.Open(Path.Combine(checkpoint, AdapterFiles.WeightsFile));
        Assert.That(weights.Info("base_model.model.bert.encoder.layer.0.attention.self.key.ia3_l").Shape, Is.EqualTo(new[] { 32, 1 }));
        Assert.That(weights.Info("base_model.model.bert.encoder.layer.0.output.dense.ia3_l").Shape, Is.EqualTo(new[] { 1, 64 }));
        Assert.That(weights.Names, Has.Count.EqualTo(2 * 4 + 2));
    }

    [Test]
    public void ALlamaIa3AdapterSavesAndReloads()
    {
        var checkpoint = MethodChecks.AdapterAndCheckpointReload(MethodChecks.Llama(temp), Options(), temp);
        var config = System.Text.Json.Nodes.JsonNode.Parse(File.ReadAllText(Path.Combine(checkpoint, AdapterFiles.ConfigFile)))!;
        Assert.That(config["target_modules"]!.AsArray().Select(n => n!.GetValue<string>()), Is.EqualTo(new[] { "k_proj", "v_proj", "down_proj" }));
        using var weights = SafeTensors.Open(Path.Combine(checkpoint, AdapterFiles.WeightsFile));
        Assert.That(weights.Info("base_model.model.model.layers.0.mlp.down_proj.ia3_l").Shape, Is.EqualTo(new[] { 1, 48 }));
    }

    [TestCase("bert")]
    [TestCase("llama")]
    public void AResumedIa3RunContinuesExactly(string family) =>
        MethodChecks.ResumeContinuesExactly(family == "bert" ? MethodChecks.Bert(temp) : MethodChecks.Llama(temp), Options("depthwise"), temp);

    [Test]
    public void FeedForwardModulesMustBeTargets()
    {
        var folder = MethodChecks.Bert(temp);
        var model = SequenceClassifier.FromFolder(folder, 3, numLabels: 2);
        var e = Assert.Throws<EngineException>(() => PeftSetup.Apply(model, Options(settings: new Ia3Options { Targets = "key,value", FeedForward = "intermediate.dense" })));
        Assert.That(e!.Message, Does.Contain("feed-forward modules must be among the targets").And.Contain("intermediate.dense"));
        // A regular expression and a custom set work; the table names the vectors.
        PeftSetup.Apply(model, Options(settings: new Ia3Options { Targets = @"re:.*layer\.0\..*(key|intermediate\.dense)", FeedForward = "intermediate.dense" }));
        Assert.That(model.NamedParameters().Where(p => Ia3Method.IsVector(p.Name)).Select(p => (p.Name, p.Param.ShapeArray)),
            Is.EquivalentTo(new[] { ("bert.encoder.layer.0.attention.self.key.ia3_l", new[] { 32, 1 }), ("bert.encoder.layer.0.intermediate.dense.ia3_l", new[] { 1, 32 }) }));
        Assert.That(PeftSetup.ParameterTable(model), Does.Contain("(IA)³ vectors"));
    }
}
