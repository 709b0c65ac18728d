using System.Text.Json.Nodes;
using Engine.Autograd;
using Engine.Models.Tokenization;

namespace Engine.Models.Peft.LTuning;

/// <summary>LT-prefix: label-derived key/value prefixes through <see cref="ModelHooks.KeyValuePrefixes"/>.</summary>
public sealed class LtPrefixMethod : LTuningMethod
{
    public override double DefaultLearningRate => 5e-3;
    public override string Name => "lt-prefix";
    public override string Description => "L-Tuning: key/value prefixes derived from label prompts, a pair head (text, label) → is it the label";
    public override MethodOptions Defaults { get; } = new LtPrefixOptions();
    protected override bool Prefix => true;
    protected override LTuningOptions With(IReadOnlyDictionary<string, string>? texts, string? source, double dropout) =>
        new LtPrefixOptions { LabelTexts = texts, Source = source, Dropout = dropout };
}

/// <summary>LT-prompt: label-derived input embeddings through <see cref="ModelHooks.VirtualTokens"/>.</summary>
public sealed class LtPromptMethod : LTuningMethod
{
    public override double DefaultLearningRate => 1e-2;
    public override string Name => "lt-prompt";
    public override string Description => "L-Tuning: input embeddings derived from label prompts, a pair head (text, label) → is it the label";
    public override MethodOptions Defaults { get; } = new LtPromptOptions();
    protected override bool Prefix => false;
    protected override LTuningOptions With(IReadOnlyDictionary<string, string>? texts, string? source, double dropout) =>
        new LtPromptOptions { LabelTexts = texts, Source = source, Dropout = dropout };
}

/// <summary>
/// L-Tuning (docs/methods.md, "L-Tuning"): classification as (text, label text) pairs. Installing
/// builds the label prompts (<see cref="LabelPrompts"/>), encodes them once with the frozen
/// backbone (evaluation mode, no gradients), attaches <see cref="LabelTuning"/> and hooks its
/// prefixes or prompt and its pair head into the model; the trainer pairs rows with labels through
/// <see cref="InstalledMethod.Pairing"/>. Trains the module (not its label states) and the
/// pooling weights; the backbone and the model's own K-way head stay frozen (the latter unused).
/// </summary>
public abstract class LTuningMethod : FineTuningMethod
{
    protected abstract bool Prefix { get; }

    protected abstract LTuningOptions With(IReadOnlyDictionary<string, string>? texts, string? source, double dropout);

    public override IReadOnlyList<MethodOption> CliOptions { get; } =
    [
        new("--label-texts", "L-Tuning: a JSON file mapping every label to its text (default: the label names)"),
        new("--lt-dropout", "L-Tuning: dropout on the prefixes and the head's input (default 0.1)"),
    ];

    public override MethodOptions FromCli(OptionValues v)
    {
        var file = v.String("--label-texts");
        return With(file is null ? null : LTuningOptions.ReadFile(file), file is null ? null : $"--label-texts {file}", v.Double("--lt-dropout", 0.1));
    }

    public override MethodOptions FromConfig(JsonNode? s)
    {
        var texts = s?["label_texts"]?.AsObject().ToDictionary(kv => kv.Key, kv => kv.Value!.GetValue<string>());
        return With(texts, null, s?["dropout"]?.GetValue<double>() ?? 0.1);
    }

    public override InstalledMethod Install(SequenceClassifier model, MethodOptions options, MethodContext context)
    {
        var o = OptionsAs<LTuningOptions>(options);
        if (model.NumLabels < 2 || model.ProblemType is "regression" or "multi_label_classification")
            throw new EngineException($"{Name}: L-Tuning picks one of a task's labels by scoring (text, label) pairs; it does not apply to " +
                                      (model.ProblemType == "multi_label_classification" ? "a multi-label task" : "a regression task"));
        // Decoders (the families whose head reads the last token) get the decoder variants and head.
        bool decoder = model.DefaultPooling == "last";
        var dtype = model.Parameters().First().DType;
        IReadOnlyList<string> texts;
        IReadOnlyList<string> labels;
        int length;
        double[]? states = null;
        if (context.Restoring)
        {
            labels = o.LabelTexts?.Keys.ToList() ?? [];
            texts = o.LabelTexts?.Values.ToList() ?? [];
            length = context.SavedSection?["prompt_length"]?.GetValue<int>() ?? throw new EngineException($"{Name}: the saved section has no prompt_length");
            if (labels.Count != model.NumLabels)
                throw new EngineException($"{Name}: the saved model has {labels.Count} label texts for a head of {model.NumLabels} labels");
        }
        else
        {
            labels = context.LabelNames ?? throw new EngineException($"{Name}: L-Tuning needs the task's label names");
            if (labels.Count != model.NumLabels) throw new EngineException($"{Name}: {labels.Count} label names for a head of {model.NumLabels} labels");
            texts = o.TextsFor(labels);
            var tokenizer = context.Tokenizer ?? throw new EngineException($"{Name}: L-Tuning needs the model's tokenizer to encode the label texts");
            var prompts = LabelPrompts.Build(tokenizer, texts, wrap: !decoder);
            length = prompts[0].Length;
            states = EncodeWithFrozenBackbone(model, prompts);
        }
        var module = model.Attach(LabelTuning.ModuleName, new LabelTuning(Prefix, decoder, labels.Count, length, model.HiddenSize, model.BlockCount,
            model.KeyValueWidth, o.Dropout, model.Seeds, model.PretrainedPooler, states, context.Rng, dtype));
        if (Prefix) model.Hooks.KeyValuePrefixes = module.Prefixes;
        else model.Hooks.VirtualTokens = module.Prompt;
        model.Hooks.Head = module.Head;
        var section = new JsonObject
        {
            ["label_texts"] = new JsonObject(labels.Zip(texts).Select(p => KeyValuePair.Create(p.First, (JsonNode?)p.Second))),
            ["prompt_length"] = length,
            ["dropout"] = o.Dropout,
        };
        return new Installed(section, new LabelPairing(labels.Count, module.UseRows));
    }

    /// <summary>h = M_frozen(y) for every label prompt: the last hidden states [K, l, D] (the final
    /// norm's output for decoders), one prompt at a time, in evaluation mode without gradients.</summary>
    private static double[] EncodeWithFrozenBackbone(SequenceClassifier model, int[][] prompts)
    {
        int l = prompts[0].Length, d = model.HiddenSize;
        var result = new double[prompts.Length * l * d];
        bool training = model.Training;
        model.Eval();
        using (Tape.NoGrad())
            for (int k = 0; k < prompts.Length; k++)
            {
                using var scope = Scope.Begin();
                var h = model.Forward(Tensor.FromArray(prompts[k], 1, l), Tensor.FromArray(Enumerable.Repeat(1, l).ToArray(), 1, l)).LastHiddenState;
                if (h.Dim(1) != l) throw new EngineException($"L-Tuning: encoding a label prompt gave {h.Dim(1)} positions for {l} tokens (is another method installed?)");
                Array.Copy(h.ToDoubleArray(), 0, result, k * l * d, l * d);
            }
        model.Train(training);
        return result;
    }

    private sealed class Installed(JsonObject section, LabelPairing pairing) : InstalledMethod
    {
        public override bool Trains(string name) =>
            (Under(LabelTuning.ModuleName, name) && name != $"{LabelTuning.ModuleName}.{LabelTuning.StatesName}")
            || (TrainsHeadOrPooling(name) && !SequenceClassifier.IsHead(name));

        public override string? GroupOf(string name) =>
            !Under(LabelTuning.ModuleName, name) ? null
            : name == $"{LabelTuning.ModuleName}.{LabelTuning.StatesName}" ? "label states"
            : name.StartsWith($"{LabelTuning.ModuleName}.{LabelTuning.HeadName}.", StringComparison.Ordinal) ? "head"
            : "L-Tuning";

        public override JsonObject ConfigSection() => (JsonObject)section.DeepClone();

        public override LabelPairing Pairing => pairing;
    }
}

/// <summary>
/// The label prompts: each text tokenised without special tokens, padded on the right to the
/// longest with the '.' token, then (encoders) wrapped in the tokenizer's special tokens
/// ([CLS] … [SEP], &lt;s&gt; … &lt;/s&gt;). Every prompt has the same length l.
/// </summary>
public static class LabelPrompts
{
    public static int[][] Build(TextTokenizer tokenizer, IReadOnlyList<string> texts, bool wrap)
    {
        var tokens = texts.Select(t => tokenizer.EncodeWithoutSpecialTokens(t)).ToList();
        for (int i = 0; i < texts.Count; i++)
            if (tokens[i].Count == 0) throw new EngineException($"L-Tuning: the label text '{texts[i]}' has no tokens");
        int dot = tokenizer.TokenToId(".") ?? tokenizer.EncodeWithoutSpecialTokens(".").LastOrDefault(-1);
        if (dot < 0) throw new EngineException("L-Tuning: the tokenizer has no '.' token to pad the label prompts with");
        int n = tokens.Max(t => t.Count);
        return tokens.Select(t =>
        {
            var padded = t.Concat(Enumerable.Repeat(dot, n - t.Count)).ToList();
            return (wrap ? tokenizer.Template.Apply(padded, null).Ids : padded).ToArray();
        }).ToArray();
    }
}
