using Engine.Nn;

namespace Engine.Models.Peft;

/// <summary>
/// The places where a parameter-efficient method reaches into a backbone, offered by every model
/// family (BERT/RoBERTa and the Llama family wire all three). A model without any hook set computes exactly
/// what it computed before the hooks existed.
///
/// - <see cref="Linears"/>: a replacement forward for a linear layer (LoRA: base(x) + the
///   low-rank path). The family calls <see cref="Linear"/> instead of <c>layer.Forward</c> for
///   every linear layer of its backbone.
/// - <see cref="Prefixes"/>: per-layer key and value prefixes (prefix tuning). Called once per
///   forward with the batch size; returns one (key, value) pair per block, each [B, p, width]
///   where width is the block's key/value width (BERT: hidden size; Llama: kv heads · head dim),
///   before the heads are split. The block prepends them to its keys and values and extends the
///   attention mask with p visible positions.
/// - <see cref="Prompt"/>: p input embeddings [B, p, D] inserted into the word embeddings
///   (prompt tuning). Where they go is the family's documented choice (BERT: after [CLS]; Llama: before each row's first attended token).
/// </summary>
public sealed class ModelHooks
{
    public Dictionary<Linear, Func<Tensor, Tensor>> Linears { get; } = new(ReferenceEqualityComparer.Instance);

    public Func<int, IReadOnlyList<(Tensor Key, Tensor Value)>>? Prefixes { get; set; }

    public Func<int, Tensor>? Prompt { get; set; }

    /// <summary>The layer's own forward, or its replacement when one is hooked in.</summary>
    public Tensor Linear(Linear layer, Tensor x) => Linears.TryGetValue(layer, out var f) ? f(x) : layer.Forward(x);
}
