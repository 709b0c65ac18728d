using Engine.Models.Bert;
using Engine.Nn;

namespace Engine.Models.Pretraining;

/// <summary>
/// Hugging Face's BertForMaskedLM: the encoder under "bert." (no pooler), then the prediction
/// head "cls.predictions.": transform = dense (d → d) → the config's activation → LayerNorm,
/// then the decoder, whose weight is the word-embedding matrix itself (tied: logits = x · Eᵀ +
/// cls.predictions.bias, E = bert.embeddings.word_embeddings.weight [V, d]), so the embedding
/// gets gradients from the input lookup and from the output layer. The head runs only at the
/// masked positions (the others carry label -100 and count for nothing in transformers' loss
/// either), which spares most of the [tokens, V] output GEMM.
///
/// Saved names: bert.embeddings.*, bert.encoder.*, cls.predictions.transform.dense.{weight,bias},
/// cls.predictions.transform.LayerNorm.{weight,bias}, cls.predictions.bias. The tied
/// cls.predictions.decoder.weight and .bias are not written (transformers drops them on save
/// and re-ties them on load); a file that has them loads too.
/// </summary>
public sealed class MaskedLanguageModel : LanguageModel
{
    public BertConfig Config { get; }
    public BertModel Encoder { get; }
    private readonly Tensor wordEmbeddings;
    private readonly PredictionHead head;

    public override string Architecture => Config.IsRoberta ? "RobertaForMaskedLM" : "BertForMaskedLM";
    public override int VocabSize => Config.VocabSize;

    public MaskedLanguageModel(BertConfig config, int seed = 0, double initStd = 0.02, DType dtype = DType.F32)
    {
        if (config.IsRoberta) throw new EngineException("mlm: pretraining RoBERTa folders is not supported (its head is lm_head.*); use model_type bert");
        Config = config;
        var rng = new Random(seed);
        Seeds = new DropoutSeeds((ulong)seed);
        Encoder = Child("bert", new BertModel(config, rng, Seeds, withPooler: false, initStd, dtype));
        wordEmbeddings = Encoder.NamedParameters().Single(p => p.Name == "embeddings.word_embeddings.weight").Param;
        head = Child("cls", new Group()).Add("predictions", new PredictionHead(config, rng, initStd, dtype));
    }

    /// <summary>The tied output layer on hidden states x [N, d] → logits [N, V].</summary>
    public Tensor Head(Tensor x) => head.Forward(x, wordEmbeddings);

    private const int PadTo = 32;

    public override LmPrediction Predict(int[] ids, int[] targets, int batch, int length)
    {
        var h = Encoder.Forward(Tensor.FromArray(ids, batch, length)).LastHiddenState;
        var at = new List<int>();
        for (int i = 0; i < targets.Length; i++) if (targets[i] != MlmMasker.Ignore) at.Add(i);
        if (at.Count == 0) throw new EngineException("mlm: a batch with no masked token (rows too short?)");
        var scored = at.Select(i => targets[i]).ToList();
        // The masked count varies from batch to batch; padded up to a multiple of 32 (with position 0,
        // not scored) the head's tensors take a few sizes only, which the CPU's size-keyed array pool
        // can keep and reuse. The padding rows count for nothing in the loss and get no gradient.
        while (at.Count % PadTo != 0) { at.Add(0); scored.Add(MlmMasker.Ignore); }
        // The masked positions' hidden states: an embedding lookup into h viewed as a [B·T, d] table
        // (its backward scatters the gradient back into h).
        var rows = Ops.Embedding(Tensor.FromArray(at.ToArray(), at.Count).To(h.Device), h.Reshape(batch * length, Config.HiddenSize));
        return new LmPrediction(Head(rows), scored.ToArray());
    }

    public static MaskedLanguageModel FromFolder(HfModelFolder folder, int seed = 0, DType dtype = DType.F32)
    {
        var model = new MaskedLanguageModel(folder.BertConfig, seed, dtype: dtype);
        using var source = folder.OpenWeights();
        model.LoadExact(source, n => n.EndsWith("position_ids", StringComparison.Ordinal) || n.StartsWith("cls.predictions.decoder.", StringComparison.Ordinal)
            || n.StartsWith("bert.pooler.", StringComparison.Ordinal) || n.StartsWith("cls.seq_relationship.", StringComparison.Ordinal));
        return model;
    }

    /// <summary>cls.predictions: bias [V], transform.dense, transform.LayerNorm.</summary>
    private sealed class PredictionHead : Module
    {
        private readonly Tensor bias;
        private readonly Linear dense;
        private readonly LayerNorm norm;
        private readonly Func<Tensor, Tensor> act;

        public PredictionHead(BertConfig config, Random rng, double initStd, DType dtype)
        {
            bias = Param("bias", Tensor.Zeros([config.VocabSize], dtype));
            var transform = Child("transform", new Group());
            dense = transform.Add("dense", new Linear(config.HiddenSize, config.HiddenSize, rng, std: initStd, dtype: dtype));
            norm = transform.Add("LayerNorm", new LayerNorm(config.HiddenSize, config.LayerNormEps, dtype));
            act = config.HiddenAct switch
            {
                "gelu" => Ops.Gelu,
                "gelu_new" or "gelu_pytorch_tanh" => Ops.GeluTanh,
                "relu" => Ops.Relu,
                _ => throw new EngineException($"mlm: hidden_act '{config.HiddenAct}' is not supported by the prediction head (gelu, gelu_new, relu)"),
            };
        }

        /// <summary>x [N, d], embeddings E [V, d] → LayerNorm(act(dense(x))) · Eᵀ + bias [N, V].</summary>
        public Tensor Forward(Tensor x, Tensor embeddings) => Ops.Add(Ops.MatMul(norm.Forward(act(dense.Forward(x))), embeddings, transB: true), bias);
    }
}
