using Engine.IO;
using Engine.Nn;

namespace Engine.Models.Bert;

/// <summary>
/// Hugging Face's BertForSequenceClassification and RobertaForSequenceClassification:
/// BERT: pooler (tanh(dense(h[CLS]))) → dropout → classifier Linear(d, C);
/// RoBERTa: h[&lt;s&gt;] → dropout → classifier.dense → tanh → dropout → classifier.out_proj.
/// Parameter names are those of the checkpoint (bert.… / roberta.…, classifier.…).
/// </summary>
public sealed class BertForSequenceClassification : SequenceClassifier
{
    public BertConfig Config { get; }
    public BertModel Encoder { get; }
    public override int NumLabels { get; }
    private readonly Linear classifier;
    private readonly Linear? robertaDense;
    private readonly Dropout dropout;

    public BertForSequenceClassification(BertConfig config, int seed = 0, int? numLabels = null, double initStd = 0.02, DType dtype = DType.F32)
    {
        Config = config;
        NumLabels = numLabels ?? config.NumLabels ?? 2;
        var rng = new Random(seed);
        var seeds = Seeds = new DropoutSeeds((ulong)seed);
        Encoder = Child(config.IsRoberta ? "roberta" : "bert", new BertModel(config, rng, seeds, withPooler: !config.IsRoberta, initStd, dtype, Hooks));
        dropout = Child("dropout", new Dropout(config.ClassifierDropout ?? config.HiddenDropoutProb, seeds));
        if (config.IsRoberta)
        {
            var head = Child("classifier", new Group());
            robertaDense = head.Add("dense", new Linear(config.HiddenSize, config.HiddenSize, rng, std: initStd, dtype: dtype));
            classifier = head.Add("out_proj", new Linear(config.HiddenSize, NumLabels, rng, std: initStd, dtype: dtype));
        }
        else classifier = Child("classifier", new Linear(config.HiddenSize, NumLabels, rng, std: initStd, dtype: dtype));
    }

    public override ClassifierOutput Forward(Tensor ids, Tensor? attentionMask = null, Tensor? tokenTypeIds = null)
    {
        var enc = Encoder.Forward(ids, attentionMask, tokenTypeIds);
        // With a pooling set (depth-wise, mean, last), its vector z stands where h[CLS] stood:
        // BERT applies the pooler (dense + tanh) to z, RoBERTa its classifier.dense + tanh.
        var features = Pooling?.Pool(enc.HiddenStates, enc.LastHiddenState, enc.TokenMask);
        if (Hooks.Head is { } head)
            return new ClassifierOutput(head(features ?? BertModel.FirstToken(enc.LastHiddenState)), enc.HiddenStates, enc.LastHiddenState);
        Tensor x;
        if (robertaDense is null) x = dropout.Forward(features is null ? enc.Pooled! : Encoder.ApplyPooler(features));
        else x = dropout.Forward(Ops.Tanh(robertaDense.Forward(dropout.Forward(features ?? BertModel.FirstToken(enc.LastHiddenState)))));
        return new ClassifierOutput(classifier.Forward(x), enc.HiddenStates, enc.LastHiddenState);
    }

    public override IEnumerable<(string Path, Linear Layer)> LinearLayers() => Encoder.LinearLayers(Config.IsRoberta ? "roberta." : "bert.");

    public override string? ProblemType => Config.ProblemType;

    /// <summary>BERT: the pooler, tanh(dense(z)); RoBERTa's classification model has none (z).</summary>
    public override Tensor PretrainedPooler(Tensor z) => robertaDense is null ? Encoder.ApplyPooler(z) : z;

    public override LinearRoles Layers { get; } = new("query", "key", "value", "attention.output.dense", ["intermediate.dense"], "output.dense");
    public override int BlockCount => Config.NumHiddenLayers;
    public override int HiddenSize => Config.HiddenSize;
    public override int KeyValueWidth => Config.HiddenSize;
    public override Tensor WordEmbeddings => NamedParameters().First(p => p.Name.EndsWith("embeddings.word_embeddings.weight", StringComparison.Ordinal)).Param;
    public override string DefaultPooling => "cls";

    /// <summary>Loads a Hugging Face folder: the config, then every parameter from the weights,
    /// with or without the bert./roberta. prefix and with legacy LayerNorm gamma/beta names.
    /// <paramref name="numLabels"/> overrides the config's label count (a new task); a head that is
    /// missing or has another shape is then initialised randomly (see <see cref="SequenceClassifier.LoadMatched"/>).
    /// <paramref name="prepare"/> runs between building and loading (a saved method is re-installed there).</summary>
    public static BertForSequenceClassification FromFolder(HfModelFolder folder, int seed = 0, DType dtype = DType.F32, Action<string>? log = null, int? numLabels = null,
        Action<SequenceClassifier>? prepare = null)
    {
        ModelFolderCheck.BeforeBuilding(folder);
        var model = new BertForSequenceClassification(folder.BertConfig, seed, numLabels, dtype: dtype);
        prepare?.Invoke(model);
        using var source = folder.OpenWeights();
        model.LoadWeights(source, log);
        return model;
    }

    public void LoadWeights(IWeightSource source, Action<string>? log = null)
    {
        var prefix = Config.IsRoberta ? "roberta." : "bert.";
        IEnumerable<string> Candidates(string n)
        {
            foreach (var m in new[] { n, n.StartsWith(prefix, StringComparison.Ordinal) ? n[prefix.Length..] : n })
            {
                yield return m;
                if (m.Contains("LayerNorm.weight")) yield return m.Replace("LayerNorm.weight", "LayerNorm.gamma");
                if (m.Contains("LayerNorm.bias")) yield return m.Replace("LayerNorm.bias", "LayerNorm.beta");
            }
        }
        // Buffers and heads this model does not build: position_ids, pre-training heads, a RoBERTa pooler.
        static bool Ignore(string n) => n.EndsWith("position_ids", StringComparison.Ordinal) || n.StartsWith("cls.", StringComparison.Ordinal)
            || n.StartsWith("lm_head.", StringComparison.Ordinal) || n.Contains("pooler.") || n.EndsWith("token_type_ids", StringComparison.Ordinal);
        // A BertForMaskedLM checkpoint has no pooler: like transformers, the pooler then starts
        // from random weights along with the classifier.
        LoadMatched(source, Candidates, Ignore, n => n.StartsWith("classifier.", StringComparison.Ordinal) || n.StartsWith("bert.pooler.", StringComparison.Ordinal), log);
    }
}
