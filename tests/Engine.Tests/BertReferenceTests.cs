using Engine.IO;
using Engine.Models;
using Engine.Models.Bert;
using NUnit.Framework;

namespace Engine.Tests;

/// <summary>
/// Tiny BERT and RoBERTa sequence classifiers loaded from Hugging Face folders
/// (Fixtures/bert_tiny, made by tools/reference/bert_reference.py; reference.safetensors'
/// metadata "produced_by" says whether transformers or the independent PyTorch implementation
/// made it). Every hidden state, the logits, the loss and every parameter's gradient are compared.
/// </summary>
public class BertReferenceTests
{
    private static string Folder(string kind) => Path.Combine(TestContext.CurrentContext.TestDirectory, "Fixtures", "bert_tiny", kind);

    [TestCase("bert", DType.F64, 1e-9, 1e-8)]   // float64 from the same float32 weights: rounding only
    [TestCase("roberta", DType.F64, 1e-9, 1e-8)]
    [TestCase("bert", DType.F32, 1e-4, 1e-3)]   // float32: about 1e-4 relative on outputs, 1e-3 on gradients (the tolerances)
    [TestCase("roberta", DType.F32, 1e-4, 1e-3)]
    public void MatchesTheReference(string kind, DType dtype, double outTol, double gradTol)
    {
        var folder = HfModelFolder.Open(Folder(kind));
        var model = BertForSequenceClassification.FromFolder(folder, dtype: dtype);
        model.Eval();
        using var reference = SafeTensors.Open(Path.Combine(Folder(kind), "reference.safetensors"));
        var ids = reference.ReadAs("input_ids", DType.I32);
        var mask = reference.ReadAs("attention_mask", DType.I32);
        var types = reference.ReadAs("token_type_ids", DType.I32);
        var labels = reference.ReadAs("labels", DType.I32);

        var output = model.Forward(ids, mask, types);
        var loss = model.Loss(output.Logits, labels);
        loss.Backward();

        var states = output.HiddenStates;
        Assert.That(states.Count, Is.EqualTo(folder.BertConfig.NumHiddenLayers + 1));
        for (int i = 0; i < states.Count; i++) ReferenceAssert.Close(states[i], reference, $"hidden_states.{i}", outTol, mask);
        ReferenceAssert.Close(output.LastHiddenState, reference, "last_hidden_state", outTol, mask);
        ReferenceAssert.Close(output.Logits, reference, "logits", outTol);
        ReferenceAssert.Close(loss, reference, "loss", outTol);
        ReferenceAssert.EveryGradient(model, reference, gradTol);
    }

    /// <summary>The gradient comparison can fail: an all-zero gradient fails for every tensor except
    /// the attention key biases, whose true gradient is zero (softmax ignores a shift shared by all keys).</summary>
    [TestCase("bert")]
    [TestCase("roberta")]
    public void AnAllZeroGradientFailsForEveryTensorWhoseGradientIsNotZero(string kind)
    {
        using var reference = SafeTensors.Open(Path.Combine(Folder(kind), "reference.safetensors"));
        var passing = ReferenceAssert.GradientScales(reference)
            .Where(s => reference.ReadAs(s.Key, DType.F64).ToDoubleArray().Max(Math.Abs) <= 1e-3 * s.Value) // zeros within the float32 tolerance
            .Select(s => s.Key).ToList();
        Assert.That(passing, Has.All.Contain("attention.self.key.bias"));
        Assert.That(passing, Has.Count.EqualTo(HfModelFolder.Open(Folder(kind)).BertConfig.NumHiddenLayers));
    }

    [Test]
    public void AttentionDropoutActsOnTheProbabilitiesInTrainingOnly()
    {
        var folder = HfModelFolder.Open(Folder("bert"));
        using var reference = SafeTensors.Open(Path.Combine(Folder("bert"), "reference.safetensors"));
        var ids = reference.ReadAs("input_ids", DType.I32);
        var mask = reference.ReadAs("attention_mask", DType.I32);
        double[] Logits(double p, bool training)
        {
            var config = folder.BertConfig with { HiddenDropoutProb = 0, ClassifierDropout = 0, AttentionProbsDropoutProb = p };
            var model = new BertForSequenceClassification(config, seed: 3, dtype: DType.F64);
            using (var source = folder.OpenWeights()) model.LoadWeights(source);
            if (training) model.Train(); else model.Eval();
            return model.Forward(ids, mask).Logits.ToDoubleArray();
        }
        var fused = Logits(0.1, training: false);
        // p = 1e-9 drops nothing and scales by 1 + 1e-9: the composed training path equals the fused op.
        var composed = Logits(1e-9, training: true);
        for (int i = 0; i < fused.Length; i++) Assert.That(composed[i], Is.EqualTo(fused[i]).Within(1e-7));
        var dropped = Logits(0.5, training: true);
        Assert.That(dropped.Zip(fused, (a, b) => Math.Abs(a - b)).Max(), Is.GreaterThan(1e-5), "dropout changes the training forward");
        Assert.That(Logits(0.5, training: true), Is.EqualTo(dropped), "and is a function of the seed");
    }

    [Test]
    public void MissingAndMisshapenWeightsAreReportedTogether()
    {
        var folder = HfModelFolder.Open(Folder("bert"));
        var small = folder.BertConfig with { IntermediateSize = 40, NumHiddenLayers = 3 };
        var model = new BertForSequenceClassification(small);
        using var source = folder.OpenWeights();
        var e = Assert.Throws<EngineException>(() => model.LoadWeights(source));
        Assert.That(e!.Message, Does.Contain("layer.2").And.Contain("intermediate.dense.weight").And.Contain("[40, 32]"));
    }

    [Test]
    public void AMissingHeadIsInitialisedWithANote()
    {
        var folder = HfModelFolder.Open(Folder("bert"));
        var dir = Path.Combine(Path.GetTempPath(), "engine-test-" + Guid.NewGuid().ToString("N"));
        Directory.CreateDirectory(dir);
        try
        {
            using (var source = folder.OpenWeights())
            {
                var kept = source.Names.Where(n => !n.StartsWith("classifier.")).ToDictionary(n => n, source.Read);
                SafeTensors.Save(Path.Combine(dir, "model.safetensors"), kept);
            }
            File.Copy(Path.Combine(Folder("bert"), "config.json"), Path.Combine(dir, "config.json"));
            var notes = new List<string>();
            var model = BertForSequenceClassification.FromFolder(HfModelFolder.Open(dir), log: notes.Add);
            Assert.That(notes.Single(), Does.Contain("classifier.weight").And.Contain("initialised randomly"));
            Assert.That(model.NumLabels, Is.EqualTo(3));
        }
        finally { Directory.Delete(dir, recursive: true); }
    }
}
