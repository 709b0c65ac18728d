using System.Text.Json.Nodes;
using Engine.Autograd;
using Engine.IO;
using Engine.Models;
using Engine.Models.Llama;
using NUnit.Framework;

namespace Engine.Tests.Llama;

/// <summary>Pooling, padding, rope scaling, loading and CLI behaviour of the Llama family, on the
/// tiny fixtures of <see cref="LlamaReferenceTests"/>.</summary>
public class LlamaBehaviourTests
{
    private static string Folder(string kind) => LlamaReferenceTests.Folder(kind);

    private static Tensor Ids(int[,] rows)
    {
        int b = rows.GetLength(0), t = rows.GetLength(1);
        var flat = new int[b * t];
        for (int i = 0; i < b; i++) for (int j = 0; j < t; j++) flat[i * t + j] = rows[i, j];
        return Tensor.FromArray(flat, b, t);
    }

    [Test]
    public void PoolingTakesTheRightmostNonPadToken()
    {
        // pad = 0: right padding, left padding, no padding, only padding (argmax of zeros: 0).
        var ids = Ids(new[,] { { 5, 6, 7, 0, 0 }, { 0, 0, 5, 6, 7 }, { 5, 6, 7, 8, 9 }, { 0, 0, 0, 0, 0 } });
        Assert.That(LlamaForSequenceClassification.PooledPositions(ids, 0), Is.EqualTo(new[] { 2, 4, 4, 0 }));
        // pad == eos (2): a trailing eos counts as padding, an eos in the middle does not.
        var eos = Ids(new[,] { { 5, 6, 7, 2, 2 }, { 5, 2, 7, 8, 2 } });
        Assert.That(LlamaForSequenceClassification.PooledPositions(eos, 2), Is.EqualTo(new[] { 2, 3 }));
    }

    [Test]
    public void WithoutAPadTokenOnlyABatchOfOneIsAccepted()
    {
        var one = Ids(new[,] { { 5, 6, 7 } });
        Assert.That(LlamaForSequenceClassification.PooledPositions(one, null), Is.EqualTo(new[] { 2 }));
        var folder = HfModelFolder.Open(Folder("llama"));
        var model = new LlamaForSequenceClassification(folder.LlamaConfig with { PadTokenId = null });
        Assert.That(model.Forward(one).Logits.ShapeArray, Is.EqualTo(new[] { 1, 3 }));
        var e = Assert.Throws<EngineException>(() => model.Forward(Ids(new[,] { { 5, 6 }, { 7, 8 } })));
        Assert.That(e!.Message, Does.Contain("cannot handle batch sizes > 1 if no padding token is defined"));
    }

    /// <summary>Position ids are 0..T−1 in every row, but rotary embeddings only see position
    /// differences, so the same tokens padded on the left or on the right classify alike.</summary>
    [Test]
    public void LeftAndRightPaddingGiveTheSameLogits()
    {
        var folder = HfModelFolder.Open(Folder("llama"));
        var model = LlamaForSequenceClassification.FromFolder(folder, dtype: DType.F64);
        model.Eval();
        using var _ = Tape.NoGrad();
        var ids = Ids(new[,] { { 9, 14, 33, 50, 0, 0, 0 }, { 0, 0, 0, 9, 14, 33, 50 }, { 9, 14, 33, 50, 71, 80, 99 } });
        var mask = Ids(new[,] { { 1, 1, 1, 1, 0, 0, 0 }, { 0, 0, 0, 1, 1, 1, 1 }, { 1, 1, 1, 1, 1, 1, 1 } });
        var logits = model.Forward(ids, mask).Logits.ToDoubleArray();
        for (int c = 0; c < 3; c++) Assert.That(logits[3 + c], Is.EqualTo(logits[c]).Within(1e-10), $"class {c}");
        var alone = model.Forward(Ids(new[,] { { 9, 14, 33, 50 } })).Logits.ToDoubleArray();
        for (int c = 0; c < 3; c++) Assert.That(alone[c], Is.EqualTo(logits[c]).Within(1e-10), $"unpadded, class {c}");
        Assert.That(Math.Abs(logits[6] - logits[0]), Is.GreaterThan(1e-6), "a longer sequence classifies differently");
    }

    [Test]
    public void Llama3RopeFrequenciesMatchThePythonFormula()
    {
        var config = HfModelFolder.Open(Folder("llama3_bf16")).LlamaConfig;
        Assert.That(config.RopeScaling!.Type, Is.EqualTo("llama3"));
        var got = LlamaRope.InverseFrequencies(config);
        using var reference = SafeTensors.Open(Path.Combine(Folder("llama3_bf16"), "reference.safetensors"));
        var want = reference.ReadAs("rope.inv_freq", DType.F64).ToDoubleArray();
        Assert.That(got, Has.Length.EqualTo(want.Length));
        for (int i = 0; i < want.Length; i++) Assert.That(got[i], Is.EqualTo(want[i]).Within(1e-12 * want[i]), $"inv_freq[{i}]");
        // head_dim 8, theta 1e4: wavelengths 2π·{1, 10, 100, 1000}; original 200, factors 1 and 4: kept, interpolated, divided, divided.
        Assert.That(got[0], Is.EqualTo(1.0).Within(1e-15));
        Assert.That(got[1], Is.GreaterThan(0.1 / 8).And.LessThan(0.1));
        Assert.That(got[2], Is.EqualTo(0.01 / 8).Within(1e-15));
        if (reference.Contains("rope.inv_freq_transformers"))
        {
            var hf = reference.ReadAs("rope.inv_freq_transformers", DType.F64).ToDoubleArray();
            for (int i = 0; i < hf.Length; i++) Assert.That(got[i], Is.EqualTo(hf[i]).Within(1e-6 * hf[i]), $"transformers inv_freq[{i}] (float32)");
        }
    }

    [Test]
    public void LinearRopeScalingDividesTheFrequenciesAndOtherTypesAreRefused()
    {
        var config = HfModelFolder.Open(Folder("llama")).LlamaConfig;
        var plain = LlamaRope.InverseFrequencies(config);
        var linear = LlamaRope.InverseFrequencies(config with { RopeScaling = new RopeScaling("linear", 4, null, null, null, new Dictionary<string, System.Text.Json.JsonElement>()) });
        for (int i = 0; i < plain.Length; i++) Assert.That(linear[i], Is.EqualTo(plain[i] / 4).Within(1e-18));
        var yarn = config with { RopeScaling = new RopeScaling("yarn", 4, null, null, 64, new Dictionary<string, System.Text.Json.JsonElement>()) };
        var e = Assert.Throws<EngineException>(() => new LlamaForSequenceClassification(yarn));
        Assert.That(e!.Message, Does.Contain("'yarn'"));
    }

    /// <summary>A checkpoint saved from LlamaModel or LlamaForCausalLM: no "model." prefix, an
    /// lm_head.weight, no score head. It loads, with one note about the new head.</summary>
    [Test]
    public void ACausalLmCheckpointLoadsWithANewHead()
    {
        using var temp = new TempFolder();
        using (var source = HfModelFolder.Open(Folder("llama")).OpenWeights())
        {
            var kept = source.Names.Where(n => !n.StartsWith("score.")).ToDictionary(n => n.StartsWith("model.") ? n["model.".Length..] : n, source.Read);
            kept["lm_head.weight"] = source.Read("model.embed_tokens.weight");
            SafeTensors.Save(temp.File("model.safetensors"), kept);
        }
        File.Copy(Path.Combine(Folder("llama"), "config.json"), temp.File("config.json"));
        var notes = new List<string>();
        var model = SequenceClassifier.FromFolder(HfModelFolder.Open(temp.Path), log: notes.Add);
        Assert.That(model, Is.InstanceOf<LlamaForSequenceClassification>());
        Assert.That(notes.Single(), Does.Contain("score.weight").And.Contain("initialised randomly"));
        Assert.That(model.CheckpointName("model.norm.weight"), Is.EqualTo("norm.weight"));
    }

    /// <summary>model_type mistral (same architecture, no biases) loads through the same class and
    /// computes the same logits as the llama fixture it was copied from.</summary>
    [Test]
    public void AMistralFolderLoadsThroughTheSameClass()
    {
        using var temp = new TempFolder();
        var config = JsonNode.Parse(File.ReadAllText(Path.Combine(Folder("llama"), "config.json")))!.AsObject();
        config["model_type"] = "mistral";
        config["sliding_window"] = 4096;
        File.WriteAllText(temp.File("config.json"), config.ToJsonString());
        File.Copy(Path.Combine(Folder("llama"), "model.safetensors"), temp.File("model.safetensors"));
        using var reference = SafeTensors.Open(Path.Combine(Folder("llama"), "reference.safetensors"));
        var model = SequenceClassifier.FromFolder(HfModelFolder.Open(temp.Path), dtype: DType.F64);
        model.Eval();
        using var _ = Tape.NoGrad();
        var logits = model.Forward(reference.ReadAs("input_ids", DType.I32), reference.ReadAs("attention_mask", DType.I32)).Logits;
        ReferenceAssert.Close(logits, reference, "logits", 1e-9);
    }

    [Test]
    public void EngineForwardWritesTheLlamaOutputs()
    {
        using var temp = new TempFolder();
        var outPath = temp.File("out.safetensors");
        var reference = Path.Combine(Folder("llama3_bf16"), "reference.safetensors");
        var r = EngineProcess.Run("forward", "--model", Folder("llama3_bf16"), "--ids", reference, "--grads", "--out", outPath);
        Assert.That(r.Exit, Is.EqualTo(0), r.Err);
        using var got = SafeTensors.Open(outPath);
        using var want = SafeTensors.Open(reference);
        Assert.That(got.Names, Does.Contain("hidden_states.0").And.Contain("hidden_states.2").And.Contain("last_hidden_state")
            .And.Contain("logits").And.Contain("loss").And.Contain("grad.model.embed_tokens.weight").And.Contain("grad.score.weight"));
        Assert.That(got.Names, Does.Not.Contain("hidden_states.3"));
        foreach (var name in new[] { "logits", "loss", "last_hidden_state", "grad.score.weight", "grad.model.layers.0.self_attn.k_proj.weight", "grad.model.layers.1.mlp.down_proj.bias" })
        {
            var a = got.ReadAs(name, DType.F64).ToDoubleArray();
            var e = want.ReadAs(name, DType.F64).ToDoubleArray();
            double scale = Math.Max(1, e.Max(Math.Abs));
            var mask = name == "last_hidden_state" ? want.ReadAs("attention_mask", DType.I32).ToIntArray() : null;
            for (int i = 0; i < e.Length; i++)
                if (mask is null || mask[i / (e.Length / mask.Length)] != 0)
                    Assert.That(a[i], Is.EqualTo(e[i]).Within(1e-3 * scale), $"{name}[{i}]"); // float32 run
        }
    }
}
