using System.Globalization;
using System.Text.Json;
using System.Text.Json.Nodes;
using System.Text.RegularExpressions;
using Engine.Models.Analysis;

namespace Engine.Models.Peft.Select;

/// <summary>
/// Layer selection's options: the head reads block <see cref="HeadLayer"/> (1-based; the blocks
/// above it never run) and the <see cref="TuneLayers"/> blocks ending there train with the head.
/// With <see cref="Auto"/> the head layer comes from a ν curve (<see cref="VariabilityFile"/>, the
/// JSON of `engine analyze variability --out`) by <see cref="Variability.AutoHeadLayer"/>.
/// </summary>
public sealed record SelectOptions : MethodOptions
{
    /// <summary>K, the block whose output the head reads (1 … L); null: the last block (or the automatic rule).</summary>
    public int? HeadLayer { get; init; }

    /// <summary>Choose K as the first block whose ν is within <see cref="Tolerance"/> of the lowest.</summary>
    public bool Auto { get; init; }

    /// <summary>{"nu": [ν_0, …, ν_L]} for <see cref="Auto"/>.</summary>
    public string? VariabilityFile { get; init; }

    /// <summary>The automatic rule's tolerance: K = the smallest l ≥ 1 with ν_l ≤ (1 + tolerance)·min ν.</summary>
    public double Tolerance { get; init; } = Variability.DefaultTolerance;

    /// <summary>N, the blocks K − N + 1 … K that train (0: the head alone); with N = K the embeddings
    /// train too. Null: 2, or K when K is 1.</summary>
    public int? TuneLayers { get; init; }

    /// <summary>Keep the embeddings frozen even when N = K (an ablation: the method's rule trains them
    /// then; this separates what the embeddings add from what the block adds).</summary>
    public bool FreezeEmbeddings { get; init; }

    /// <summary>N when <see cref="TuneLayers"/> is not given.</summary>
    public const int DefaultTuneLayers = 2;

    public override void Validate()
    {
        if (HeadLayer is < 1) throw new EngineException($"train: --head-layer must be at least 1 (or auto), got {HeadLayer}");
        if (Auto && HeadLayer is not null) throw new EngineException("train: give --head-layer K or --head-layer auto, not both");
        if (Auto && VariabilityFile is null)
            throw new EngineException("train: --head-layer auto needs --variability FILE.json (written by engine analyze variability --out)");
        if (!Auto && VariabilityFile is not null) throw new EngineException("train: --variability is read only with --head-layer auto");
        if (!(Tolerance >= 0)) throw new EngineException($"train: --variability-tolerance must be at least 0, got {Tolerance}");
        if (TuneLayers is < 0) throw new EngineException($"train: --tune-layers must be at least 0, got {TuneLayers}");
    }
}

/// <summary>
/// Layer selection guided by hidden-state variability (Xie et al., Findings of EMNLP 2022): the
/// classifier is attached at block K and the blocks above K are dropped (through
/// <see cref="ModelHooks.BlockLimit"/>: they never run, and keep their loaded values); only the N
/// blocks K − N + 1 … K train, with the head (and what lies between block K and the head: BERT's
/// pooler, the Llama family's final norm) and the depth-wise pooling weights; the embeddings train
/// only when N = K. docs/methods.md states every choice.
/// </summary>
public sealed class SelectMethod : FineTuningMethod
{
    public override string Name => "select";
    public override string Description => "the head at block K (blocks above it dropped) and the N blocks ending at K";
    public override MethodOptions Defaults { get; } = new SelectOptions();

    public override IReadOnlyList<MethodOption> CliOptions { get; } =
    [
        new("--head-layer", "select: the block K whose output the head reads (1..L; blocks above it are dropped), or auto (default: the last)"),
        new("--tune-layers", "select: train the N blocks ending at K (0: the head alone; N = K also trains the embeddings) (default 2, or K when K is 1)"),
        new("--variability", "select: with --head-layer auto, the {\"nu\": [...]} file of engine analyze variability --out"),
        new("--variability-tolerance", "select: --head-layer auto takes the first block with nu <= (1 + tolerance) * min nu (default 0.05)"),
        new("--freeze-embeddings", "select: keep the embeddings frozen even when --tune-layers equals the head layer (an ablation of the method's rule)", IsFlag: true),
    ];

    public override MethodOptions FromCli(OptionValues v)
    {
        bool auto = string.Equals(v.String("--head-layer"), "auto", StringComparison.OrdinalIgnoreCase);
        return new SelectOptions
        {
            HeadLayer = auto ? null : v.Int("--head-layer"), Auto = auto, VariabilityFile = v.String("--variability"),
            Tolerance = v.Double("--variability-tolerance", Variability.DefaultTolerance), TuneLayers = v.Int("--tune-layers"),
            FreezeEmbeddings = v.Flag("--freeze-embeddings"),
        };
    }

    /// <summary>A saved model holds the head layer it was trained with (however it was chosen).</summary>
    public override MethodOptions FromConfig(JsonNode? s) =>
        new SelectOptions { HeadLayer = s?["head_layer"]?.GetValue<int>(), TuneLayers = s?["tune_layers"]?.GetValue<int>(),
                            FreezeEmbeddings = s?["freeze_embeddings"]?.GetValue<bool>() ?? false };

    public override InstalledMethod Install(SequenceClassifier model, MethodOptions options, MethodContext context)
    {
        var o = OptionsAs<SelectOptions>(options);
        int blocks = model.BlockCount;
        int k = o.Auto ? Variability.AutoHeadLayer(ReadNu(o.VariabilityFile!, blocks), o.Tolerance) : o.HeadLayer ?? blocks;
        if (k > blocks) throw new EngineException($"train: --head-layer {k} is beyond the model's {blocks} blocks");
        int n = o.TuneLayers ?? Math.Min(SelectOptions.DefaultTuneLayers, k);
        if (n > k) throw new EngineException($"train: --tune-layers {n} is more than the {k} blocks up to the head layer {k}");
        if (model.Pooling is { Weights: not null } pooling && pooling.LayerCount - (pooling.Spec.WithEmbeddings ? 1 : 0) != k)
            throw new EngineException($"train: the model's depth-wise pooling mixes {pooling.LayerCount} layers; with the head at block {k} it cannot stay (train from a model without it)");
        model.Hooks.BlockLimit = k;
        var chosenBy = o.Auto ? new JsonObject { ["rule"] = "auto", ["tolerance"] = o.Tolerance, ["variability"] = Path.GetFullPath(o.VariabilityFile!) }
            : context.SavedSection?["chosen_by"] as JsonObject; // a restored model keeps the record
        return new Installed(k, n, blocks, chosenBy, o.FreezeEmbeddings);
    }

    /// <summary>ν_0 … ν_L from an `engine analyze variability --out` file, checked against the model's depth.</summary>
    private static double[] ReadNu(string path, int blocks)
    {
        if (!File.Exists(path)) throw new EngineException($"{path}: no such file (--variability)");
        double[] nu;
        try
        {
            var array = JsonNode.Parse(File.ReadAllText(path))?["nu"]?.AsArray() ?? throw new FormatException("no \"nu\" array");
            nu = array.Select(n => n is null ? double.NaN : n.GetValue<double>()).ToArray();
        }
        catch (Exception e) when (e is JsonException or FormatException or InvalidOperationException)
        {
            throw new EngineException($"{path}: not a variability file ({e.Message}); expected {{\"nu\": [ν_0, …, ν_L]}} from engine analyze variability --out");
        }
        if (nu.Length != blocks + 1)
            throw new EngineException($"{path}: {nu.Length} ν values, but the model has {blocks} blocks ({blocks + 1} values: the embeddings and each block); was it computed on another model?");
        return nu;
    }

    /// <summary>The 0-based block index of a backbone parameter ("bert.encoder.layer.3.…", "model.layers.3.…"), or null.</summary>
    public static int? BlockOf(string parameterName)
    {
        var m = BlockName.Match(parameterName);
        return m.Success ? int.Parse(m.Groups[1].Value, CultureInfo.InvariantCulture) : null;
    }

    private static readonly Regex BlockName = new(@"(?:^|\.)(?:encoder\.layer|layers)\.(\d+)\.", RegexOptions.CultureInvariant);

    /// <summary>K and N resolved on a model of L blocks (with how K was chosen, for config.json).</summary>
    private sealed class Installed(int headLayer, int tuneLayers, int blocks, JsonObject? chosenBy, bool freezeEmbeddings) : InstalledMethod
    {
        private int FirstTuned => headLayer - tuneLayers; // 0-based index of block K − N + 1

        public override bool Trains(string parameterName)
        {
            if (TrainsHeadOrPooling(parameterName)) return true;
            if (BlockOf(parameterName) is int i) return i >= FirstTuned && i < headLayer;
            if (PeftSetup.GroupOf(parameterName) == "embeddings") return tuneLayers == headLayer && !freezeEmbeddings;
            return true; // between block K and the head: BERT's pooler, the Llama family's final norm
        }

        /// <summary>The blocks get rows by their part: frozen below, tuned, dropped above (1-based numbers).</summary>
        public override string? GroupOf(string parameterName) => BlockOf(parameterName) switch
        {
            int i when i < FirstTuned => Blocks(1, FirstTuned, "frozen"),
            int i when i < headLayer => Blocks(FirstTuned + 1, headLayer, "tuned"),
            int => Blocks(headLayer + 1, blocks, "dropped"),
            null => null,
        };

        private static string Blocks(int first, int last, string what) => first == last ? $"block {first} {what}" : $"blocks {first}-{last} {what}";

        public override JsonObject ConfigSection()
        {
            var section = new JsonObject { ["head_layer"] = headLayer, ["tune_layers"] = tuneLayers };
            if (freezeEmbeddings) section["freeze_embeddings"] = true;
            if (chosenBy is not null) section["chosen_by"] = chosenBy.DeepClone();
            return section;
        }
    }
}
