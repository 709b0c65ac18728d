using Engine.Models.Bert;
using Engine.Models.Llama;

namespace Engine.Models.Peft;

/// <summary>
/// What the PEFT methods need to know about a model family, in one place: which parameters are
/// the classification head (trained by every method; PEFT's modules_to_save), the default LoRA
/// targets, the usual within-layer pooling, the block count and the key/value width of a block
/// (prefix tuning), and the word-embedding table (prompt initialisation). BERT/RoBERTa and the Llama
/// family (Llama, Mistral, Qwen2) are wired; a new family adds its case to each member.
/// </summary>
public static class PeftFamily
{
    /// <summary>The head's module names as PEFT's modules_to_save lists them for SEQ_CLS.</summary>
    public static readonly string[] HeadModules = ["classifier", "score"];

    public static bool IsHead(string parameterName) =>
        HeadModules.Any(h => parameterName.StartsWith(h + ".", StringComparison.Ordinal));

    public static string[] DefaultLoraTargets(SequenceClassifier model) => model switch
    {
        BertForSequenceClassification => ["query", "value"],
        _ => ["q_proj", "v_proj"], // Llama, Mistral, Qwen2 (their attention projections' names)
    };

    /// <summary>cls for encoders, last for decoders.</summary>
    public static string DefaultPooling(SequenceClassifier model) => model is BertForSequenceClassification ? "cls" : "last";

    public static int BlockCount(SequenceClassifier model) => model switch
    {
        BertForSequenceClassification b => b.Config.NumHiddenLayers,
        LlamaForSequenceClassification l => l.Config.NumHiddenLayers,
        _ => throw NotWired(model, "depth-wise pooling, prefix and prompt tuning"),
    };

    public static int HiddenSize(SequenceClassifier model) => model switch
    {
        BertForSequenceClassification b => b.Config.HiddenSize,
        LlamaForSequenceClassification l => l.Config.HiddenSize,
        _ => throw NotWired(model, "prefix and prompt tuning"),
    };

    /// <summary>The width of one block's keys (and values) before the heads are split (Llama:
    /// kv heads · head dim, smaller than the hidden size with grouped-query attention).</summary>
    public static int KeyValueWidth(SequenceClassifier model) => model switch
    {
        BertForSequenceClassification b => b.Config.HiddenSize,
        LlamaForSequenceClassification l => l.Config.NumKeyValueHeads * l.Config.HeadDim,
        _ => throw NotWired(model, "prefix tuning"),
    };

    /// <summary>The word-embedding table [V, D].</summary>
    public static Tensor WordEmbeddings(SequenceClassifier model) =>
        model.NamedParameters().Where(p => p.Name.EndsWith("embeddings.word_embeddings.weight", StringComparison.Ordinal)
                                            || p.Name.EndsWith("embed_tokens.weight", StringComparison.Ordinal))
            .Select(p => p.Param).FirstOrDefault() ?? throw NotWired(model, "prompt tuning");

    private static EngineException NotWired(SequenceClassifier model, string what) =>
        new($"{what}: not wired for {model.GetType().Name} yet (BERT, RoBERTa and the Llama family are)");
}
