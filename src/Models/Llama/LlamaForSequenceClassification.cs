using System.Text.Json;
using Engine.IO;
using Engine.Nn;

namespace Engine.Models.Llama;

/// <summary>
/// Hugging Face's LlamaForSequenceClassification (and MistralForSequenceClassification,
/// Qwen2ForSequenceClassification, which share its layout): the decoder under "model.", then
/// score = Linear(d, C, bias = false) applied at one position per row.
///
/// The position, as transformers picks it: with pad_token_id set, the rightmost token whose id is
/// not the pad id — non_pad = (ids != pad), last = argmax(arange(T) · non_pad) — so left and
/// right padding both work, a row of only padding pools position 0, and when pad == eos a
/// trailing eos counts as padding (the token before it is pooled). The attention mask plays no
/// part in the choice. Without pad_token_id a batch of one pools the last position and a larger
/// batch is an error. Scoring the gathered rows equals scoring every position and gathering.
///
/// Methods: the decoder takes the classifier's <see cref="SequenceClassifier.Hooks"/>; with virtual
/// tokens the pooled position moves past them when they were inserted before it. A
/// <see cref="SequenceClassifier.Pooling"/> (depth-wise, mean, cls) replaces the pooled
/// final-normed vector with its z; its "last" is this same position in every layer.
/// </summary>
public sealed class LlamaForSequenceClassification : SequenceClassifier
{
    public LlamaConfig Config { get; }
    public LlamaModel Decoder { get; }
    public override int NumLabels { get; }
    private readonly Linear score;

    public LlamaForSequenceClassification(LlamaConfig config, int seed = 0, int? numLabels = null, DType dtype = DType.F32)
    {
        Config = config;
        NumLabels = numLabels ?? config.NumLabels ?? 2;
        var rng = new Random(seed);
        Seeds = new DropoutSeeds((ulong)seed);
        double std = config.Extra.TryGetValue("initializer_range", out var r) && r.ValueKind == JsonValueKind.Number ? r.GetDouble() : 0.02;
        Decoder = Child("model", new LlamaModel(config, rng, std, dtype, Hooks));
        score = Child("score", new Linear(config.HiddenSize, NumLabels, rng, bias: false, std: std, dtype: dtype));
    }

    public override string? ProblemType => Config.ProblemType;

    public override LinearRoles Layers { get; } = new("q_proj", "k_proj", "v_proj", "o_proj", ["gate_proj", "up_proj"], "down_proj");
    public override int BlockCount => Config.NumHiddenLayers;
    public override int HiddenSize => Config.HiddenSize;
    public override int KeyValueWidth => Config.NumKeyValueHeads * Config.HeadDim;
    public override Tensor WordEmbeddings => Decoder.EmbedTokens.Weight;
    public override string DefaultPooling => "last";
    public override bool UsesTokenTypes => false;

    /// <summary>ids [B, T] I32; attentionMask [B, T] I32 or null; tokenTypeIds must be null or all
    /// zeros (Llama has no segment embeddings).</summary>
    public override ClassifierOutput Forward(Tensor ids, Tensor? attentionMask = null, Tensor? tokenTypeIds = null)
    {
        if (tokenTypeIds is not null && tokenTypeIds.ToIntArray().Any(x => x != 0))
            throw new EngineException($"{Config.ModelType}: token_type_ids are not used by this model family; pass none (or all zeros)");
        var positions = PooledPositions(ids, Config.PadTokenId, Config.ModelType);
        var output = Decoder.Forward(ids, attentionMask);
        for (int r = 0; r < positions.Length; r++) positions[r] = output.StatePosition(r, positions[r]);
        var pooled = Pooling is { } pooling
            ? pooling.Pool(output.HiddenStates, output.LastHiddenState, output.TokenMask, positions)
            : Ops.GatherRows(output.LastHiddenState, Tensor.FromArray(positions, positions.Length).To(output.LastHiddenState.Device));
        return new ClassifierOutput((Hooks.Head ?? score.Forward)(pooled), output.HiddenStates, output.LastHiddenState);
    }

    /// <summary>Every linear layer of the decoder ("model.layers.{i}.self_attn.{q,k,v,o}_proj",
    /// "model.layers.{i}.mlp.{gate,up,down}_proj"), never the score head.</summary>
    public override IEnumerable<(string Path, Linear Layer)> LinearLayers() => Decoder.LinearLayers("model.");

    /// <summary>The position each row is classified at (see the class summary): ids [B, T] → [B].</summary>
    public static int[] PooledPositions(Tensor ids, int? padTokenId, string modelType = "llama")
    {
        if (ids.Rank != 2) throw new EngineException($"{modelType}: input ids must be [batch, seq], got {Shape.Format(ids.Shape)}");
        int b = ids.Dim(0), t = ids.Dim(1);
        var result = new int[b];
        if (padTokenId is not int pad)
        {
            if (b != 1) throw new EngineException($"{modelType}: cannot handle batch sizes > 1 if no padding token is defined (config.json has no pad_token_id)");
            result[0] = t - 1;
            return result;
        }
        var v = ids.ToIntArray();
        for (int i = 0; i < b; i++)
        {
            // argmax(arange(T) * (ids != pad)): the first index of the maximum, so 0 for a row of padding.
            int best = 0, at = 0;
            for (int j = 0; j < t; j++)
            {
                int value = v[i * t + j] != pad ? j : 0;
                if (value > best) { best = value; at = j; }
            }
            result[i] = at;
        }
        return result;
    }

    /// <summary>Loads a Hugging Face folder: the config, then every parameter from the weights
    /// (bf16 or f16 checkpoints convert exactly into the model's dtype). A checkpoint saved from
    /// LlamaModel (no "model." prefix) loads too; lm_head.weight (a causal-LM head, tied or not)
    /// and rotary inv_freq buffers are ignored. <paramref name="numLabels"/> overrides the
    /// config's label count; a missing or misshapen score head is initialised randomly with a note.
    /// <paramref name="prepare"/> runs between building and loading (a saved method is re-installed there).</summary>
    public static LlamaForSequenceClassification FromFolder(HfModelFolder folder, int seed = 0, DType dtype = DType.F32, Action<string>? log = null, int? numLabels = null,
        Action<SequenceClassifier>? prepare = null)
    {
        ModelFolderCheck.BeforeBuilding(folder);
        var model = new LlamaForSequenceClassification(folder.LlamaConfig, seed, numLabels, dtype);
        prepare?.Invoke(model);
        using var source = folder.OpenWeights();
        model.LoadWeights(source, log);
        return model;
    }

    public void LoadWeights(IWeightSource source, Action<string>? log = null)
    {
        const string prefix = "model.";
        static IEnumerable<string> Candidates(string n)
        {
            yield return n;
            if (n.StartsWith(prefix, StringComparison.Ordinal)) yield return n[prefix.Length..];
        }
        static bool Ignore(string n) => n.StartsWith("lm_head.", StringComparison.Ordinal) || n.EndsWith("rotary_emb.inv_freq", StringComparison.Ordinal);
        LoadMatched(source, Candidates, Ignore, n => n.StartsWith("score.", StringComparison.Ordinal), log);
    }
}
