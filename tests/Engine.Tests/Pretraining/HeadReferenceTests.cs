using System.Text.Json;
using Engine.Models;
using Engine.Models.Pretraining;
using NUnit.Framework;

namespace Engine.Tests.Pretraining;

/// <summary>
/// The pretraining heads' loss and gradients against an independent PyTorch computation
/// (tools/reference/pretrain_reference.py, float64; fixture Fixtures/pretrain_reference.json):
/// BertForMaskedLM's prediction head with the decoder tied to the word embeddings, and
/// LlamaForCausalLM's output layer tied and untied, with the labels shifted. The engine's own
/// modules run on the fixture's numbers (copied into their parameters), in float64 and float32.
/// </summary>
public class HeadReferenceTests
{
    private static JsonElement Case(string name) =>
        JsonDocument.Parse(File.ReadAllText(Path.Combine(TestContext.CurrentContext.TestDirectory, "Fixtures", "pretrain_reference.json")))
            .RootElement.GetProperty("cases").GetProperty(name);

    private static Tensor Load(JsonElement e, DType dtype)
    {
        var shape = e.GetProperty("shape").EnumerateArray().Select(x => x.GetInt32()).ToArray();
        var data = e.GetProperty("data").EnumerateArray();
        if (e.TryGetProperty("int", out _)) return Tensor.FromArray(data.Select(x => x.GetInt32()).ToArray(), shape);
        return Tensor.FromDoubles(data.Select(x => x.GetDouble()).ToArray(), shape, dtype);
    }

    /// <summary>|engine − reference| ≤ tol · max|reference| (each tensor's own scale).</summary>
    private static void Close(Tensor actual, JsonElement expected, string what, double tol)
    {
        var a = actual.ToDoubleArray();
        var e = expected.GetProperty("data").EnumerateArray().Select(x => x.GetDouble()).ToArray();
        Assert.That(a.Length, Is.EqualTo(e.Length), what);
        double scale = e.Max(Math.Abs);
        Assert.That(scale, Is.GreaterThan(0), $"{what}: the reference is all zeros");
        for (int i = 0; i < a.Length; i++) Assert.That(Math.Abs(a[i] - e[i]), Is.LessThanOrEqualTo(tol * scale), $"{what}[{i}]: engine {a[i]} vs PyTorch {e[i]}");
    }

    private static void Set(Tensor parameter, JsonElement value, DType dtype) => Backend.Backends.Copy(Load(value, dtype), parameter);

    private static Tensor Param(Engine.Nn.Module m, string name) => m.NamedParameters().Single(p => p.Name == name).Param;

    [TestCase(DType.F64, 1e-10)]
    [TestCase(DType.F32, 1e-5)]
    public void MaskedLmHeadTiedToTheEmbeddingsMatchesPyTorch(DType dtype, double tol)
    {
        var c = Case("mlm");
        var inputs = c.GetProperty("inputs");
        var config = new BertConfig { ModelType = "bert", VocabSize = 11, HiddenSize = 8, NumHiddenLayers = 1, NumAttentionHeads = 2, IntermediateSize = 16 };
        var model = new MaskedLanguageModel(config, dtype: dtype);
        Set(Param(model, "bert.embeddings.word_embeddings.weight"), inputs.GetProperty("embeddings"), dtype);
        foreach (var n in new[] { "dense.weight", "dense.bias", "LayerNorm.weight", "LayerNorm.bias" })
            Set(Param(model, "cls.predictions.transform." + n), inputs.GetProperty(n), dtype);
        Set(Param(model, "cls.predictions.bias"), inputs.GetProperty("bias"), dtype);
        var x = Load(inputs.GetProperty("x"), dtype);
        x.RequiresGrad = true;
        var labels = Load(c.GetProperty("labels"), dtype).ToIntArray();

        var loss = LanguageModel.Loss(new LmPrediction(model.Head(x), labels));
        loss.Backward();

        Assert.That(loss.Item(), Is.EqualTo(c.GetProperty("loss").GetDouble()).Within(tol * Math.Abs(c.GetProperty("loss").GetDouble())));
        var grads = c.GetProperty("grads");
        Close(x.Grad!, grads.GetProperty("x"), "grad x", tol);
        // The tied decoder's gradient lands in the word embeddings (the only copy of the matrix).
        Close(Param(model, "bert.embeddings.word_embeddings.weight").Grad!, grads.GetProperty("embeddings"), "grad word embeddings", tol);
        foreach (var n in new[] { "dense.weight", "dense.bias", "LayerNorm.weight", "LayerNorm.bias" })
            Close(Param(model, "cls.predictions.transform." + n).Grad!, grads.GetProperty(n), "grad " + n, tol);
        Close(Param(model, "cls.predictions.bias").Grad!, grads.GetProperty("bias"), "grad bias", tol);
    }

    [TestCase("causal_tied", DType.F64, 1e-10)]
    [TestCase("causal_tied", DType.F32, 1e-5)]
    [TestCase("causal_untied", DType.F64, 1e-10)]
    [TestCase("causal_untied", DType.F32, 1e-5)]
    public void CausalLmOutputLayerMatchesPyTorch(string name, DType dtype, double tol)
    {
        var c = Case(name);
        var inputs = c.GetProperty("inputs");
        bool tied = name == "causal_tied";
        var config = new LlamaConfig
        {
            ModelType = "llama", VocabSize = 11, HiddenSize = 8, IntermediateSize = 16, NumHiddenLayers = 1, NumAttentionHeads = 2,
            NumKeyValueHeads = 1, HeadDim = 4, TieWordEmbeddings = tied,
        };
        var model = new CausalLanguageModel(config, dtype: dtype);
        Assert.That(model.Tied, Is.EqualTo(tied));
        Assert.That(model.NamedParameters().Any(p => p.Name == "lm_head.weight"), Is.EqualTo(!tied), "lm_head.weight exists only when untied");
        Set(Param(model, "model.embed_tokens.weight"), inputs.GetProperty("embeddings"), dtype);
        if (!tied) Set(Param(model, "lm_head.weight"), inputs.GetProperty("lm_head"), dtype);
        var h = Load(inputs.GetProperty("h"), dtype);
        h.RequiresGrad = true;
        var ids = Load(c.GetProperty("ids"), dtype);
        int b = ids.Dim(0), t = ids.Dim(1);

        var logits = model.Head(h.Reshape(b * t, 8));
        var loss = LanguageModel.Loss(new LmPrediction(logits, CausalLanguageModel.ShiftedTargets(ids.ToIntArray(), b, t)));
        loss.Backward();

        double expected = c.GetProperty("loss").GetDouble();
        Assert.That(loss.Item(), Is.EqualTo(expected).Within(tol * Math.Abs(expected)));
        var grads = c.GetProperty("grads");
        Close(h.Grad!, grads.GetProperty("h"), "grad h", tol);
        var embeddingGrad = Param(model, "model.embed_tokens.weight").Grad;
        if (tied) Close(embeddingGrad!, grads.GetProperty("embeddings"), "grad embeddings", tol);
        else
        {
            Assert.That(embeddingGrad is null || embeddingGrad.ToDoubleArray().All(v => v == 0), "an untied head sends no gradient to the embeddings");
            Close(Param(model, "lm_head.weight").Grad!, grads.GetProperty("lm_head"), "grad lm_head", tol);
        }
    }
}
