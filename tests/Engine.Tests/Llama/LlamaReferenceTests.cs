using Engine.IO;
using Engine.Models;
using Engine.Models.Llama;
using NUnit.Framework;

namespace Engine.Tests.Llama;

/// <summary>
/// Tiny Llama-family sequence classifiers loaded from Hugging Face folders
/// (Fixtures/llama_tiny, made by tools/reference/llama_reference.py; reference.safetensors'
/// metadata "produced_by" says whether transformers or the independent PyTorch implementation
/// made it). Every hidden state, the logits, the loss and every parameter's gradient are compared.
/// Variants: llama (float32 weights), llama3_bf16 (llama3 rope scaling, attention and MLP biases,
/// BF16 weights), qwen2_pad_eos (q/k/v biases, pad == eos with attended trailing eos tokens).
/// </summary>
public class LlamaReferenceTests
{
    internal static string Folder(string kind) => Path.Combine(TestContext.CurrentContext.TestDirectory, "Fixtures", "llama_tiny", kind);

    [TestCase("llama", DType.F64, 1e-9, 1e-8)]          // float64 from the same float32 weights: rounding only
    [TestCase("llama3_bf16", DType.F64, 1e-9, 1e-8)]
    [TestCase("qwen2_pad_eos", DType.F64, 1e-9, 1e-8)]
    [TestCase("llama", DType.F32, 1e-4, 1e-3)]          // float32: the single-precision tolerances
    [TestCase("llama3_bf16", DType.F32, 1e-4, 1e-3)]
    [TestCase("qwen2_pad_eos", DType.F32, 1e-4, 1e-3)]
    public void MatchesTheReference(string kind, DType dtype, double outTol, double gradTol)
    {
        var folder = HfModelFolder.Open(Folder(kind));
        var model = LlamaForSequenceClassification.FromFolder(folder, dtype: dtype);
        model.Eval();
        using var reference = SafeTensors.Open(Path.Combine(Folder(kind), "reference.safetensors"));
        if (dtype == DType.F64 && reference.Metadata.GetValueOrDefault("produced_by", "").StartsWith("transformers", StringComparison.Ordinal))
        {
            // transformers computes rotary tables and RMSNorm in float32 even in a float64 model.
            outTol = Math.Max(outTol, 1e-5);
            gradTol = Math.Max(gradTol, 1e-5);
        }
        var ids = reference.ReadAs("input_ids", DType.I32);
        var mask = reference.ReadAs("attention_mask", DType.I32);
        var labels = reference.ReadAs("labels", DType.I32);

        var output = model.Forward(ids, mask);
        var loss = model.Loss(output.Logits, labels);
        loss.Backward();

        Assert.That(LlamaForSequenceClassification.PooledPositions(ids, folder.LlamaConfig.PadTokenId),
            Is.EqualTo(reference.ReadAs("pooled_positions", DType.I32).ToIntArray()));
        var states = output.HiddenStates;
        Assert.That(states.Count, Is.EqualTo(folder.LlamaConfig.NumHiddenLayers + 1));
        for (int i = 0; i < states.Count; i++) Close(states[i], reference, $"hidden_states.{i}", outTol, mask);
        Close(output.LastHiddenState, reference, "last_hidden_state", outTol, mask);
        Assert.That(ReferenceEquals(states[^1], output.LastHiddenState), "the last hidden state is the final-normed one, as in transformers");
        Close(output.Logits, reference, "logits", outTol);
        Close(loss, reference, "loss", outTol);
        int checkedGrads = 0;
        foreach (var (name, p) in model.NamedParameters())
        {
            Assert.That(p.Grad, Is.Not.Null, $"{name} got no gradient");
            Close(p.Grad!, reference, "grad." + name, gradTol);
            checkedGrads++;
        }
        Assert.That(checkedGrads, Is.EqualTo(reference.Names.Count(n => n.StartsWith("grad."))), "every reference gradient has a parameter");
    }

    /// <summary>|engine − reference| ≤ tol · max(1, max|reference|). With a mask [B, T], hidden states
    /// at padded positions are skipped: a left-padded query sees no unmasked key, and transformers
    /// (a uniform softmax over all keys) and the engine (causal keys only) fill such rows
    /// differently; nothing downstream reads them.</summary>
    internal static void Close(Tensor actual, IWeightSource reference, string name, double tol, Tensor? mask = null)
    {
        var expected = reference.ReadAs(name, DType.F64).ToDoubleArray();
        var a = actual.ToDoubleArray();
        Assert.That(a.Length, Is.EqualTo(expected.Length), name);
        var keep = mask?.ToIntArray();
        int width = keep is null ? 1 : a.Length / keep.Length;
        double scale = Math.Max(1.0, expected.Max(Math.Abs));
        double worst = 0;
        int at = -1;
        for (int i = 0; i < a.Length; i++)
        {
            if (keep is not null && keep[i / width] == 0) continue;
            double d = Math.Abs(a[i] - expected[i]);
            if (double.IsNaN(d) || d > worst) { worst = double.IsNaN(d) ? double.PositiveInfinity : d; at = i; }
        }
        Assert.That(worst, Is.LessThanOrEqualTo(tol * scale), $"{name}[{at}]: engine {(at >= 0 ? a[at] : 0)} vs reference {(at >= 0 ? expected[at] : 0)}");
    }
}
