using System.Text.Json;

namespace Engine.Models;

/// <summary>The model families the engine knows, told apart by config.json's model_type.</summary>
public enum ModelFamily { Unknown, Bert, Llama }

/// <summary>
/// A BERT-family config (model_type "bert" or "roberta"), with the defaults transformers uses
/// for fields a config.json leaves out. <see cref="Extra"/> keeps every field not listed here.
/// </summary>
public sealed record BertConfig
{
    public required string ModelType { get; init; }
    public required int VocabSize { get; init; }
    public required int HiddenSize { get; init; }
    public required int NumHiddenLayers { get; init; }
    public required int NumAttentionHeads { get; init; }
    public required int IntermediateSize { get; init; }
    /// <summary>gelu, gelu_new or relu.</summary>
    public string HiddenAct { get; init; } = "gelu";
    public double HiddenDropoutProb { get; init; } = 0.1;
    public double AttentionProbsDropoutProb { get; init; } = 0.1;
    public int MaxPositionEmbeddings { get; init; } = 512;
    public int TypeVocabSize { get; init; } = 2;
    public double LayerNormEps { get; init; } = 1e-12;
    public int PadTokenId { get; init; }
    public int? BosTokenId { get; init; }
    public int? EosTokenId { get; init; }
    /// <summary>Only "absolute" is supported by the engine's BERT.</summary>
    public string PositionEmbeddingType { get; init; } = "absolute";
    /// <summary>Dropout of the classification head; null means "use HiddenDropoutProb".</summary>
    public double? ClassifierDropout { get; init; }
    public IReadOnlyDictionary<int, string>? Id2Label { get; init; }
    public IReadOnlyDictionary<string, int>? Label2Id { get; init; }
    /// <summary>Number of classes of a sequence-classification head; null when the config has none.</summary>
    public int? NumLabels { get; init; }
    public string? ProblemType { get; init; }
    public IReadOnlyList<string> Architectures { get; init; } = [];
    public IReadOnlyDictionary<string, JsonElement> Extra { get; init; } = new Dictionary<string, JsonElement>();

    public bool IsRoberta => ModelType is "roberta" or "xlm-roberta";
    public int HeadDim => HiddenSize / NumAttentionHeads;

    internal static BertConfig Read(ConfigReader r)
    {
        var id2label = r.Id2Label();
        var c = new BertConfig
        {
            ModelType = r.String("model_type", "bert"),
            VocabSize = r.Positive("vocab_size"),
            HiddenSize = r.Positive("hidden_size"),
            NumHiddenLayers = r.Positive("num_hidden_layers"),
            NumAttentionHeads = r.Positive("num_attention_heads"),
            IntermediateSize = r.Positive("intermediate_size"),
            HiddenAct = r.String("hidden_act", "gelu"),
            HiddenDropoutProb = r.Double("hidden_dropout_prob", 0.1),
            AttentionProbsDropoutProb = r.Double("attention_probs_dropout_prob", 0.1),
            MaxPositionEmbeddings = r.Positive("max_position_embeddings", 512),
            TypeVocabSize = r.Positive("type_vocab_size", 2),
            LayerNormEps = r.Double("layer_norm_eps", 1e-12),
            PadTokenId = r.Int("pad_token_id", 0),
            BosTokenId = r.IntOrNull("bos_token_id"),
            EosTokenId = r.IntOrNull("eos_token_id"),
            PositionEmbeddingType = r.String("position_embedding_type", "absolute"),
            ClassifierDropout = r.DoubleOrNull("classifier_dropout"),
            Id2Label = id2label,
            Label2Id = r.Label2Id(),
            NumLabels = r.NumLabels(id2label),
            ProblemType = r.StringOrNull("problem_type"),
            Architectures = r.StringList("architectures"),
        };
        if (c.HiddenSize % c.NumAttentionHeads != 0)
            throw new EngineException($"{r.Path}: hidden_size {c.HiddenSize} is not a multiple of num_attention_heads {c.NumAttentionHeads}");
        if (c.HiddenAct is not ("gelu" or "gelu_new" or "gelu_pytorch_tanh" or "relu" or "silu" or "swish"))
            throw new EngineException($"{r.Path}: hidden_act '{c.HiddenAct}' is not supported (gelu, gelu_new, gelu_pytorch_tanh, relu, silu)");
        return c with { Extra = r.Unknown() };
    }
}

/// <summary>Rotary-embedding scaling (config.json "rope_scaling"). Type "linear" divides positions
/// by <see cref="Factor"/>; type "llama3" (Llama 3.1/3.2) rescales frequencies using
/// <see cref="LowFreqFactor"/>, <see cref="HighFreqFactor"/> and
/// <see cref="OriginalMaxPositionEmbeddings"/>. Other types are kept with their fields in
/// <see cref="Extra"/> for the model to accept or refuse.</summary>
public sealed record RopeScaling(string Type, double Factor, double? LowFreqFactor, double? HighFreqFactor,
    int? OriginalMaxPositionEmbeddings, IReadOnlyDictionary<string, JsonElement> Extra);

/// <summary>
/// A Llama-family config (model_type "llama", "mistral" or "qwen2"), with transformers'
/// defaults for absent fields. <see cref="Extra"/> keeps every field not listed here.
/// </summary>
public sealed record LlamaConfig
{
    public required string ModelType { get; init; }
    public required int VocabSize { get; init; }
    public required int HiddenSize { get; init; }
    public required int IntermediateSize { get; init; }
    public required int NumHiddenLayers { get; init; }
    public required int NumAttentionHeads { get; init; }
    /// <summary>Grouped-query attention: heads share key/value heads in groups of
    /// NumAttentionHeads / NumKeyValueHeads. Equals NumAttentionHeads when the config omits it.</summary>
    public required int NumKeyValueHeads { get; init; }
    /// <summary>Width of one head: config's head_dim when given, else HiddenSize / NumAttentionHeads.</summary>
    public required int HeadDim { get; init; }
    public string HiddenAct { get; init; } = "silu";
    public double RmsNormEps { get; init; } = 1e-6;
    public double RopeTheta { get; init; } = 10000;
    public RopeScaling? RopeScaling { get; init; }
    public int MaxPositionEmbeddings { get; init; } = 2048;
    /// <summary>Biases on q/k/v/o projections (Qwen2 sets this for q/k/v).</summary>
    public bool AttentionBias { get; init; }
    public bool MlpBias { get; init; }
    public bool TieWordEmbeddings { get; init; }
    public int? PadTokenId { get; init; }
    public int? BosTokenId { get; init; }
    /// <summary>End-of-sequence ids (Llama 3 lists several).</summary>
    public IReadOnlyList<int> EosTokenIds { get; init; } = [];
    public IReadOnlyDictionary<int, string>? Id2Label { get; init; }
    public IReadOnlyDictionary<string, int>? Label2Id { get; init; }
    public int? NumLabels { get; init; }
    public string? ProblemType { get; init; }
    public IReadOnlyList<string> Architectures { get; init; } = [];
    public IReadOnlyDictionary<string, JsonElement> Extra { get; init; } = new Dictionary<string, JsonElement>();

    internal static LlamaConfig Read(ConfigReader r)
    {
        int hidden = r.Positive("hidden_size"), heads = r.Positive("num_attention_heads");
        int kvHeads = r.IntOrNull("num_key_value_heads") ?? heads;
        var id2label = r.Id2Label();
        var modelType = r.String("model_type", "llama");
        var c = new LlamaConfig
        {
            ModelType = modelType,
            VocabSize = r.Positive("vocab_size"),
            HiddenSize = hidden,
            IntermediateSize = r.Positive("intermediate_size"),
            NumHiddenLayers = r.Positive("num_hidden_layers"),
            NumAttentionHeads = heads,
            NumKeyValueHeads = kvHeads,
            HeadDim = r.IntOrNull("head_dim") ?? hidden / heads,
            HiddenAct = r.String("hidden_act", "silu"),
            RmsNormEps = r.Double("rms_norm_eps", 1e-6),
            RopeTheta = r.Double("rope_theta", 10000),
            RopeScaling = ReadRopeScaling(r),
            MaxPositionEmbeddings = r.Positive("max_position_embeddings", 2048),
            // Qwen2 has q/k/v biases without writing attention_bias.
            AttentionBias = r.Bool("attention_bias", modelType == "qwen2"),
            MlpBias = r.Bool("mlp_bias", false),
            TieWordEmbeddings = r.Bool("tie_word_embeddings", false),
            PadTokenId = r.IntOrNull("pad_token_id"),
            BosTokenId = r.IntOrNull("bos_token_id"),
            EosTokenIds = r.IntList("eos_token_id"),
            Id2Label = id2label,
            Label2Id = r.Label2Id(),
            NumLabels = r.NumLabels(id2label),
            ProblemType = r.StringOrNull("problem_type"),
            Architectures = r.StringList("architectures"),
        };
        if (kvHeads <= 0 || heads % kvHeads != 0)
            throw new EngineException($"{r.Path}: num_attention_heads {heads} is not a multiple of num_key_value_heads {kvHeads}");
        if (c.HeadDim <= 0) throw new EngineException($"{r.Path}: head_dim must be positive, got {c.HeadDim}");
        if (c.HiddenAct is not ("silu" or "swish")) throw new EngineException($"{r.Path}: hidden_act '{c.HiddenAct}' is not supported (only silu)");
        if (!r.Contains("head_dim") && hidden % heads != 0)
            throw new EngineException($"{r.Path}: hidden_size {hidden} is not a multiple of num_attention_heads {heads} and no head_dim is given");
        return c with { Extra = r.Unknown() };
    }

    private static RopeScaling? ReadRopeScaling(ConfigReader r)
    {
        if (r.Object("rope_scaling") is not { } o) return null;
        var inner = new ConfigReader($"{r.Path} (rope_scaling)", o);
        // transformers accepts both spellings; newer configs write rope_type.
        var type = inner.StringOrNull("rope_type") ?? inner.StringOrNull("type")
            ?? throw new EngineException($"{r.Path}: rope_scaling has neither 'rope_type' nor 'type'");
        var scaling = new RopeScaling(type, inner.Double("factor", 1.0), inner.DoubleOrNull("low_freq_factor"),
            inner.DoubleOrNull("high_freq_factor"), inner.IntOrNull("original_max_position_embeddings"), inner.Unknown());
        if (type == "llama3" && (scaling.LowFreqFactor is null || scaling.HighFreqFactor is null || scaling.OriginalMaxPositionEmbeddings is null || !inner.Contains("factor")))
            throw new EngineException($"{r.Path}: rope_scaling type llama3 needs factor, low_freq_factor, high_freq_factor and original_max_position_embeddings");
        if (type is not ("default" or "linear" or "llama3"))
            throw new EngineException($"{r.Path}: rope_scaling type '{type}' is not supported (default, linear, llama3)");
        if (type == "linear" && !inner.Contains("factor"))
            throw new EngineException($"{r.Path}: rope_scaling type linear needs factor");
        return scaling;
    }
}
