using System.Text.Json.Nodes;
using Engine.Nn;

namespace Engine.Models.Peft.Lora;

/// <summary>
/// LoRA: W x + (α/r) · B A x on the target linear layers (α/√r with rsLoRA), A [r, in] drawn as
/// PEFT draws it (Kaiming-uniform with a = √5: U(−1/√in, 1/√in)), B [out, r] zero, dropout on
/// the adapter's input. Defaults r = 8, α = 16, dropout 0.1 (the LoRA paper's GLUE settings).
/// </summary>
public sealed record LoraOptions : MethodOptions
{
    public int Rank { get; init; } = 8;
    public double Alpha { get; init; } = 16;
    public double Dropout { get; init; } = 0.1;

    /// <summary>Which linear layers (<see cref="ModuleMatch"/>): comma-separated module names,
    /// "all-linear", or "re:PATTERN"; null: the model's attention query and value projections
    /// (query,value for BERT, q_proj,v_proj for Llama).</summary>
    public string? Targets { get; init; }

    /// <summary>rsLoRA: scale α/√r instead of α/r.</summary>
    public bool UseRsLora { get; init; }

    public double Scale => UseRsLora ? Alpha / Math.Sqrt(Rank) : Alpha / Rank;

    /// <summary>The targets string in effect on <paramref name="model"/>.</summary>
    public string TargetsFor(SequenceClassifier model) => Targets ?? $"{model.Layers.Query},{model.Layers.Value}";

    public override void Validate()
    {
        if (Rank < 1) throw new EngineException($"train: LoRA rank must be at least 1, got {Rank}");
        if (Dropout is < 0 or >= 1) throw new EngineException($"train: LoRA dropout must be in [0, 1), got {Dropout}");
        if (Targets is { } t && t.Trim().Length == 0) throw new EngineException("train: --lora-targets is empty");
    }

    /// <summary>The CLI options of LoRA's settings (shared by methods built on LoRA).</summary>
    public static readonly IReadOnlyList<MethodOption> CliOptions =
    [
        new("--lora-r", "LoRA rank r (default 8)"),
        new("--lora-alpha", "LoRA alpha; scale alpha/r (default 16)"),
        new("--lora-dropout", "dropout on the LoRA input (default 0.1)"),
        new("--lora-targets", "modules to adapt: comma-separated names (query,value), all-linear, or re:REGEX (default: the attention query and value)"),
        new("--rslora", "rsLoRA scaling alpha/sqrt(r)", IsFlag: true),
    ];

    public static LoraOptions FromCli(OptionValues v) => new()
    {
        Rank = v.Int("--lora-r", 8), Alpha = v.Double("--lora-alpha", 16), Dropout = v.Double("--lora-dropout", 0.1),
        Targets = v.String("--lora-targets"), UseRsLora = v.Flag("--rslora"),
    };

    /// <summary>The "engine_peft" section's settings (r, lora_alpha, lora_dropout, targets, use_rslora).</summary>
    public JsonObject ToConfig(SequenceClassifier model) => new()
    {
        ["r"] = Rank, ["lora_alpha"] = Alpha, ["lora_dropout"] = Dropout, ["targets"] = TargetsFor(model), ["use_rslora"] = UseRsLora,
    };

    public static LoraOptions FromConfig(JsonNode? s) => s is null ? new() : new()
    {
        Rank = s["r"]!.GetValue<int>(), Alpha = s["lora_alpha"]!.GetValue<double>(), Dropout = s["lora_dropout"]!.GetValue<double>(),
        Targets = s["targets"]?.GetValue<string>(), UseRsLora = s["use_rslora"]?.GetValue<bool>() ?? false,
    };

    /// <summary>adapter_config.json's LoRA settings as PEFT writes them (peft_type LORA), for the adapted layers <paramref name="paths"/>.</summary>
    public JsonObject AdapterConfig(SequenceClassifier model, IReadOnlyCollection<string> paths, string baseModelPath, bool useDora) => new()
    {
        ["peft_type"] = "LORA", ["task_type"] = "SEQ_CLS", ["r"] = Rank,
        ["lora_alpha"] = Alpha == Math.Floor(Alpha) ? JsonValue.Create((long)Alpha) : JsonValue.Create(Alpha),
        ["lora_dropout"] = Dropout, ["target_modules"] = AdapterFiles.TargetsJson(model, paths), ["base_model_name_or_path"] = baseModelPath,
        ["modules_to_save"] = AdapterFiles.ModulesToSave(),
        ["bias"] = "none", ["use_rslora"] = UseRsLora, ["fan_in_fan_out"] = false, ["inference_mode"] = true,
        ["init_lora_weights"] = true, ["use_dora"] = useDora, ["layers_to_transform"] = null, ["layers_pattern"] = null,
        ["rank_pattern"] = new JsonObject(), ["alpha_pattern"] = new JsonObject(), ["revision"] = null,
    };

    /// <summary>A PEFT LORA adapter_config.json with use_dora as <paramref name="useDora"/> → options; null for
    /// another peft_type or the other use_dora. A string target_modules is a regular expression
    /// over whole module paths, as in PEFT, unless it is "all-linear".</summary>
    public static LoraOptions? FromAdapterConfig(JsonNode c, string path, bool useDora)
    {
        if (c["peft_type"]?.GetValue<string>() != "LORA" || (c["use_dora"]?.GetValue<bool>() ?? false) != useDora) return null;
        if (c["fan_in_fan_out"]?.GetValue<bool>() == true) throw new EngineException($"{path}: fan_in_fan_out adapters (GPT-2 Conv1D layers) are not supported");
        var bias = c["bias"]?.GetValue<string>() ?? "none";
        if (bias != "none") throw new EngineException($"{path}: bias '{bias}' is not supported (only \"none\")");
        return new LoraOptions
        {
            Rank = c["r"]!.GetValue<int>(), Alpha = c["lora_alpha"]!.GetValue<double>(), Dropout = c["lora_dropout"]?.GetValue<double>() ?? 0,
            Targets = AdapterFiles.Targets(c["target_modules"]), UseRsLora = c["use_rslora"]?.GetValue<bool>() ?? false,
        };
    }
}

/// <summary>
/// A method of the LoRA family: LoRA's options and CLI options (<see cref="LoraOptions"/>), one
/// <typeparamref name="T"/> on every target layer (<see cref="ModuleMatch"/>), hooked in with
/// <see cref="ModelHooks.WrapLinear"/>; PEFT's adapter files (peft_type LORA, use_dora as the
/// method says); merging for eval/predict and export. A checkpoint saved merged ("merged": true)
/// restores without adapters: their product is in its weights.
/// </summary>
public abstract class LowRankMethod<T> : FineTuningMethod where T : LowRankAdapter
{
    public override double DefaultLearningRate => 5e-4;
    public override MethodOptions Defaults { get; } = new LoraOptions();
    public override IReadOnlyList<MethodOption> CliOptions => LoraOptions.CliOptions;
    public override MethodOptions FromCli(OptionValues given) => LoraOptions.FromCli(given);
    public override MethodOptions FromConfig(JsonNode? section) => LoraOptions.FromConfig(section);
    public override MethodOptions? FromAdapterConfig(JsonNode config, string path) => LoraOptions.FromAdapterConfig(config, path, UseDora);

    /// <summary>adapter_config.json's use_dora for this method.</summary>
    protected abstract bool UseDora { get; }

    /// <summary>The parameter-table row of the adapters ("LoRA adapters").</summary>
    protected abstract string Group { get; }

    protected abstract T NewAdapter(Linear layer, LoraOptions o, Random rng, DropoutSeeds seeds);

    /// <summary>Whether a parameter is one of the adapters' (lora_A / lora_B, and the method's own).</summary>
    protected virtual bool Owns(string parameterName) => LoraMethod.IsAdapterParameter(parameterName);

    public override InstalledMethod Install(SequenceClassifier model, MethodOptions options, MethodContext context)
    {
        var o = OptionsAs<LoraOptions>(options);
        bool merged = context.Restoring && (context.SavedSection?["merged"]?.GetValue<bool>() ?? false);
        var adapters = new Dictionary<string, T>();
        if (!merged)
        {
            var rng = new Random(context.Rng.Next());
            foreach (var (path, layer) in ModuleMatch.Select(model, o.TargetsFor(model), Name))
            {
                var adapter = model.Attach(path, NewAdapter(layer, o, rng, model.Seeds));
                model.Hooks.WrapLinear(layer, adapter.Forward);
                adapters[path] = adapter;
            }
        }
        return new Installed(this, model, o, adapters, merged);
    }

    /// <summary>The adapters of a model of this method by module path (empty for another method or a merged load).</summary>
    public static IReadOnlyDictionary<string, T> Adapters(SequenceClassifier model) =>
        model.Peft?.Method is Installed i ? i.Adapters : new Dictionary<string, T>();

    private sealed class Installed(LowRankMethod<T> method, SequenceClassifier model, LoraOptions o, IReadOnlyDictionary<string, T> adapters, bool loadedMerged)
        : InstalledMethod
    {
        public IReadOnlyDictionary<string, T> Adapters => adapters;

        private bool Merged => loadedMerged || adapters.Values.Any(a => a.Merged);

        public override bool Trains(string parameterName) => TrainsHeadOrPooling(parameterName) || method.Owns(parameterName);

        /// <summary>Merged adapters are not saved: their product is in the weights.</summary>
        public override bool Saves(string parameterName) => !(Merged && method.Owns(parameterName));

        public override string? GroupOf(string parameterName) => method.Owns(parameterName) ? method.Group : null;

        public override JsonObject ConfigSection()
        {
            var section = o.ToConfig(model);
            section["merged"] = Merged;
            return section;
        }

        public override JsonObject? AdapterConfig(string baseModelPath) =>
            adapters.Count == 0 || Merged ? null : o.AdapterConfig(model, adapters.Keys.ToList(), baseModelPath, method.UseDora);

        public override bool InAdapter(string parameterName) => method.Owns(parameterName);

        public override bool CanMerge => adapters.Count > 0;

        public override void Merge()
        {
            foreach (var a in adapters.Values) a.Merge();
        }

        public override void Unmerge()
        {
            foreach (var a in adapters.Values) a.Unmerge();
        }
    }
}

/// <summary>LoRA: y = W x + b + s · B A dropout(x) on the target linear layers (<see cref="LoraAdapter"/>).</summary>
public sealed class LoraMethod : LowRankMethod<LoraAdapter>
{
    public override string Name => "lora";
    public override string Description => "low-rank adapters on the target linear layers, the head and the pooling weights";
    protected override bool UseDora => false;
    protected override string Group => "LoRA adapters";
    protected override LoraAdapter NewAdapter(Linear layer, LoraOptions o, Random rng, DropoutSeeds seeds) => new(layer, o, rng, seeds);

    /// <summary>A LoRA parameter (lora_A / lora_B).</summary>
    public static bool IsAdapterParameter(string name) => name.Contains(".lora_A.", StringComparison.Ordinal) || name.Contains(".lora_B.", StringComparison.Ordinal);
}
