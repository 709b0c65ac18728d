using System.Text.Json.Nodes;
using Engine.IO;
using Engine.Models.Bert;
using Engine.Models.Peft;
using Engine.Nn;

namespace Engine.Models;

/// <summary>The short names of a family's block linear layers by role, as PEFT's target_modules
/// names them (BERT: query, key, value, attention.output.dense, intermediate.dense, output.dense;
/// Llama: q_proj, k_proj, v_proj, o_proj, gate_proj + up_proj, down_proj). A name matches a layer
/// whose path ends in "." + name (<see cref="ModuleMatch"/>).</summary>
public sealed record LinearRoles(string Query, string Key, string Value, string AttentionOutput, IReadOnlyList<string> FeedForwardIn, string FeedForwardOut);

/// <summary>Logits [B, C]; every layer's output (index 0: the embeddings, i: block i); the
/// model's final hidden states (after a final norm, where the family has one).</summary>
public sealed record ClassifierOutput(Tensor Logits, IReadOnlyList<Tensor> HiddenStates, Tensor LastHiddenState);

/// <summary>
/// A Hugging Face sequence-classification model of any family: what `engine forward`, the
/// trainer and the PEFT methods drive. Parameter names are the checkpoint's.
/// </summary>
public abstract class SequenceClassifier : Module
{
    public abstract int NumLabels { get; }

    /// <summary>config.json's problem_type ("regression", "single_label_classification",
    /// "multi_label_classification") or null.</summary>
    public abstract string? ProblemType { get; }

    /// <summary>For each parameter, the name its weights had in the file they were loaded from
    /// (a checkpoint may omit the bert. prefix or use LayerNorm.gamma); empty before loading.</summary>
    public IReadOnlyDictionary<string, string> SourceNames { get; protected set; } = new Dictionary<string, string>();

    /// <summary>True when the weights had no (or a differently shaped) classification head and
    /// the head kept its random initialisation: the model is not a fine-tuned one.</summary>
    public bool HeadInitialisedRandomly { get; private set; }

    /// <summary>The model's dropout seed sequence (its position is saved with checkpoints).</summary>
    public DropoutSeeds Seeds { get; protected init; } = new(0);

    /// <summary>Where fine-tuning methods reach into the backbone (wrapped linear layers, key/value
    /// prefixes, virtual tokens, a block limit, a replaced head); the family passes it to its
    /// layers. Unset hooks change nothing.</summary>
    public ModelHooks Hooks { get; } = new();

    /// <summary>The pooling that replaces the head's usual input, or null for the usual one
    /// ([CLS] for BERT). Set with <see cref="UsePooling"/>.</summary>
    public SequencePooling? Pooling { get; private set; }

    /// <summary>What <see cref="PeftSetup"/> installed (method, options, pooling); null for a
    /// plain model. Saved in config.json as "engine_peft" so a checkpoint reloads with it.</summary>
    public PeftState? Peft { get; internal set; }

    /// <summary>Replaces the head's input with <paramref name="pooling"/>; its weights (depth-wise)
    /// become the parameter depthwise_pooling.weights. Once per model.</summary>
    public void UsePooling(SequencePooling pooling)
    {
        if (Pooling is not null) throw new EngineException("pooling: this model already has its pooling set");
        Pooling = pooling;
        if (pooling.Weights is not null) Child(SequencePooling.ModuleName, pooling);
    }

    /// <summary>Adds a method's module whose parameters are named <paramref name="path"/> + "." + the
    /// module's own names (a LoRA adapter at "bert.encoder.layer.0.attention.self.query" gives
    /// "….query.lora_A.weight"). Attached modules follow Train/Eval and are saved and loaded
    /// with the model.</summary>
    public T Attach<T>(string path, T module) where T : Module
    {
        attached.Add(path);
        return Child(path, module);
    }

    private readonly List<string> attached = [];

    /// <summary>The paths of the modules attached with <see cref="Attach"/>, in order.</summary>
    public IReadOnlyList<string> AttachedPaths => attached;

    /// <summary>Removes a module attached at <paramref name="path"/>: its parameters leave the
    /// model (a method dropping its parameters between stages also unsets its hooks).</summary>
    public void Detach(string path)
    {
        if (!attached.Remove(path)) throw new EngineException($"detach: no module is attached at '{path}'");
        RemoveChild(path);
    }

    /// <summary>Every linear layer of the backbone (not the head) with its module path
    /// ("bert.encoder.layer.0.attention.self.query"), in block order; a method wraps them through
    /// <see cref="ModelHooks.WrapLinear"/>.</summary>
    public virtual IEnumerable<(string Path, Linear Layer)> LinearLayers() => [];

    /// <summary>The short names of the blocks' linear layers by role (what methods target by default).</summary>
    public abstract LinearRoles Layers { get; }

    /// <summary>The number of blocks (layers) of the backbone.</summary>
    public abstract int BlockCount { get; }

    /// <summary>The hidden size D.</summary>
    public abstract int HiddenSize { get; }

    /// <summary>The width of one block's keys (and values) before the heads are split (Llama:
    /// kv heads · head dim, smaller than the hidden size with grouped-query attention).</summary>
    public abstract int KeyValueWidth { get; }

    /// <summary>The word-embedding table [V, D].</summary>
    public abstract Tensor WordEmbeddings { get; }

    /// <summary>The within-layer pooling the family's head reads: "cls" for encoders, "last" for decoders.</summary>
    public abstract string DefaultPooling { get; }

    /// <summary>The family's pretrained transform of a pooled vector [B, D] before its classifier
    /// (BERT's pooler: tanh(dense(z)), frozen unless a method trains it), or z itself for families
    /// without one (RoBERTa's classification model, Llama). A method that replaces the head
    /// (<see cref="ModelHooks.Head"/>) may keep it in its path.</summary>
    public virtual Tensor PretrainedPooler(Tensor z) => z;

    /// <summary>The head's module names as PEFT's modules_to_save lists them for SEQ_CLS.</summary>
    public static readonly string[] HeadModules = ["classifier", "score"];

    /// <summary>A parameter of the classification head (classifier.* or score.*).</summary>
    public static bool IsHead(string parameterName) =>
        HeadModules.Any(h => parameterName.StartsWith(h + ".", StringComparison.Ordinal));

    /// <summary>The name a parameter is saved under: the one it was loaded from, else its own.</summary>
    public string CheckpointName(string parameterName) => SourceNames.GetValueOrDefault(parameterName, parameterName);

    /// <summary>
    /// Copies weights from <paramref name="source"/> into the parameters, trying for each
    /// parameter the names <paramref name="candidates"/> lists. Head parameters
    /// (<paramref name="isHead"/>) that are missing or have another shape (a new task with another
    /// label count) keep their random initialisation, with one note through <paramref name="log"/>,
    /// as transformers does; anything else missing, unexpected (unless <paramref name="ignore"/>d)
    /// or misshapen is one error listing all of it.
    /// </summary>
    protected void LoadMatched(IWeightSource source, Func<string, IEnumerable<string>> candidates, Func<string, bool> ignore,
        Func<string, bool> isHead, Action<string>? log)
    {
        var named = NamedParameters().ToDictionary(p => p.Name, p => p.Param);
        var match = WeightMatch.Match(named.Select(p => new ExpectedTensor(p.Key, p.Value.ShapeArray)), source, candidates,
            n => ignore(n) || isHead(n));
        var headIssues = match.Missing.Where(m => isHead(m.Name)).Select(m => m.Name + " (missing)")
            .Concat(match.ShapeMismatches.Where(m => isHead(m.Name)).Select(m => $"{m.Name} ({Shape.Format(m.Found)} in the file, {Shape.Format(m.Expected)} here)"))
            .ToList();
        new WeightMatch
        {
            Source = match.Source, Matched = match.Matched, Unexpected = match.Unexpected,
            Missing = match.Missing.Where(m => !isHead(m.Name)).ToList(),
            ShapeMismatches = match.ShapeMismatches.Where(m => !isHead(m.Name)).ToList(),
        }.ThrowIfIncomplete();
        HeadInitialisedRandomly = headIssues.Count > 0;
        if (headIssues.Count > 0)
            log?.Invoke($"{source.Path}: classification head initialised randomly: {string.Join(", ", headIssues)}");
        SourceNames = match.Matched;
        foreach (var (name, file) in match.Matched)
        {
            var p = named[name];
            Backend.Backends.Copy(source.ReadAs(file, p.DType), p);
        }
    }

    /// <summary>Whether the model takes token type (segment) ids. Llama does not: its tokenizers
    /// number a pair's parts 0 and 1 when asked, but transformers does not pass them to the model
    /// (token_type_ids is not among its model inputs), and neither do the engine's batches.</summary>
    public virtual bool UsesTokenTypes => true;

    /// <summary>A batch's token types as this model takes them: as given, or null for a model without them.</summary>
    public Tensor? TokenTypes(Tensor? tokenTypeIds) => UsesTokenTypes ? tokenTypeIds : null;

    /// <summary>ids [B, T] I32; attentionMask [B, T] I32 (1 token, 0 padding) or null; tokenTypeIds [B, T] I32 or null.</summary>
    public abstract ClassifierOutput Forward(Tensor ids, Tensor? attentionMask = null, Tensor? tokenTypeIds = null);

    /// <summary>Hugging Face's choice of loss: one label → MSE (regression, float labels [B]);
    /// problem_type "multi_label_classification" → BCE-with-logits (float labels [B, C]);
    /// otherwise cross-entropy (I32 labels [B]). Labels may be on the CPU; they move to the logits' device.</summary>
    public Tensor Loss(Tensor logits, Tensor labels)
    {
        labels = labels.To(logits.Device);
        var problemType = ProblemType;
        if (NumLabels == 1 || problemType == "regression")
        {
            var target = labels.DType == logits.DType ? labels : CastTo(labels, logits.DType);
            return Ops.Mse(Ops.Reshape(logits, -1), Ops.Reshape(target, -1));
        }
        if (problemType == "multi_label_classification")
            return Ops.BceWithLogits(logits, labels.DType == logits.DType ? labels : CastTo(labels, logits.DType));
        if (labels.DType != DType.I32) labels = CastTo(labels, DType.I32);
        return Ops.CrossEntropy(logits, labels);
    }

    private static Tensor CastTo(Tensor t, DType dtype)
    {
        var r = Tensor.Empty(t.ShapeArray, dtype, t.Device);
        t.Backend.Cast(t, r);
        return r;
    }

    /// <summary>Tokenizer and generation files a saved model carries over from its source folder.</summary>
    public static readonly string[] CompanionFiles =
    [
        "tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "added_tokens.json", "vocab.txt",
        "vocab.json", "merges.txt", "tokenizer.model", "generation_config.json",
    ];

    /// <summary>
    /// Writes the model into <paramref name="folder"/> as a Hugging Face folder: the source's
    /// config.json with this model's labels (id2label, label2id), model.safetensors with every
    /// parameter under its checkpoint name, and the source's tokenizer files. Written into
    /// <paramref name="folder"/> directly (callers wanting atomicity write into an
    /// <see cref="AtomicFolder"/>).
    /// </summary>
    public void SaveInto(string folder, HfModelFolder source, IReadOnlyList<string>? labelNames = null)
    {
        var config = JsonNode.Parse(source.Config.GetRawText())!.AsObject();
        if (labelNames is not null)
        {
            if (labelNames.Count != NumLabels) throw new EngineException($"save: {labelNames.Count} label names for a head of {NumLabels} labels");
            var id2label = new JsonObject();
            var label2id = new JsonObject();
            for (int i = 0; i < labelNames.Count; i++) { id2label[i.ToString()] = labelNames[i]; label2id[labelNames[i]] = i; }
            config["id2label"] = id2label;
            config["label2id"] = label2id;
            config.Remove("num_labels"); // transformers derives it from id2label
        }
        if (Peft is not null) config[PeftState.ConfigKey] = Peft.ToConfig();
        else config.Remove(PeftState.ConfigKey);
        File.WriteAllText(Path.Combine(folder, HfModelFolder.ConfigFileName), config.ToJsonString(new System.Text.Json.JsonSerializerOptions { WriteIndented = true }));
        SafeTensors.Save(Path.Combine(folder, SafeTensors.SingleFileName),
            NamedParameters().Where(p => Peft?.Saves(p.Name) ?? true).Select(p => new KeyValuePair<string, Tensor>(CheckpointName(p.Name), p.Param)),
            new Dictionary<string, string> { ["format"] = "pt" });
        Peft?.SaveExtras(folder, this, source);
        foreach (var name in CompanionFiles)
        {
            var src = Path.Combine(source.Path, name);
            if (File.Exists(src)) File.Copy(src, Path.Combine(folder, name), overwrite: true);
        }
    }

    /// <summary>Builds the family's classifier from a folder and loads its weights. A folder saved
    /// by a PEFT run (config.json has "engine_peft") gets its method and pooling re-installed
    /// before the weights load (see <see cref="PeftSetup.Restore"/>).</summary>
    public static SequenceClassifier FromFolder(HfModelFolder folder, int seed = 0, DType dtype = DType.F32, Action<string>? log = null, int? numLabels = null) =>
        folder.Family switch
        {
            ModelFamily.Bert => BertForSequenceClassification.FromFolder(folder, seed, dtype, log, numLabels, prepare: m => PeftSetup.Restore(m, folder)),
            ModelFamily.Llama => Llama.LlamaForSequenceClassification.FromFolder(folder, seed, dtype, log, numLabels, prepare: m => PeftSetup.Restore(m, folder)),
            _ => throw new EngineException($"{folder.Path}: model_type '{folder.ModelType}' has no sequence-classification model in the engine yet"),
        };
}
