using System.Text.Json.Nodes;

namespace Engine.Models.Peft.Ia3;

/// <summary>(IA)³'s options: which linear layers get a vector, and which of them are feed-forward
/// layers (scaled on their input).</summary>
public sealed record Ia3Options : MethodOptions
{
    /// <summary>The target layers (<see cref="ModuleMatch"/>: names, "all-linear", "re:PATTERN");
    /// null: the model's key, value and feed-forward output layers (PEFT's defaults: key,value,output.dense
    /// for BERT/RoBERTa, k_proj,v_proj,down_proj for Llama).</summary>
    public string? Targets { get; init; }

    /// <summary>Which targets are feed-forward layers (PEFT's feedforward_modules; each must be a
    /// target); null: the model's feed-forward output layer (output.dense, down_proj).</summary>
    public string? FeedForward { get; init; }

    public string TargetsFor(SequenceClassifier model) => Targets ?? $"{model.Layers.Key},{model.Layers.Value},{model.Layers.FeedForwardOut}";

    public string FeedForwardFor(SequenceClassifier model) => FeedForward ?? model.Layers.FeedForwardOut;

    public override void Validate()
    {
        if (Targets is { } t && t.Trim().Length == 0) throw new EngineException("train: --ia3-targets is empty");
        if (FeedForward is { } f && f.Trim().Length == 0) throw new EngineException("train: --ia3-feedforward is empty");
    }
}

/// <summary>
/// (IA)³ (--method ia3): a learned vector per target layer (<see cref="Ia3Scaling"/>), the head
/// and the pooling weights train. Saved in PEFT's format: adapter_config.json with peft_type IA3,
/// target_modules and feedforward_modules; adapter_model.safetensors with ….ia3_l and the head.
/// </summary>
public sealed class Ia3Method : FineTuningMethod
{
    public override double DefaultLearningRate => 3e-3;
    public override string Name => "ia3";
    public override string Description => "(IA)³: learned scaling vectors on keys, values and the feed-forward input, the head and the pooling weights";
    public override MethodOptions Defaults { get; } = new Ia3Options();

    public override IReadOnlyList<MethodOption> CliOptions { get; } =
    [
        new("--ia3-targets", "(IA)³: layers to scale: comma-separated names, all-linear or re:REGEX (default: key, value and the feed-forward output: key,value,output.dense for BERT, k_proj,v_proj,down_proj for Llama)"),
        new("--ia3-feedforward", "(IA)³: which targets scale their input, as PEFT's feedforward_modules (default: output.dense for BERT, down_proj for Llama)"),
    ];

    public override MethodOptions FromCli(OptionValues v) => new Ia3Options { Targets = v.String("--ia3-targets"), FeedForward = v.String("--ia3-feedforward") };

    public override MethodOptions FromConfig(JsonNode? s) =>
        new Ia3Options { Targets = s?["targets"]?.GetValue<string>(), FeedForward = s?["feedforward"]?.GetValue<string>() };

    public override MethodOptions? FromAdapterConfig(JsonNode c, string path)
    {
        if (c["peft_type"]?.GetValue<string>() != "IA3") return null;
        if (c["fan_in_fan_out"]?.GetValue<bool>() == true) throw new EngineException($"{path}: fan_in_fan_out adapters (GPT-2 Conv1D layers) are not supported");
        return new Ia3Options { Targets = AdapterFiles.Targets(c["target_modules"]), FeedForward = AdapterFiles.Targets(c["feedforward_modules"]) };
    }

    public override InstalledMethod Install(SequenceClassifier model, MethodOptions options, MethodContext context)
    {
        var o = OptionsAs<Ia3Options>(options);
        var targets = ModuleMatch.Select(model, o.TargetsFor(model), Name);
        var feedForward = ModuleMatch.Matcher(o.FeedForwardFor(model), Name);
        // PEFT's rule: with both given as names, the feed-forward names are a subset of the target names.
        string[]? Names(string t) => t.StartsWith("re:", StringComparison.Ordinal) || t.Trim() == ModuleMatch.AllLinear ? null
            : t.Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries);
        if (Names(o.TargetsFor(model)) is { } targetNames && Names(o.FeedForwardFor(model)) is { } ffNames && ffNames.Except(targetNames).FirstOrDefault() is { } stray)
            throw new EngineException($"ia3: feed-forward modules must be among the targets (as in PEFT); '{stray}' is not in '{o.TargetsFor(model)}'");
        foreach (var (path, layer) in targets)
        {
            var scaling = model.Attach(path, new Ia3Scaling(layer, feedForward(path)));
            model.Hooks.WrapLinear(layer, scaling.Forward);
        }
        return new Installed(model, o);
    }

    /// <summary>An (IA)³ vector (….ia3_l).</summary>
    public static bool IsVector(string parameterName) => parameterName.EndsWith("." + Ia3Scaling.ParameterName, StringComparison.Ordinal);

    /// <summary>A targets string as PEFT's config holds it: a list of names, a regular expression
    /// (a string, for "re:…"), or "all-linear".</summary>
    private static JsonNode ToPeft(string targets) =>
        targets.StartsWith("re:", StringComparison.Ordinal) ? JsonValue.Create(targets[3..])
        : targets.Trim() == ModuleMatch.AllLinear ? JsonValue.Create(ModuleMatch.AllLinear)
        : new JsonArray(targets.Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries).Select(n => (JsonNode?)JsonValue.Create(n)).ToArray());

    private sealed class Installed(SequenceClassifier model, Ia3Options o) : InstalledMethod
    {
        public override bool Trains(string parameterName) => TrainsHeadOrPooling(parameterName) || IsVector(parameterName);

        public override string? GroupOf(string parameterName) => IsVector(parameterName) ? "(IA)³ vectors" : null;

        public override JsonObject ConfigSection() => new() { ["targets"] = o.TargetsFor(model), ["feedforward"] = o.FeedForwardFor(model) };

        public override JsonObject AdapterConfig(string baseModelPath) => new()
        {
            ["peft_type"] = "IA3", ["task_type"] = "SEQ_CLS", ["target_modules"] = ToPeft(o.TargetsFor(model)),
            ["feedforward_modules"] = ToPeft(o.FeedForwardFor(model)), ["base_model_name_or_path"] = baseModelPath,
            ["modules_to_save"] = AdapterFiles.ModulesToSave(), ["fan_in_fan_out"] = false, ["init_ia3_weights"] = true,
            ["inference_mode"] = true, ["revision"] = null,
        };

        public override bool InAdapter(string parameterName) => IsVector(parameterName);
    }
}
