using Engine.IO;

namespace Engine.Models;

/// <summary>
/// Checks a model folder's parts against each other before anything large is allocated or any
/// training starts, so a mismatch is one clear line instead of an allocation failure, an
/// out-of-range id in the middle of a step, or a silent mis-load:
/// <list type="bullet">
/// <item>config vs weights: the parameters config.json implies (a lower bound from its sizes:
/// embeddings, and per layer the attention and MLP matrices) must not exceed what the weights
/// file holds (a config with a wrong vocab_size, hidden_size or layer count, or a hostile one
/// that would make the engine allocate terabytes); the exact per-tensor comparison follows when
/// the weights load (<see cref="WeightMatch"/>);</item>
/// <item>dtypes: a weight or bias stored as an integer or bool type;</item>
/// <item>tokenizer vs embeddings: a tokenizer that can produce ids past the embedding table.</item>
/// </list>
/// </summary>
public static class ModelFolderCheck
{
    /// <summary>The config-implied parameter lower bound against the weights, and the weights' dtypes.</summary>
    public static void BeforeBuilding(HfModelFolder folder)
    {
        using var weights = folder.OpenWeights();
        double stored = 0;
        foreach (var name in weights.Names)
        {
            var info = weights.Info(name);
            stored += info.Numel;
            if ((name.EndsWith(".weight", StringComparison.Ordinal) || name.EndsWith(".bias", StringComparison.Ordinal))
                && info.DType is not (DType.F32 or DType.F64 or DType.F16 or DType.BF16))
                throw new EngineException($"{weights.Path}: tensor '{name}' is stored as {info.DType}; model weights must be a floating-point type (F32, F16, BF16, F64)");
        }
        var (implied, how, hidden, labels) = Implied(folder);
        if (implied > stored * 1.01 + 1024)
            throw new EngineException($"{folder.ConfigPath}: describes a model of at least {implied:N0} parameters ({how}), but {weights.Path} holds {stored:N0}; " +
                "the config and the weights do not belong together");
        if ((double)hidden * labels > Math.Max(stored, 1e6))
            throw new EngineException($"{folder.ConfigPath}: a classification head of {labels:N0} labels × hidden_size {hidden:N0} is larger than the whole model in {weights.Path}");
    }

    /// <summary>A lower bound on the backbone's parameters from config.json, how it was reckoned, the hidden size and the label count.</summary>
    private static (double Count, string How, int Hidden, int Labels) Implied(HfModelFolder folder)
    {
        switch (folder.Family)
        {
            case ModelFamily.Bert:
            {
                var c = folder.BertConfig;
                double h = c.HiddenSize, embeddings = ((double)c.VocabSize + c.MaxPositionEmbeddings + c.TypeVocabSize) * h;
                double layer = 4 * h * h + 2 * h * c.IntermediateSize;
                return (embeddings + c.NumHiddenLayers * layer,
                    $"(vocab_size {c.VocabSize} + max_position_embeddings {c.MaxPositionEmbeddings} + type_vocab_size {c.TypeVocabSize}) × hidden_size {c.HiddenSize} + " +
                    $"{c.NumHiddenLayers} layers × (4 × hidden² + 2 × hidden × intermediate_size {c.IntermediateSize})", c.HiddenSize, c.NumLabels ?? 2);
            }
            case ModelFamily.Llama:
            {
                var c = folder.LlamaConfig;
                double h = c.HiddenSize, q = (double)c.NumAttentionHeads * c.HeadDim, kv = (double)c.NumKeyValueHeads * c.HeadDim;
                double layer = 2 * h * q + 2 * h * kv + 3 * h * c.IntermediateSize;
                return ((double)c.VocabSize * h + c.NumHiddenLayers * layer,
                    $"vocab_size {c.VocabSize} × hidden_size {c.HiddenSize} + {c.NumHiddenLayers} layers × (attention {c.NumAttentionHeads}+{c.NumKeyValueHeads} heads × head_dim {c.HeadDim} + MLP intermediate_size {c.IntermediateSize})",
                    c.HiddenSize, c.NumLabels ?? 2);
            }
            default: return (0, "", 0, 0);
        }
    }

    /// <summary>A tokenizer whose ids reach past the embedding table would fail mid-step; say so before.</summary>
    public static void TokenizerFits(Tokenization.TextTokenizer tokenizer, HfModelFolder folder)
    {
        int rows = folder.VocabSize;
        if (tokenizer.VocabSize > rows)
            throw new EngineException($"{tokenizer.Source}: the tokenizer has {tokenizer.VocabSize:N0} ids but the model's embeddings have {rows:N0} rows " +
                $"(vocab_size in {folder.ConfigPath}); ids {rows}..{tokenizer.VocabSize - 1} would be out of range. Use the tokenizer the model was trained with");
    }
}
