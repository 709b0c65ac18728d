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
        for (int i = 0; i < states.Count; i++) ReferenceAssert.Close(states[i], reference, $"hidden_states.{i}", outTol, mask);
        ReferenceAssert.Close(output.LastHiddenState, reference, "last_hidden_state", outTol, mask);
        Assert.That(ReferenceEquals(states[^1], output.LastHiddenState), "the last hidden state is the final-normed one, as in transformers");
        ReferenceAssert.Close(output.Logits, reference, "logits", outTol);
        ReferenceAssert.Close(loss, reference, "loss", outTol);
        ReferenceAssert.EveryGradient(model, reference, gradTol);
    }
}
