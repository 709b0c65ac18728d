using Engine.Nn;

namespace Engine.Models.Llama;

/// <summary>What the decoder computed, as Hugging Face's output_hidden_states returns it:
/// <see cref="HiddenStates"/>[0] is the embedding output, [i] for 1 ≤ i &lt; L the output of
/// block i (1-based: the input of block i + 1), and [L] the final-normed output of block L
/// (transformers appends the states after the final norm, so the un-normed output of the last
/// block is not among them). <see cref="LastHiddenState"/> is that same final-normed tensor.</summary>
public sealed record LlamaOutput(IReadOnlyList<Tensor> HiddenStates, Tensor LastHiddenState);

/// <summary>
/// The Llama decoder as Hugging Face's LlamaModel computes it (also Mistral, and Qwen2 with its
/// q/k/v biases), with the checkpoint's parameter names under "model.": embed_tokens.weight,
/// layers.{i}.self_attn.{q,k,v,o}_proj.weight, layers.{i}.mlp.{gate,up,down}_proj.weight,
/// layers.{i}.input_layernorm.weight, layers.{i}.post_attention_layernorm.weight, norm.weight.
///
/// Pre-norm blocks: h = x + o_proj(attention(RoPE(q), RoPE(k), v)) over RMSNorm(x), causal and
/// padding-masked, grouped-query heads; out = h + down(silu(gate(n)) ⊙ up(n)) with n = RMSNorm(h).
/// A final RMSNorm follows the last block.
///
/// Position ids are 0 … T−1 for every row, whatever the padding: transformers' LlamaModel.forward,
/// given no position_ids, takes cache_position = arange(past, past + T) and position_ids =
/// cache_position.unsqueeze(0), the same for all rows (so a left-padded row's first real token
/// sits at a position > 0, exactly as in Hugging Face).
/// </summary>
public sealed class LlamaModel : Module
{
    public LlamaConfig Config { get; }
    public Embedding EmbedTokens { get; }
    private readonly List<LlamaDecoderLayer> layers = new();
    private readonly RmsNorm norm;
    private readonly double[] inverseFrequencies;

    public LlamaModel(LlamaConfig config, Random rng, double initStd = 0.02, DType dtype = DType.F32)
    {
        Config = config;
        if (config.HiddenAct is not ("silu" or "swish"))
            throw new EngineException($"{config.ModelType}: hidden_act '{config.HiddenAct}' is not supported (only silu)");
        inverseFrequencies = LlamaRope.InverseFrequencies(config);
        EmbedTokens = Child("embed_tokens", new Embedding(config.VocabSize, config.HiddenSize, rng, initStd, dtype));
        var group = Child("layers", new Group());
        for (int i = 0; i < config.NumHiddenLayers; i++) layers.Add(group.Add($"{i}", new LlamaDecoderLayer(config, rng, initStd, dtype)));
        norm = Child("norm", new RmsNorm(config.HiddenSize, config.RmsNormEps, dtype));
    }

    public IReadOnlyList<double> InverseFrequencies => inverseFrequencies;

    /// <summary>ids [B, T] (I32); attentionMask [B, T] (I32, 1 = token, 0 = padding) or null for all tokens.</summary>
    public LlamaOutput Forward(Tensor ids, Tensor? attentionMask = null)
    {
        if (ids.Rank != 2 || ids.DType != DType.I32) throw new EngineException($"{Config.ModelType}: input ids must be I32 [batch, seq], got {ids.DType} {Shape.Format(ids.Shape)}");
        int t = ids.Dim(1);
        if (SlidingWindow(Config) is int window && t > window)
            throw new EngineException($"{Config.ModelType}: sequence length {t} exceeds the sliding window of {window} tokens, which the engine does not implement");
        var dtype = EmbedTokens.Weight.DType;
        var mask = AdditiveMask(ids, attentionMask, dtype);
        var (cos, sin) = Ops.RopeTables(t, Config.HeadDim, Config.RopeTheta, dtype, inverseFrequencies);
        var h = EmbedTokens.Forward(ids);
        var states = new List<Tensor> { h };
        for (int i = 0; i < layers.Count; i++)
        {
            h = layers[i].Forward(h, mask, cos, sin);
            if (i < layers.Count - 1) states.Add(h);
        }
        var last = norm.Forward(h);
        states.Add(last);
        return new LlamaOutput(states, last);
    }

    /// <summary>Mistral's sliding_window (and Qwen2's when use_sliding_window is true): keys
    /// further back than this many tokens are masked. The engine does not implement it, so it
    /// only accepts sequences no longer than the window, where the mask is the plain causal one.</summary>
    private static int? SlidingWindow(LlamaConfig c)
    {
        if (!c.Extra.TryGetValue("sliding_window", out var w) || w.ValueKind != System.Text.Json.JsonValueKind.Number) return null;
        if (c.ModelType == "qwen2" && !(c.Extra.TryGetValue("use_sliding_window", out var use) && use.ValueKind == System.Text.Json.JsonValueKind.True)) return null;
        if (c.ModelType == "llama") return null;
        return w.GetInt32();
    }

    /// <summary>The padding part of Hugging Face's 4-D mask, over keys: 0 for a token, the dtype's
    /// most negative value for padding (the causal part is the attention op's causal flag).</summary>
    private Tensor? AdditiveMask(Tensor ids, Tensor? attentionMask, DType dtype)
    {
        if (attentionMask is null) return null;
        if (!Shape.Equal(attentionMask.Shape, ids.Shape) || attentionMask.DType != DType.I32)
            throw new EngineException($"{Config.ModelType}: attention_mask must be I32 {Shape.Format(ids.Shape)}, got {attentionMask.DType} {Shape.Format(attentionMask.Shape)}");
        double min = dtype == DType.F64 ? double.MinValue : float.MinValue;
        var m = attentionMask.ToIntArray().Select(v => v != 0 ? 0.0 : min).ToArray();
        return Tensor.FromDoubles(m, ids.ShapeArray, dtype);
    }
}

/// <summary>Rotary-embedding frequencies as transformers' modeling_rope_utils computes them.</summary>
public static class LlamaRope
{
    /// <summary>inv_freq [head_dim / 2] for the config: 1 / theta^(2i / head_dim), then rescaled by
    /// rope_scaling. "linear" divides positions by factor, which is the same as dividing every
    /// frequency by it; "llama3" follows _compute_llama3_parameters: with
    /// wavelen = 2π / f, low_wavelen = original_max / low_freq_factor and
    /// high_wavelen = original_max / high_freq_factor, frequencies with wavelen &gt; low_wavelen
    /// are divided by factor, those with wavelen &lt; high_wavelen are kept, and those between are
    /// interpolated: (1 − s)·f / factor + s·f with s = (original_max / wavelen − low_freq_factor) /
    /// (high_freq_factor − low_freq_factor). Other types (and "default") are refused / accepted by name.</summary>
    public static double[] InverseFrequencies(LlamaConfig c)
    {
        int d = c.HeadDim;
        if (d % 2 != 0) throw new EngineException($"{c.ModelType}: head_dim {d} must be even for rotary embeddings");
        if (c.Extra.TryGetValue("partial_rotary_factor", out var prf) && prf.ValueKind == System.Text.Json.JsonValueKind.Number && prf.GetDouble() != 1.0)
            throw new EngineException($"{c.ModelType}: partial_rotary_factor {prf.GetDouble()} is not supported (only 1.0)");
        var f = Enumerable.Range(0, d / 2).Select(i => 1.0 / Math.Pow(c.RopeTheta, 2.0 * i / d)).ToArray();
        var s = c.RopeScaling;
        if (s is null || s.Type == "default") return f;
        switch (s.Type)
        {
            case "linear":
                return f.Select(x => x / s.Factor).ToArray();
            case "llama3":
            {
                double factor = s.Factor, low = s.LowFreqFactor!.Value, high = s.HighFreqFactor!.Value;
                double old = s.OriginalMaxPositionEmbeddings!.Value;
                double lowWavelen = old / low, highWavelen = old / high;
                return f.Select(x =>
                {
                    double wavelen = 2 * Math.PI / x;
                    if (wavelen < highWavelen) return x;
                    if (wavelen > lowWavelen) return x / factor;
                    double smooth = (old / wavelen - low) / (high - low);
                    return (1 - smooth) * x / factor + smooth * x;
                }).ToArray();
            }
            default:
                throw new EngineException($"{c.ModelType}: rope_scaling type '{s.Type}' is not supported (default, linear, llama3)");
        }
    }
}

internal sealed class LlamaDecoderLayer : Module
{
    private readonly LlamaAttention attention;
    private readonly LlamaMlp mlp;
    private readonly RmsNorm inputNorm, postAttentionNorm;

    public LlamaDecoderLayer(LlamaConfig c, Random rng, double std, DType dtype)
    {
        attention = Child("self_attn", new LlamaAttention(c, rng, std, dtype));
        mlp = Child("mlp", new LlamaMlp(c, rng, std, dtype));
        inputNorm = Child("input_layernorm", new RmsNorm(c.HiddenSize, c.RmsNormEps, dtype));
        postAttentionNorm = Child("post_attention_layernorm", new RmsNorm(c.HiddenSize, c.RmsNormEps, dtype));
    }

    /// <summary>x [B, T, d] → [B, T, d]; mask [B, T] additive over keys or null; cos, sin [T, head_dim].</summary>
    public Tensor Forward(Tensor x, Tensor? mask, Tensor cos, Tensor sin)
    {
        var h = Ops.Add(x, attention.Forward(inputNorm.Forward(x), mask, cos, sin));
        return Ops.Add(h, mlp.Forward(postAttentionNorm.Forward(h)));
    }
}

/// <summary>Causal self-attention with grouped-query heads: q [B, H, T, D] from q_proj,
/// k and v [B, Hkv, T, D] from k_proj and v_proj; RoPE on q and k; o_proj back to d.</summary>
internal sealed class LlamaAttention : Module
{
    private readonly int heads, kvHeads, headDim;
    private readonly Linear q, k, v, o;

    public LlamaAttention(LlamaConfig c, Random rng, double std, DType dtype)
    {
        heads = c.NumAttentionHeads;
        kvHeads = c.NumKeyValueHeads;
        headDim = c.HeadDim;
        bool bias = c.AttentionBias;
        q = Child("q_proj", new Linear(c.HiddenSize, heads * headDim, rng, bias, std, dtype));
        k = Child("k_proj", new Linear(c.HiddenSize, kvHeads * headDim, rng, bias, std, dtype));
        v = Child("v_proj", new Linear(c.HiddenSize, kvHeads * headDim, rng, bias, std, dtype));
        // Qwen2 has biases on q, k and v only; Llama's attention_bias puts one on o_proj too.
        o = Child("o_proj", new Linear(heads * headDim, c.HiddenSize, rng, bias && c.ModelType != "qwen2", std, dtype));
    }

    /// <summary>[B, T, n·D] → [B, n, T, D].</summary>
    private Tensor SplitHeads(Tensor x, int n) => Ops.Transpose(x.Reshape(x.Dim(0), x.Dim(1), n, headDim), 1, 2);

    public Tensor Forward(Tensor x, Tensor? mask, Tensor cos, Tensor sin)
    {
        int b = x.Dim(0), t = x.Dim(1);
        var query = Ops.Rope(SplitHeads(q.Forward(x), heads), cos, sin);
        var key = Ops.Rope(SplitHeads(k.Forward(x), kvHeads), cos, sin);
        var value = SplitHeads(v.Forward(x), kvHeads);
        var ctx = Ops.Attention(query, key, value, mask, causal: true);
        return o.Forward(Ops.Transpose(ctx, 1, 2).Reshape(b, t, heads * headDim));
    }
}

/// <summary>SwiGLU: down(silu(gate(x)) ⊙ up(x)).</summary>
internal sealed class LlamaMlp : Module
{
    private readonly Linear gate, up, down;

    public LlamaMlp(LlamaConfig c, Random rng, double std, DType dtype)
    {
        gate = Child("gate_proj", new Linear(c.HiddenSize, c.IntermediateSize, rng, c.MlpBias, std, dtype));
        up = Child("up_proj", new Linear(c.HiddenSize, c.IntermediateSize, rng, c.MlpBias, std, dtype));
        down = Child("down_proj", new Linear(c.IntermediateSize, c.HiddenSize, rng, c.MlpBias, std, dtype));
    }

    public Tensor Forward(Tensor x) => down.Forward(Ops.Mul(Ops.Silu(gate.Forward(x)), up.Forward(x)));
}
