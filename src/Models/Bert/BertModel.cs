using Engine.Models.Peft;
using Engine.Nn;

namespace Engine.Models.Bert;

/// <summary>What the encoder computed: every layer's output (index 0: embeddings, i: block i),
/// the last one, and the pooler output (BERT only). <see cref="TokenMask"/> is the I32 mask
/// [B, T'] of the hidden states' positions (1 token, 0 padding): the input mask, with the virtual
/// tokens' positions added when the hook inserted some (T' = T + p); null when no mask was given
/// and no virtual tokens were inserted.</summary>
public sealed record BertOutput(IReadOnlyList<Tensor> HiddenStates, Tensor LastHiddenState, Tensor? Pooled)
{
    public Tensor? TokenMask { get; init; }
}

/// <summary>
/// The BERT / RoBERTa encoder as Hugging Face's BertModel and RobertaModel compute it, with the
/// same parameter names (embeddings.word_embeddings.weight, encoder.layer.0.attention.self.query.weight, …).
/// Post-LayerNorm blocks: self-attention with the additive padding mask → output dense →
/// dropout → residual → LayerNorm; intermediate dense → activation → output dense → dropout →
/// residual → LayerNorm. RoBERTa differs in its position ids (they start after the padding
/// index and skip padding) and has no pooler in its classification model.
///
/// Method hooks (<see cref="ModelHooks"/>, all unset by default): every linear layer of the
/// blocks and the pooler goes through <see cref="ModelHooks.Linear"/>; per-layer key/value
/// prefixes are prepended to each block's keys and values, with the attention mask extended by p
/// visible positions; virtual tokens are inserted into the word embeddings right after the first
/// token ([CLS] / &lt;s&gt;), before the position and token-type embeddings and the embedding
/// LayerNorm are added, so [CLS] keeps position 0, the virtual tokens take positions 1..p and the
/// text follows (Hugging Face PEFT's prompt tuning puts them before [CLS] instead, which would
/// make the pooler read a virtual token); a block limit stops after block N.
/// </summary>
public sealed class BertModel : Module
{
    public BertConfig Config { get; }
    private readonly BertEmbeddings embeddings;
    private readonly List<BertLayer> layers = new();
    private readonly Linear? pooler;
    private readonly ModelHooks hooks;

    public BertModel(BertConfig config, Random rng, DropoutSeeds seeds, bool withPooler, double initStd = 0.02, DType dtype = DType.F32, ModelHooks? hooks = null)
    {
        Config = config;
        this.hooks = hooks ?? new ModelHooks();
        if (config.PositionEmbeddingType != "absolute")
            throw new EngineException($"bert: position_embedding_type '{config.PositionEmbeddingType}' is not supported (only 'absolute')");
        embeddings = Child("embeddings", new BertEmbeddings(config, rng, seeds, initStd, dtype));
        var encoder = Child("encoder", new Group());
        for (int i = 0; i < config.NumHiddenLayers; i++) layers.Add(encoder.Add($"layer.{i}", new BertLayer(config, rng, seeds, initStd, dtype, this.hooks)));
        if (withPooler) pooler = Child("pooler", new Group()).Add("dense", new Linear(config.HiddenSize, config.HiddenSize, rng, std: initStd, dtype: dtype));
    }

    /// <summary>ids [B, T] (I32); attentionMask [B, T] (I32, 1 = token, 0 = padding) or null for
    /// all tokens; tokenTypeIds [B, T] (I32) or null for zeros.</summary>
    public BertOutput Forward(Tensor ids, Tensor? attentionMask = null, Tensor? tokenTypeIds = null)
    {
        if (ids.Rank != 2 || ids.DType != DType.I32) throw new EngineException($"bert: input ids must be I32 [batch, seq], got {ids.DType} {Shape.Format(ids.Shape)}");
        int b = ids.Dim(0);
        var device = embeddings.Device;
        var mask = AttentionMasks.Additive(ids, attentionMask, embeddings.DType, device, "bert");
        var virtualTokens = hooks.VirtualTokens?.Invoke(b);
        var h = embeddings.Forward(ids, tokenTypeIds, virtualTokens);
        if (virtualTokens is not null)
        {
            attentionMask = AttentionMasks.InsertOnes(attentionMask ?? AttentionMasks.AllTokens(b, ids.Dim(1)), AfterFirst(b), virtualTokens.Dim(1));
            mask = AttentionMasks.Additive(attentionMask, attentionMask, embeddings.DType, device, "bert");
        }
        var prefixes = hooks.KeyValuePrefixes?.Invoke(b);
        if (prefixes is not null && prefixes.Count != layers.Count)
            throw new EngineException($"bert: the key/value prefix hook gave {prefixes.Count} pairs for {layers.Count} layers");
        // Prefix keys are always visible: the mask gains p zeros (keep) in front.
        var prefixMask = prefixes is null || mask is null ? mask : AttentionMasks.WithVisiblePrefix(mask, prefixes[0].Key.Dim(1));
        var states = new List<Tensor> { h };
        for (int i = 0; i < hooks.BlocksToRun(layers.Count); i++)
        {
            h = layers[i].Forward(h, prefixMask, prefixes?[i]);
            states.Add(h);
        }
        Tensor? pooled = pooler is null ? null : ApplyPooler(FirstToken(h));
        return new BertOutput(states, h, pooled) { TokenMask = attentionMask };
    }

    /// <summary>The pooler on any [B, D] vector: tanh(dense(v)). Depth-wise and mean/last
    /// pooling feed it their pooled vector in place of h[CLS].</summary>
    public Tensor ApplyPooler(Tensor v) =>
        pooler is null ? throw new EngineException("bert: this model has no pooler") : Ops.Tanh(hooks.Linear(pooler, v));

    /// <summary>Every linear layer of the backbone with its parameter path (prefix + path +
    /// ".weight" is its weight's name): the blocks' attention and MLP layers and the pooler.</summary>
    public IEnumerable<(string Path, Linear Layer)> LinearLayers(string prefix)
    {
        for (int i = 0; i < layers.Count; i++)
            foreach (var (path, layer) in layers[i].LinearLayers())
                yield return ($"{prefix}encoder.layer.{i}.{path}", layer);
        if (pooler is not null) yield return ($"{prefix}pooler.dense", pooler);
    }

    public int LayerCount => layers.Count;

    /// <summary>Where BERT puts virtual tokens: after the first token ([CLS] / &lt;s&gt;) of every row.</summary>
    internal static int[] AfterFirst(int b) => Enumerable.Repeat(1, b).ToArray();

    /// <summary>h [B, T, D] → h[:, 0] [B, D].</summary>
    public static Tensor FirstToken(Tensor h) => Ops.GatherRows(h, Tensor.FromArray(new int[h.Dim(0)], h.Dim(0)).To(h.Device));
}

internal sealed class BertEmbeddings : Module
{
    private readonly BertConfig c;
    private readonly Embedding word, position, tokenType;
    private readonly LayerNorm norm;
    private readonly Dropout dropout;

    public BertEmbeddings(BertConfig config, Random rng, DropoutSeeds seeds, double std, DType dtype)
    {
        c = config;
        word = Child("word_embeddings", new Embedding(config.VocabSize, config.HiddenSize, rng, std, dtype));
        position = Child("position_embeddings", new Embedding(config.MaxPositionEmbeddings, config.HiddenSize, rng, std, dtype));
        tokenType = Child("token_type_embeddings", new Embedding(config.TypeVocabSize, config.HiddenSize, rng, std, dtype));
        norm = Child("LayerNorm", new LayerNorm(config.HiddenSize, config.LayerNormEps, dtype));
        dropout = Child("dropout", new Dropout(config.HiddenDropoutProb, seeds));
    }

    public DType DType => word.Weight.DType;

    /// <summary>ids [B, T]; virtualTokens: null or [B, p, D] word-level embeddings inserted after the first token.</summary>
    public Tensor Forward(Tensor ids, Tensor? tokenTypeIds, Tensor? virtualTokens = null)
    {
        int b = ids.Dim(0), t = ids.Dim(1);
        var device = Device;
        var types = tokenTypeIds ?? Tensor.FromArray(new int[b * t], b, t);
        if (!Shape.Equal(types.Shape, ids.Shape)) throw new EngineException($"bert: token_type_ids must be {Shape.Format(ids.Shape)}, got {Shape.Format(types.Shape)}");
        var words = word.Forward(ids.To(device));
        var idArray = ids.ToIntArray();
        if (virtualTokens is not null)
        {
            int p = virtualTokens.Dim(1);
            var parts = new List<Tensor> { Ops.Slice(words, 1, 0, 1), virtualTokens };
            if (t > 1) parts.Add(Ops.Slice(words, 1, 1, t - 1));
            words = Ops.Concat(parts, 1);
            // The virtual tokens' positions count as tokens (any id but the pad id) of token type 0.
            idArray = AttentionMasks.Insert(idArray, b, t, BertModel.AfterFirst(b), p, c.PadTokenId + 1);
            types = Tensor.FromArray(AttentionMasks.Insert(types.ToIntArray(), b, t, BertModel.AfterFirst(b), p, 0), b, t + p);
            t += p;
        }
        var positionIds = PositionIds(idArray, b, t);
        if (positionIds.Max() >= c.MaxPositionEmbeddings)
            throw new EngineException($"bert: sequence length {t} needs more than the {c.MaxPositionEmbeddings} position embeddings of this model");
        var positions = Tensor.FromArray(positionIds, b, t).To(device);
        var e = Ops.Add(Ops.Add(words, tokenType.Forward(types.To(device))), position.Forward(positions));
        return dropout.Forward(norm.Forward(e));
    }

    /// <summary>BERT: 0, 1, 2, …. RoBERTa: padding_idx + running count of non-pad tokens, and
    /// padding_idx at padded positions (create_position_ids_from_input_ids).</summary>
    private int[] PositionIds(int[] ids, int b, int t)
    {
        var pos = new int[b * t];
        for (int i = 0; i < b; i++)
        {
            int count = 0;
            for (int j = 0; j < t; j++)
            {
                if (!c.IsRoberta) pos[i * t + j] = j;
                else pos[i * t + j] = ids[i * t + j] != c.PadTokenId ? c.PadTokenId + ++count : c.PadTokenId;
            }
        }
        return pos;
    }
}

internal sealed class BertLayer : Module
{
    private readonly int heads, dim;
    private readonly Linear query, key, value, attnOut, intermediate, output;
    private readonly LayerNorm attnNorm, outNorm;
    private readonly Dropout dropout, attentionDropout;
    private readonly Func<Tensor, Tensor> act;
    private readonly ModelHooks hooks;

    public BertLayer(BertConfig c, Random rng, DropoutSeeds seeds, double std, DType dtype, ModelHooks hooks)
    {
        this.hooks = hooks;
        attentionDropout = Child("attention_dropout", new Dropout(c.AttentionProbsDropoutProb, seeds));
        heads = c.NumAttentionHeads;
        dim = c.HiddenSize;
        act = c.HiddenAct switch
        {
            "gelu" => Ops.Gelu,
            "gelu_new" or "gelu_pytorch_tanh" => Ops.GeluTanh,
            "relu" => Ops.Relu,
            "silu" or "swish" => Ops.Silu,
            _ => throw new EngineException($"bert: hidden_act '{c.HiddenAct}' is not supported (gelu, gelu_new, gelu_pytorch_tanh, relu, silu)"),
        };
        var attention = Child("attention", new Group());
        var self = attention.Add("self", new Group());
        query = self.Add("query", new Linear(dim, dim, rng, std: std, dtype: dtype));
        key = self.Add("key", new Linear(dim, dim, rng, std: std, dtype: dtype));
        value = self.Add("value", new Linear(dim, dim, rng, std: std, dtype: dtype));
        var attnOutput = attention.Add("output", new Group());
        attnOut = attnOutput.Add("dense", new Linear(dim, dim, rng, std: std, dtype: dtype));
        attnNorm = attnOutput.Add("LayerNorm", new LayerNorm(dim, c.LayerNormEps, dtype));
        intermediate = Child("intermediate", new Group()).Add("dense", new Linear(dim, c.IntermediateSize, rng, std: std, dtype: dtype));
        var outGroup = Child("output", new Group());
        output = outGroup.Add("dense", new Linear(c.IntermediateSize, dim, rng, std: std, dtype: dtype));
        outNorm = outGroup.Add("LayerNorm", new LayerNorm(dim, c.LayerNormEps, dtype));
        dropout = Child("dropout", new Dropout(c.HiddenDropoutProb, seeds));
    }

    private Tensor SplitHeads(Tensor x) => Ops.Transpose(x.Reshape(x.Dim(0), x.Dim(1), heads, dim / heads), 1, 2);

    public IEnumerable<(string Path, Linear Layer)> LinearLayers() =>
    [
        ("attention.self.query", query), ("attention.self.key", key), ("attention.self.value", value),
        ("attention.output.dense", attnOut), ("intermediate.dense", intermediate), ("output.dense", output),
    ];

    /// <summary>
    /// softmax(q·kᵀ/√d + mask)·v. In evaluation mode (or with attention_probs_dropout_prob 0) the
    /// fused attention op; in training mode with dropout, the same computation composed from
    /// catalog ops so dropout can act on the probabilities, as BERT does: batched matmul, scale,
    /// add the [B, 1, 1, S] mask, softmax, dropout, matmul.
    /// </summary>
    internal Tensor SelfAttention(Tensor q, Tensor k, Tensor v, Tensor? mask, bool composed = false)
    {
        bool dropping = attentionDropout.Training && attentionDropout.P > 0;
        if (!dropping && !composed) return Ops.Attention(q, k, v, mask);
        var scores = Ops.Scale(Ops.MatMul(q, k, transB: true), 1.0 / Math.Sqrt(q.Dim(3)));
        if (mask is not null) scores = Ops.Add(scores, mask.Reshape(mask.Dim(0), 1, 1, mask.Dim(1)));
        return Ops.MatMul(attentionDropout.Forward(Ops.Softmax(scores)), v);
    }

    /// <summary>x [B, T, D]; mask: additive [B, p + T] (p = 0 without a prefix) or null; prefix:
    /// key and value states [B, p, D] put in front of this block's keys and values.</summary>
    public Tensor Forward(Tensor x, Tensor? mask, (Tensor Key, Tensor Value)? prefix = null)
    {
        int b = x.Dim(0), t = x.Dim(1);
        var k = hooks.Linear(key, x);
        var v = hooks.Linear(value, x);
        if (prefix is { } kv)
        {
            k = Ops.Concat([kv.Key, k], 1);
            v = Ops.Concat([kv.Value, v], 1);
        }
        var ctx = SelfAttention(SplitHeads(hooks.Linear(query, x)), SplitHeads(k), SplitHeads(v), mask);
        ctx = Ops.Transpose(ctx, 1, 2).Reshape(b, t, dim);
        var h = attnNorm.Forward(Ops.Add(dropout.Forward(hooks.Linear(attnOut, ctx)), x));
        var f = hooks.Linear(output, act(hooks.Linear(intermediate, h)));
        return outNorm.Forward(Ops.Add(dropout.Forward(f), h));
    }
}
