using Engine.Nn;

namespace Engine.Models.Peft;

/// <summary>
/// The places where a fine-tuning method reaches into a backbone, offered by every model family
/// (BERT/RoBERTa and the Llama family wire all of them). The models know these hooks, never a
/// method. A model without any hook set computes exactly what it computed before the hooks existed.
///
/// - <see cref="WrapLinear"/>: a replacement forward for one linear layer of the backbone (its
///   input [.., in] → [.., out]); the family calls <see cref="Linear"/> instead of
///   <c>layer.Forward</c> for every linear layer it lists in <see cref="SequenceClassifier.LinearLayers"/>.
/// - <see cref="KeyValuePrefixes"/>: per-block key and value prefixes. Called once per forward
///   with the batch size; returns one (key, value) pair per block, each [B, p, width] where width
///   is <see cref="SequenceClassifier.KeyValueWidth"/> (before the heads are split). The block puts
///   them in front of its keys and values; the attention mask gains p always-visible positions;
///   the family documents the positions (Llama: the prefix keys are not rotated and the tokens
///   count from p).
/// - <see cref="VirtualTokens"/>: p embeddings [B, p, D] put into the sequence at the word-embedding
///   level, in front of the text (BERT: right after [CLS]; Llama: right before each row's first
///   attended token), with p ones in the mask. The hidden states then have T + p positions.
/// - <see cref="BlockLimit"/>: run only the first N blocks; block N's output is the last hidden
///   state (after the final norm where the family has one), which pooling and the head read.
/// - <see cref="Head"/>: replaces the family's head (BERT: pooler + classifier; RoBERTa:
///   classifier; Llama: score) on the pooled vector [B, D] (the pooling's z, or the family's usual
///   token: [CLS] / the last non-pad token) → logits [B, C].
/// Pooling is the classifier's <see cref="SequenceClassifier.UsePooling"/>.
/// </summary>
public sealed class ModelHooks
{
    private readonly Dictionary<Linear, Func<Tensor, Tensor>> linears = new(ReferenceEqualityComparer.Instance);

    public Func<int, IReadOnlyList<(Tensor Key, Tensor Value)>>? KeyValuePrefixes { get; set; }

    public Func<int, Tensor>? VirtualTokens { get; set; }

    public int? BlockLimit { get; set; }

    public Func<Tensor, Tensor>? Head { get; set; }

    /// <summary>Routes <paramref name="layer"/>'s forward through <paramref name="forward"/> (one wrapper per layer).</summary>
    public void WrapLinear(Linear layer, Func<Tensor, Tensor> forward)
    {
        if (!linears.TryAdd(layer, forward)) throw new EngineException("hooks: this linear layer is already wrapped");
    }

    /// <summary>Unsets every hook (a method that drops its parameters mid-run, between stages).</summary>
    public void Clear()
    {
        linears.Clear();
        KeyValuePrefixes = null;
        VirtualTokens = null;
        BlockLimit = null;
        Head = null;
    }

    /// <summary>The layer's own forward, or its replacement when one is hooked in.</summary>
    public Tensor Linear(Linear layer, Tensor x) => linears.TryGetValue(layer, out var f) ? f(x) : layer.Forward(x);

    /// <summary>How many of <paramref name="blocks"/> blocks run.</summary>
    public int BlocksToRun(int blocks) => BlockLimit is int n ? Math.Clamp(n, 1, blocks) : blocks;
}
