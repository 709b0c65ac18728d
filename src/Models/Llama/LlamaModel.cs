using Engine.Models.Peft;
using Engine.Nn;

namespace Engine.Models.Llama;

/// <summary>What the decoder computed, as Hugging Face's output_hidden_states returns it:
/// <see cref="HiddenStates"/>[0] is the embedding output, [i] for 1 ≤ i &lt; L the output of
/// block i (1-based: the input of block i + 1), and [L] the final-normed output of block L
/// (transformers appends the states after the final norm, so the un-normed output of the last
/// block is not among them). <see cref="LastHiddenState"/> is that same final-normed tensor.</summary>
public sealed record LlamaOutput(IReadOnlyList<Tensor> HiddenStates, Tensor LastHiddenState)
{
    /// <summary>The I32 mask [B, T'] of the hidden states' positions (1 token, 0 padding): the
    /// input mask, with the virtual tokens' p ones inserted when the hook added them (T' = T + p);
    /// null when no mask was given.</summary>
    public Tensor? TokenMask { get; init; }

    /// <summary>Virtual tokens: per row, the input position they were inserted before (the row's
    /// first attended token), or null without them. Input position j ≥ InsertedAt[r] is
    /// hidden-state position j + <see cref="InsertedLength"/>.</summary>
    public int[]? InsertedAt { get; init; }

    public int InsertedLength { get; init; }

    /// <summary>The hidden-state position of input position <paramref name="j"/> of row <paramref name="row"/>.</summary>
    public int StatePosition(int row, int j) => InsertedAt is { } at && j >= at[row] ? j + InsertedLength : j;
}

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
///
/// Method hooks (<see cref="ModelHooks"/>, all unset by default; see docs/peft.md, "Llama"):
/// every linear layer of the blocks goes through <see cref="ModelHooks.Linear"/>; per-layer
/// key/value prefixes [B, p, kv heads · head dim] are put in front of each block's keys and values
/// after the real keys are rotated (prefix keys get no rotary embedding, as PEFT's
/// past_key_values in transformers), always visible; the real tokens then take positions p, p + 1,
/// … counted from each row's first attended token (transformers starts them at p as well,
/// cache_position = arange(p, p + T); counting from the first attended token is the engine's
/// choice so that a left-padded row computes what the unpadded row computes). Virtual tokens
/// [B, p, D] are inserted into the embeddings right before each row's first attended token
/// (before bos; after left padding), with p ones in the mask. A block limit N stops after block N
/// (the final norm then follows block N).
/// </summary>
public sealed class LlamaModel : Module
{
    public LlamaConfig Config { get; }
    public Embedding EmbedTokens { get; }
    private readonly List<LlamaDecoderLayer> layers = new();
    private readonly RmsNorm norm;
    private readonly double[] inverseFrequencies;
    private readonly ModelHooks hooks;

    public LlamaModel(LlamaConfig config, Random rng, double initStd = 0.02, DType dtype = DType.F32, ModelHooks? hooks = null)
    {
        Config = config;
        this.hooks = hooks ?? new ModelHooks();
        if (config.HiddenAct is not ("silu" or "swish"))
            throw new EngineException($"{config.ModelType}: hidden_act '{config.HiddenAct}' is not supported (only silu)");
        inverseFrequencies = LlamaRope.InverseFrequencies(config);
        EmbedTokens = Child("embed_tokens", new Embedding(config.VocabSize, config.HiddenSize, rng, initStd, dtype));
        var group = Child("layers", new Group());
        for (int i = 0; i < config.NumHiddenLayers; i++) layers.Add(group.Add($"{i}", new LlamaDecoderLayer(config, rng, initStd, dtype, this.hooks)));
        norm = Child("norm", new RmsNorm(config.HiddenSize, config.RmsNormEps, dtype));
    }

    public IReadOnlyList<double> InverseFrequencies => inverseFrequencies;

    /// <summary>ids [B, T] (I32); attentionMask [B, T] (I32, 1 = token, 0 = padding) or null for all tokens.</summary>
    public LlamaOutput Forward(Tensor ids, Tensor? attentionMask = null)
    {
        if (ids.Rank != 2 || ids.DType != DType.I32) throw new EngineException($"{Config.ModelType}: input ids must be I32 [batch, seq], got {ids.DType} {Shape.Format(ids.Shape)}");
        int b = ids.Dim(0), t = ids.Dim(1);
        var dtype = EmbedTokens.Weight.DType;
        var device = EmbedTokens.Weight.Device;
        var mask = AttentionMasks.Additive(ids, attentionMask, dtype, device, Config.ModelType);
        var h = EmbedTokens.Forward(ids.To(device));

        // Virtual tokens: p embeddings before each row's first attended token.
        var virtualTokens = hooks.VirtualTokens?.Invoke(b);
        int[]? insertedAt = null;
        if (virtualTokens is not null)
        {
            int p = virtualTokens.Dim(1);
            insertedAt = AttentionMasks.FirstAttended(attentionMask, b, t);
            h = InsertRows(h, virtualTokens, insertedAt);
            if (attentionMask is not null)
            {
                attentionMask = AttentionMasks.InsertOnes(attentionMask, insertedAt, p);
                mask = AttentionMasks.Additive(attentionMask, attentionMask, dtype, device, Config.ModelType);
            }
            t += p;
        }
        if (SlidingWindow(Config) is int window && t > window)
            throw new EngineException($"{Config.ModelType}: sequence length {t} exceeds the sliding window of {window} tokens, which the engine does not implement");

        // Key/value prefixes: p always-visible key/value positions in front of every block's own.
        var prefixes = hooks.KeyValuePrefixes?.Invoke(b);
        if (prefixes is not null && prefixes.Count != layers.Count)
            throw new EngineException($"{Config.ModelType}: the key/value prefix hook gave {prefixes.Count} pairs for {layers.Count} layers");
        Tensor cos, sin;
        if (prefixes is null) (cos, sin) = Ops.RopeTables(t, Config.HeadDim, Config.RopeTheta, dtype, inverseFrequencies, device);
        else
        {
            int p = prefixes[0].Key.Dim(1);
            (cos, sin) = PrefixedRopeTables(p, AttentionMasks.FirstAttended(attentionMask, b, t), b, t, dtype, device);
            if (mask is not null) mask = AttentionMasks.WithVisiblePrefix(mask, p);
        }

        var states = new List<Tensor> { h };
        int blocks = hooks.BlocksToRun(layers.Count);
        for (int i = 0; i < blocks; i++)
        {
            h = layers[i].Forward(h, mask, cos, sin, prefixes?[i]);
            if (i < blocks - 1) states.Add(h);
        }
        var last = norm.Forward(h);
        states.Add(last);
        return new LlamaOutput(states, last) { TokenMask = attentionMask, InsertedAt = insertedAt, InsertedLength = virtualTokens?.Dim(1) ?? 0 };
    }

    /// <summary>Every linear layer of the blocks with its parameter path (prefix + path + ".weight"
    /// is its weight's name), e.g. "model.layers.0.self_attn.q_proj".</summary>
    public IEnumerable<(string Path, Linear Layer)> LinearLayers(string prefix)
    {
        for (int i = 0; i < layers.Count; i++)
            foreach (var (path, layer) in layers[i].LinearLayers())
                yield return ($"{prefix}layers.{i}.{path}", layer);
    }

    public int LayerCount => layers.Count;

    /// <summary>h [B, T, D] with rows [B, p, D] inserted before position at[r] of row r → [B, T + p, D].</summary>
    private static Tensor InsertRows(Tensor h, Tensor prompt, int[] at)
    {
        int b = h.Dim(0), t = h.Dim(1);
        static Tensor Insert(Tensor hs, Tensor ps, int j, int t)
        {
            var parts = new List<Tensor>();
            if (j > 0) parts.Add(Ops.Slice(hs, 1, 0, j));
            parts.Add(ps);
            if (j < t) parts.Add(Ops.Slice(hs, 1, j, t - j));
            return parts.Count == 1 ? parts[0] : Ops.Concat(parts, 1);
        }
        if (at.All(j => j == at[0])) return Insert(h, prompt, at[0], t);
        var rows = new List<Tensor>(b);
        for (int r = 0; r < b; r++) rows.Add(Insert(Ops.Slice(h, 0, r, 1), Ops.Slice(prompt, 0, r, 1), at[r], t));
        return Ops.Concat(rows, 0);
    }

    /// <summary>cos, sin [B, T, head_dim] with prefixes of length p: position p + (j − first[r]) for
    /// j ≥ first[r] (the row's first attended token sits at p, as position p follows the prefix in
    /// transformers), p for the left padding before it (masked; its value does not matter).</summary>
    private (Tensor Cos, Tensor Sin) PrefixedRopeTables(int p, int[] first, int b, int t, DType dtype, Device device)
    {
        int d = Config.HeadDim;
        var (cos, sin) = Ops.RopeTables(p + t, d, Config.RopeTheta, DType.F64, inverseFrequencies);
        double[] c = cos.ToDoubleArray(), s = sin.ToDoubleArray();
        var rc = new double[b * t * d];
        var rs = new double[b * t * d];
        for (int r = 0; r < b; r++)
            for (int j = 0; j < t; j++)
            {
                int pos = p + Math.Max(0, j - first[r]);
                Array.Copy(c, pos * d, rc, (r * t + j) * d, d);
                Array.Copy(s, pos * d, rs, (r * t + j) * d, d);
            }
        return (Tensor.FromDoubles(rc, [b, t, d], dtype).To(device), Tensor.FromDoubles(rs, [b, t, d], dtype).To(device));
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

    public LlamaDecoderLayer(LlamaConfig c, Random rng, double std, DType dtype, ModelHooks hooks)
    {
        attention = Child("self_attn", new LlamaAttention(c, rng, std, dtype, hooks));
        mlp = Child("mlp", new LlamaMlp(c, rng, std, dtype, hooks));
        inputNorm = Child("input_layernorm", new RmsNorm(c.HiddenSize, c.RmsNormEps, dtype));
        postAttentionNorm = Child("post_attention_layernorm", new RmsNorm(c.HiddenSize, c.RmsNormEps, dtype));
    }

    public IEnumerable<(string Path, Linear Layer)> LinearLayers() =>
        attention.LinearLayers().Select(l => ("self_attn." + l.Path, l.Layer)).Concat(mlp.LinearLayers().Select(l => ("mlp." + l.Path, l.Layer)));

    /// <summary>x [B, T, d] → [B, T, d]; mask [B, p + T] additive over keys or null (p = 0 without
    /// a prefix); cos, sin [T, head_dim] or [B, T, head_dim]; prefix: keys and values [B, p, Hkv·D].</summary>
    public Tensor Forward(Tensor x, Tensor? mask, Tensor cos, Tensor sin, (Tensor Key, Tensor Value)? prefix = null)
    {
        var h = Ops.Add(x, attention.Forward(inputNorm.Forward(x), mask, cos, sin, prefix));
        return Ops.Add(h, mlp.Forward(postAttentionNorm.Forward(h)));
    }
}

/// <summary>Causal self-attention with grouped-query heads: q [B, H, T, D] from q_proj,
/// k and v [B, Hkv, T, D] from k_proj and v_proj; RoPE on q and k; o_proj back to d.</summary>
internal sealed class LlamaAttention : Module
{
    private readonly int heads, kvHeads, headDim;
    private readonly Linear q, k, v, o;
    private readonly ModelHooks hooks;

    public LlamaAttention(LlamaConfig c, Random rng, double std, DType dtype, ModelHooks hooks)
    {
        this.hooks = hooks;
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

    public IEnumerable<(string Path, Linear Layer)> LinearLayers() => [("q_proj", q), ("k_proj", k), ("v_proj", v), ("o_proj", o)];

    /// <summary>Causal attention; with a prefix, its keys (not rotated) and values go in front,
    /// and query t sees keys s ≤ t + p (the causal op's rule for S &gt; T), so every prefix key.</summary>
    public Tensor Forward(Tensor x, Tensor? mask, Tensor cos, Tensor sin, (Tensor Key, Tensor Value)? prefix = null)
    {
        int b = x.Dim(0), t = x.Dim(1);
        var query = Ops.Rope(SplitHeads(hooks.Linear(q, x), heads), cos, sin);
        var key = Ops.Rope(SplitHeads(hooks.Linear(k, x), kvHeads), cos, sin);
        var value = SplitHeads(hooks.Linear(v, x), kvHeads);
        if (prefix is { } kv)
        {
            key = Ops.Concat([SplitHeads(kv.Key, kvHeads), key], 2);
            value = Ops.Concat([SplitHeads(kv.Value, kvHeads), value], 2);
        }
        var ctx = Ops.Attention(query, key, value, mask, causal: true);
        return hooks.Linear(o, Ops.Transpose(ctx, 1, 2).Reshape(b, t, heads * headDim));
    }
}

/// <summary>SwiGLU: down(silu(gate(x)) ⊙ up(x)).</summary>
internal sealed class LlamaMlp : Module
{
    private readonly Linear gate, up, down;
    private readonly ModelHooks hooks;

    public LlamaMlp(LlamaConfig c, Random rng, double std, DType dtype, ModelHooks hooks)
    {
        this.hooks = hooks;
        gate = Child("gate_proj", new Linear(c.HiddenSize, c.IntermediateSize, rng, c.MlpBias, std, dtype));
        up = Child("up_proj", new Linear(c.HiddenSize, c.IntermediateSize, rng, c.MlpBias, std, dtype));
        down = Child("down_proj", new Linear(c.IntermediateSize, c.HiddenSize, rng, c.MlpBias, std, dtype));
    }

    public IEnumerable<(string Path, Linear Layer)> LinearLayers() => [("gate_proj", gate), ("up_proj", up), ("down_proj", down)];

    public Tensor Forward(Tensor x) => hooks.Linear(down, Ops.Mul(Ops.Silu(hooks.Linear(gate, x)), hooks.Linear(up, x)));
}
