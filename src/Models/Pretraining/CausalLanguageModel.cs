using System.Text.Json;
using Engine.Models.Llama;
using Engine.Nn;

namespace Engine.Models.Pretraining;

/// <summary>
/// Hugging Face's LlamaForCausalLM (also Mistral, Qwen2): the decoder under "model.", then the
/// output layer: lm_head.weight [V, d] (logits = h · Wᵀ, no bias), or, when config.json has
/// tie_word_embeddings true, the input embedding matrix model.embed_tokens.weight itself (then
/// no lm_head.weight is stored, as transformers saves a tied model). Position t is scored
/// against the token at t + 1 (transformers shifts the labels inside the loss the same way);
/// the last position of each row has no target.
/// </summary>
public sealed class CausalLanguageModel : LanguageModel
{
    public LlamaConfig Config { get; }
    public LlamaModel Decoder { get; }
    private readonly Linear? lmHead;

    public override string Architecture => Config.ModelType switch { "mistral" => "MistralForCausalLM", "qwen2" => "Qwen2ForCausalLM", _ => "LlamaForCausalLM" };
    public override int VocabSize => Config.VocabSize;
    public bool Tied => lmHead is null;

    public CausalLanguageModel(LlamaConfig config, int seed = 0, DType dtype = DType.F32)
    {
        Config = config;
        var rng = new Random(seed);
        Seeds = new DropoutSeeds((ulong)seed);
        double std = config.Extra.TryGetValue("initializer_range", out var r) && r.ValueKind == JsonValueKind.Number ? r.GetDouble() : 0.02;
        Decoder = Child("model", new LlamaModel(config, rng, std, dtype));
        if (!config.TieWordEmbeddings) lmHead = Child("lm_head", new Linear(config.HiddenSize, config.VocabSize, rng, bias: false, std: std, dtype: dtype));
    }

    /// <summary>Final hidden states h [..., d] → logits [..., V].</summary>
    public Tensor Head(Tensor h) => lmHead?.Forward(h) ?? Ops.MatMul(h, Decoder.EmbedTokens.Weight, transB: true);

    public override LmPrediction Predict(int[] ids, int[] targets, int batch, int length)
    {
        var h = Decoder.Forward(Tensor.FromArray(ids, batch, length)).LastHiddenState;
        return new LmPrediction(Head(h.Reshape(batch * length, Config.HiddenSize)), targets);
    }

    /// <summary>The causal targets of rows ids [B, T]: ids shifted left by one, -100 at each row's last position.</summary>
    public static int[] ShiftedTargets(int[] ids, int batch, int length)
    {
        var t = new int[ids.Length];
        for (int b = 0; b < batch; b++)
            for (int j = 0; j < length; j++)
                t[b * length + j] = j + 1 < length ? ids[b * length + j + 1] : MlmMasker.Ignore;
        return t;
    }

    public static CausalLanguageModel FromFolder(HfModelFolder folder, int seed = 0, DType dtype = DType.F32)
    {
        var model = new CausalLanguageModel(folder.LlamaConfig, seed, dtype);
        using var source = folder.OpenWeights();
        // A tied model may still carry lm_head.weight (a copy of the embeddings): not needed.
        model.LoadExact(source, n => n.EndsWith("rotary_emb.inv_freq", StringComparison.Ordinal) || (model.Tied && n == "lm_head.weight"));
        return model;
    }
}
