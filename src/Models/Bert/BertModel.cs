using Engine.Nn;

namespace Engine.Models.Bert;

/// <summary>What the encoder computed: every layer's output (index 0: embeddings, i: block i),
/// the last one, and the pooler output (BERT only).</summary>
public sealed record BertOutput(IReadOnlyList<Tensor> HiddenStates, Tensor LastHiddenState, Tensor? Pooled);

/// <summary>
/// The BERT / RoBERTa encoder as Hugging Face's BertModel and RobertaModel compute it, with the
/// same parameter names (embeddings.word_embeddings.weight, encoder.layer.0.attention.self.query.weight, …).
/// Post-LayerNorm blocks: self-attention with the additive padding mask → output dense →
/// dropout → residual → LayerNorm; intermediate dense → activation → output dense → dropout →
/// residual → LayerNorm. RoBERTa differs in its position ids (they start after the padding
/// index and skip padding) and has no pooler in its classification model.
/// </summary>
public sealed class BertModel : Module
{
    public BertConfig Config { get; }
    private readonly BertEmbeddings embeddings;
    private readonly List<BertLayer> layers = new();
    private readonly Linear? pooler;

    public BertModel(BertConfig config, Random rng, DropoutSeeds seeds, bool withPooler, double initStd = 0.02, DType dtype = DType.F32)
    {
        Config = config;
        if (config.PositionEmbeddingType != "absolute")
            throw new EngineException($"bert: position_embedding_type '{config.PositionEmbeddingType}' is not supported (only 'absolute')");
        embeddings = Child("embeddings", new BertEmbeddings(config, rng, seeds, initStd, dtype));
        var encoder = Child("encoder", new Group());
        for (int i = 0; i < config.NumHiddenLayers; i++) layers.Add(encoder.Add($"layer.{i}", new BertLayer(config, rng, seeds, initStd, dtype)));
        if (withPooler) pooler = Child("pooler", new Group()).Add("dense", new Linear(config.HiddenSize, config.HiddenSize, rng, std: initStd, dtype: dtype));
    }

    /// <summary>ids [B, T] (I32); attentionMask [B, T] (I32, 1 = token, 0 = padding) or null for
    /// all tokens; tokenTypeIds [B, T] (I32) or null for zeros.</summary>
    public BertOutput Forward(Tensor ids, Tensor? attentionMask = null, Tensor? tokenTypeIds = null)
    {
        if (ids.Rank != 2 || ids.DType != DType.I32) throw new EngineException($"bert: input ids must be I32 [batch, seq], got {ids.DType} {Shape.Format(ids.Shape)}");
        var mask = AdditiveMask(ids, attentionMask, embeddings.DType);
        var h = embeddings.Forward(ids, tokenTypeIds);
        var states = new List<Tensor> { h };
        foreach (var layer in layers)
        {
            h = layer.Forward(h, mask);
            states.Add(h);
        }
        Tensor? pooled = pooler is null ? null : Ops.Tanh(pooler.Forward(FirstToken(h)));
        return new BertOutput(states, h, pooled);
    }

    /// <summary>h [B, T, D] → h[:, 0] [B, D].</summary>
    public static Tensor FirstToken(Tensor h) => Ops.GatherRows(h, Tensor.FromArray(new int[h.Dim(0)], h.Dim(0)));

    /// <summary>Hugging Face's extended mask: 0 where attended, the dtype's most negative value where padded.</summary>
    internal static Tensor? AdditiveMask(Tensor ids, Tensor? attentionMask, DType dtype)
    {
        if (attentionMask is null) return null;
        if (!Shape.Equal(attentionMask.Shape, ids.Shape) || attentionMask.DType != DType.I32)
            throw new EngineException($"bert: attention_mask must be I32 {Shape.Format(ids.Shape)}, got {attentionMask.DType} {Shape.Format(attentionMask.Shape)}");
        double min = dtype == DType.F64 ? double.MinValue : float.MinValue;
        var m = attentionMask.ToIntArray().Select(v => v != 0 ? 0.0 : min).ToArray();
        return Tensor.FromDoubles(m, ids.ShapeArray, dtype);
    }
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

    public Tensor Forward(Tensor ids, Tensor? tokenTypeIds)
    {
        int b = ids.Dim(0), t = ids.Dim(1);
        var positions = Tensor.FromArray(PositionIds(ids.ToIntArray(), b, t), b, t);
        if (positions.ToIntArray().Max() >= c.MaxPositionEmbeddings)
            throw new EngineException($"bert: sequence length {t} needs more than the {c.MaxPositionEmbeddings} position embeddings of this model");
        var types = tokenTypeIds ?? Tensor.FromArray(new int[b * t], b, t);
        if (!Shape.Equal(types.Shape, ids.Shape)) throw new EngineException($"bert: token_type_ids must be {Shape.Format(ids.Shape)}, got {Shape.Format(types.Shape)}");
        var e = Ops.Add(Ops.Add(word.Forward(ids), tokenType.Forward(types)), position.Forward(positions));
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
    private readonly Dropout dropout;
    private readonly Func<Tensor, Tensor> act;

    public BertLayer(BertConfig c, Random rng, DropoutSeeds seeds, double std, DType dtype)
    {
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

    public Tensor Forward(Tensor x, Tensor? mask)
    {
        int b = x.Dim(0), t = x.Dim(1);
        var ctx = Ops.Attention(SplitHeads(query.Forward(x)), SplitHeads(key.Forward(x)), SplitHeads(value.Forward(x)), mask);
        ctx = Ops.Transpose(ctx, 1, 2).Reshape(b, t, dim);
        var h = attnNorm.Forward(Ops.Add(dropout.Forward(attnOut.Forward(ctx)), x));
        var f = output.Forward(act(intermediate.Forward(h)));
        return outNorm.Forward(Ops.Add(dropout.Forward(f), h));
    }
}
