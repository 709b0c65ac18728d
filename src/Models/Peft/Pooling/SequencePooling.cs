using Engine.Nn;

namespace Engine.Models.Peft;

/// <summary>
/// How the sentence vector is taken from the hidden states. <see cref="Within"/> pools one
/// layer: "cls" (position 0), "last" (the rightmost position whose mask is 1: Hugging Face's
/// rule for decoders, right for left and right padding) or "mean" (the mean over positions
/// whose mask is 1). <see cref="Depthwise"/> pools every block that way and mixes the results
/// with one learned weight per block (<see cref="SequencePooling"/>); <see cref="Raw"/> uses the
/// weights directly instead of their softmax; <see cref="WithEmbeddings"/> adds the embedding
/// output as layer 0.
///
/// Text form: cls | mean | last | depthwise[:raw][:with-embeddings][:cls|:mean|:last], the
/// depth-wise within-layer pooling defaulting to the family's usual one.
/// </summary>
public sealed record PoolingSpec(string Within, bool Depthwise, bool Raw, bool WithEmbeddings)
{
    public static readonly string[] WithinKinds = ["cls", "mean", "last"];

    public static PoolingSpec Parse(string text, string familyDefault)
    {
        var parts = text.Trim().ToLowerInvariant().Split(':');
        string Bad() => $"--pooling '{text}': expected cls, mean, last or depthwise[:raw][:with-embeddings][:cls|:mean|:last]";
        if (parts[0] != "depthwise")
        {
            if (parts.Length != 1 || !WithinKinds.Contains(parts[0])) throw new EngineException(Bad());
            return new PoolingSpec(parts[0], false, false, false);
        }
        string within = familyDefault;
        bool raw = false, emb = false;
        foreach (var p in parts.Skip(1))
        {
            if (p == "raw") raw = true;
            else if (p is "with-embeddings" or "embeddings") emb = true;
            else if (WithinKinds.Contains(p)) within = p;
            else throw new EngineException(Bad());
        }
        return new PoolingSpec(within, true, raw, emb);
    }

    public override string ToString() =>
        !Depthwise ? Within : "depthwise" + (Raw ? ":raw" : "") + (WithEmbeddings ? ":with-embeddings" : "") + ":" + Within;
}

/// <summary>
/// Pools the hidden states into the vector the classification head reads. Without depth-wise
/// mixing it pools the last layer. Depth-wise (the "32 parameters" method):
/// z = Σ_l w_l · pool(H_l) over the blocks l = 1..L (and the embedding output as l = 0 when
/// asked), with w = softmax(a), a [L] initialised to 0 (a plain average at step 0), or w = a
/// initialised to 1/L with <see cref="PoolingSpec.Raw"/>. The weights are this module's one
/// parameter, "weights"; attached to a classifier as "depthwise_pooling", it is saved as
/// <c>depthwise_pooling.weights</c> in model.safetensors.
/// </summary>
public sealed class SequencePooling : Module
{
    public const string ModuleName = "depthwise_pooling", ParameterName = ModuleName + ".weights";

    public PoolingSpec Spec { get; }
    /// <summary>The mixing weights a [L] (depth-wise only).</summary>
    public Tensor? Weights { get; }
    private readonly int blocks;

    public SequencePooling(PoolingSpec spec, int blocks, DType dtype = DType.F32)
    {
        Spec = spec;
        this.blocks = blocks;
        if (!spec.Depthwise) return;
        int n = LayerCount;
        Weights = Param("weights", Tensor.Full([n], spec.Raw ? 1.0 / n : 0.0, dtype));
    }

    /// <summary>The layers mixed: L, or L + 1 with the embedding output.</summary>
    public int LayerCount => blocks + (Spec.WithEmbeddings ? 1 : 0);

    /// <summary>Bar labels: "emb" for the embedding output, then "1".."L".</summary>
    public IReadOnlyList<string> LayerLabels =>
        (Spec.WithEmbeddings ? new[] { "emb" } : []).Concat(Enumerable.Range(1, blocks).Select(i => i.ToString())).ToList();

    /// <summary>The per-layer weights w as used (softmax of a, or a itself with raw).</summary>
    public double[] LayerWeights() => Weights is null ? [] : MixingWeights(Weights.ToDoubleArray(), Spec.Raw);

    public static double[] MixingWeights(double[] a, bool raw)
    {
        if (raw || a.Length == 0) return a;
        double max = a.Max();
        var e = a.Select(x => Math.Exp(x - max)).ToArray();
        double sum = e.Sum();
        return e.Select(x => x / sum).ToArray();
    }

    /// <summary>
    /// hiddenStates: index 0 the embedding output, i block i (as <see cref="ClassifierOutput"/>);
    /// last: the final hidden states (after a final norm where the family has one; it stands in
    /// for block L); mask: I32 [B, T] matching the hidden states, or null (every position a token);
    /// lastPositions: the family's own "last" position per row (Llama: the rightmost non-pad token,
    /// as its head reads it), used by "last" in place of the mask's rightmost token.
    /// Returns [B, D].
    /// </summary>
    public Tensor Pool(IReadOnlyList<Tensor> hiddenStates, Tensor last, Tensor? mask, int[]? lastPositions = null)
    {
        var within = Within(last, mask, lastPositions);
        if (!Spec.Depthwise) return within(last);
        if (hiddenStates.Count != blocks + 1)
            throw new EngineException($"depth-wise pooling: made for {blocks} blocks, the model gave {hiddenStates.Count - 1}");
        var layers = new List<Tensor>();
        for (int l = Spec.WithEmbeddings ? 0 : 1; l <= blocks; l++) layers.Add(within(l == blocks ? last : hiddenStates[l]));
        return Ops.LayerMix(layers, Weights!, softmax: !Spec.Raw);
    }

    /// <summary>The within-layer pooling as a function of one layer [B, T, D] → [B, D]; the
    /// positions (or mean weights) are worked out once from the mask.</summary>
    private Func<Tensor, Tensor> Within(Tensor like, Tensor? mask, int[]? lastPositions)
    {
        int b = like.Dim(0), t = like.Dim(1);
        if (Spec.Within == "last" && lastPositions is not null)
        {
            if (lastPositions.Length != b || lastPositions.Any(j => j < 0 || j >= t))
                throw new EngineException($"pooling: last positions [{string.Join(", ", lastPositions)}] do not fit hidden states {Shape.Format(like.Shape)}");
            var given = Tensor.FromArray(lastPositions, b).To(like.Device);
            return h => Ops.GatherRows(h, given);
        }
        if (mask is not null && (mask.Rank != 2 || mask.Dim(0) != b || mask.Dim(1) != t))
            throw new EngineException($"pooling: the mask {Shape.Format(mask.Shape)} does not match hidden states {Shape.Format(like.Shape)}");
        var m = mask?.ToIntArray() ?? Enumerable.Repeat(1, b * t).ToArray();
        switch (Spec.Within)
        {
            case "cls":
            {
                var zero = Tensor.FromArray(new int[b], b).To(like.Device);
                return h => Ops.GatherRows(h, zero);
            }
            case "last":
            {
                var pos = new int[b];
                for (int r = 0; r < b; r++)
                {
                    pos[r] = -1;
                    for (int j = t - 1; j >= 0 && pos[r] < 0; j--) if (m[r * t + j] != 0) pos[r] = j;
                    if (pos[r] < 0) throw new EngineException($"pooling: row {r} of the batch has no token (its mask is all zeros)");
                }
                var positions = Tensor.FromArray(pos, b).To(like.Device);
                return h => Ops.GatherRows(h, positions);
            }
            default:
            {
                // A masked mean as one batched product: [B, 1, T] weights (1/count on tokens) · h [B, T, D].
                var w = new double[b * t];
                for (int r = 0; r < b; r++)
                {
                    int count = 0;
                    for (int j = 0; j < t; j++) count += m[r * t + j] != 0 ? 1 : 0;
                    if (count == 0) throw new EngineException($"pooling: row {r} of the batch has no token (its mask is all zeros)");
                    for (int j = 0; j < t; j++) w[r * t + j] = m[r * t + j] != 0 ? 1.0 / count : 0.0;
                }
                var weights = Tensor.FromDoubles(w, [b, 1, t], like.DType).To(like.Device);
                return h => Ops.MatMul(weights, h).Reshape(b, h.Dim(2));
            }
        }
    }
}
