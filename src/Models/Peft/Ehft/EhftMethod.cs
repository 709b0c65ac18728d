using System.Text.Json.Nodes;
using Engine.Autograd;
using Engine.Nn;

namespace Engine.Models.Peft.Ehft;

/// <summary>
/// EH-FT's options: the stage-1 method (bitfit, lora or prefix, with its own options record), stage
/// 1's length (<see cref="Stage1Epochs"/> epochs, or <see cref="Stage1Ratio"/> of the run's
/// steps; default 0.1), stage 1's peak learning rate (null: the paper's for the method: BitFit
/// 1e-3, LoRA 5e-4, prefix 5e-3; stage 2 uses the run's), whether stage 2 keeps the stage-1
/// parameters (<see cref="Reserve"/>), and the head's hidden width (2048).
/// </summary>
public sealed record EhftOptions : MethodOptions
{
    public static readonly string[] Stage1Methods = ["bitfit", "lora", "prefix"];

    public string Stage1 { get; init; } = "lora";
    /// <summary>The stage-1 method's options (null: its defaults).</summary>
    public MethodOptions? Stage1Settings { get; init; }
    public double? Stage1Epochs { get; init; }
    public double? Stage1Ratio { get; init; }
    public double? Stage1LearningRate { get; init; }
    public bool Reserve { get; init; }
    public int HeadHidden { get; init; } = 2048;

    public FineTuningMethod Stage1Method => MethodRegistry.Get(Stage1);
    public MethodOptions EffectiveStage1Settings => Stage1Settings ?? Stage1Method.Defaults;

    /// <summary>The paper's stage-1 learning rates (RoBERTa-large).</summary>
    public double EffectiveStage1LearningRate => Stage1LearningRate ?? Stage1 switch { "bitfit" => 1e-3, "prefix" => 5e-3, _ => 5e-4 };

    public override void Validate()
    {
        if (!Stage1Methods.Contains(Stage1)) throw new EngineException($"train: --ehft-stage1 '{Stage1}': expected one of {string.Join(", ", Stage1Methods)}");
        if (Stage1Epochs is not null && Stage1Ratio is not null) throw new EngineException("train: give --ehft-stage1-epochs or --ehft-stage1-ratio, not both");
        if (Stage1Epochs is { } e && !(e > 0)) throw new EngineException($"train: --ehft-stage1-epochs must be positive, got {e}");
        if (Stage1Ratio is { } r && !(r is > 0 and < 1)) throw new EngineException($"train: --ehft-stage1-ratio must be in (0, 1), got {r}");
        if (Stage1LearningRate is { } lr && !(lr > 0)) throw new EngineException($"train: --ehft-stage1-lr must be positive, got {lr}");
        if (HeadHidden < 1) throw new EngineException($"train: --ehft-head-hidden must be at least 1, got {HeadHidden}");
        if (Stage1Settings is { } s && s.GetType() != Stage1Method.Defaults.GetType())
            throw new EngineException($"train: {s.GetType().Name} are not the options of the stage-1 method {Stage1}");
        EffectiveStage1Settings.Validate();
    }
}

/// <summary>EH-FT's head: dense (D → h) → ReLU → out_proj (h → C), weights N(0, 0.005²), biases 0,
/// on the pooled vector (the family's usual token, [CLS] / the last non-pad token, or the pooling's z).</summary>
public sealed class MlpHead : Module
{
    public const string ModuleName = "ehft_head";
    private readonly Tensor w1, b1, w2, b2;

    public MlpHead(int hidden, int width, int labels, Random rng, DType dtype)
    {
        w1 = Param("dense.weight", Tensor.Randn([width, hidden], rng, dtype, 0.005));
        b1 = Param("dense.bias", Tensor.Zeros([width], dtype));
        w2 = Param("out_proj.weight", Tensor.Randn([labels, width], rng, dtype, 0.005));
        b2 = Param("out_proj.bias", Tensor.Zeros([labels], dtype));
    }

    public Tensor Forward(Tensor z) => Ops.Linear(Ops.Relu(Ops.Linear(z, w1, b1)), w2, b2);
}

/// <summary>Frozen copies of backbone parameters (under their own names), kept in checkpoints so
/// that stage 2 can restore them exactly even after a resume.</summary>
public sealed class LoadedWeights : Module
{
    public const string ModuleName = "ehft_loaded";

    public LoadedWeights(IEnumerable<(string Name, Tensor Value)> weights)
    {
        foreach (var (name, value) in weights) Param(name, Copy(value));
    }

    private static Tensor Copy(Tensor t)
    {
        var c = Tensor.Zeros(t.ShapeArray, t.DType, t.Device);
        Backend.Backends.Copy(t, c);
        return c;
    }

    public IEnumerable<(string Name, Tensor Value)> Weights => NamedParameters();
}

/// <summary>
/// EH-FT (Yang et al., EMNLP 2022): stage 1 trains a fresh MLP head (<see cref="MlpHead"/>) with a
/// parameter-efficient method (bitfit, lora or prefix: the registered methods, installed through
/// the registry); stage 2 puts the backbone back to its loaded weights, drops the stage-1
/// parameters (kept with reserve) and fine-tunes every parameter from the stage-1 head. Both
/// stages run in one training run (<see cref="InstalledMethod.Stages"/>).
/// </summary>
public sealed class EhftMethod : FineTuningMethod
{
    public override string Name => "ehft";
    public override string Description => "two stages: an MLP head with bitfit/lora/prefix, then full fine-tuning from that head";
    public override MethodOptions Defaults { get; } = new EhftOptions();

    public override IReadOnlyList<MethodOption> CliOptions =>
    [
        new("--ehft-stage1", "EH-FT: the stage-1 method, bitfit, lora or prefix (default lora)"),
        new("--ehft-stage1-epochs", "EH-FT: stage 1's length in epochs (default: --ehft-stage1-ratio 0.1)"),
        new("--ehft-stage1-ratio", "EH-FT: stage 1's share of the run's steps (default 0.1)"),
        new("--ehft-stage1-lr", "EH-FT: stage 1's learning rate (default: bitfit 1e-3, lora 5e-4, prefix 5e-3; stage 2 uses --lr)"),
        new("--ehft-reserve", "EH-FT: keep the stage-1 parameters in stage 2", IsFlag: true),
        new("--ehft-head-hidden", "EH-FT: the MLP head's hidden width (default 2048)"),
        .. EhftOptions.Stage1Methods.SelectMany(m => MethodRegistry.Get(m).CliOptions),
    ];

    public override MethodOptions FromCli(OptionValues v)
    {
        var stage1 = v.String("--ehft-stage1") ?? "lora";
        var o = new EhftOptions
        {
            Stage1 = stage1, Stage1Epochs = v.Has("--ehft-stage1-epochs") ? v.Double("--ehft-stage1-epochs", 0) : null,
            Stage1Ratio = v.Has("--ehft-stage1-ratio") ? v.Double("--ehft-stage1-ratio", 0) : null,
            Stage1LearningRate = v.Has("--ehft-stage1-lr") ? v.Double("--ehft-stage1-lr", 0) : null,
            Reserve = v.Flag("--ehft-reserve"), HeadHidden = v.Int("--ehft-head-hidden", 2048),
        };
        if (!EhftOptions.Stage1Methods.Contains(stage1)) return o; // Validate names the bad value
        var method = o.Stage1Method;
        var foreign = EhftOptions.Stage1Methods.Where(m => m != stage1).SelectMany(m => MethodRegistry.Get(m).CliOptions)
            .Where(opt => !method.CliOptions.Any(c => c.Name == opt.Name)).FirstOrDefault(opt => v.Has(opt.Name));
        if (foreign is not null) throw new EngineException($"train: {foreign.Name} is not an option of the EH-FT stage-1 method {stage1}");
        return o with { Stage1Settings = method.FromCli(v) };
    }

    public override MethodOptions FromConfig(JsonNode? s)
    {
        if (s is null) return Defaults;
        var stage1 = s["stage1"]!.GetValue<string>();
        return new EhftOptions
        {
            Stage1 = stage1, Stage1Settings = MethodRegistry.Get(stage1).FromConfig(s["stage1_settings"]),
            Stage1Epochs = s["stage1_epochs"]?.GetValue<double>(), Stage1Ratio = s["stage1_ratio"]?.GetValue<double>(),
            Stage1LearningRate = s["stage1_lr"]?.GetValue<double>(), Reserve = s["reserve"]!.GetValue<bool>(), HeadHidden = s["head_hidden"]!.GetValue<int>(),
        };
    }

    public override InstalledMethod Install(SequenceClassifier model, MethodOptions options, MethodContext context)
    {
        var o = OptionsAs<EhftOptions>(options);
        // 0-based here; config.json's "stage" counts from 1.
        int stage = context.Restoring ? (context.SavedSection?["stage"]?.GetValue<int>() ?? 1) - 1 : 0;
        var savedStage1 = context.SavedSection?["stage1_settings"]?.DeepClone();
        var dtype = model.Parameters().First().DType;
        var head = model.Attach(MlpHead.ModuleName, new MlpHead(model.HiddenSize, o.HeadHidden, model.NumLabels, new Random(context.Rng.Next()), dtype));
        model.Hooks.Head = head.Forward;
        if (stage == 1 && !o.Reserve) return new Installed(model, o, head, null, [], null, stage, savedStage1);

        var before = model.AttachedPaths.ToList();
        var stage1 = o.Stage1Method.Install(model, o.EffectiveStage1Settings, context);
        var stage1Paths = model.AttachedPaths.Except(before).ToList();
        LoadedWeights? loaded = null;
        if (stage == 0)
        {
            // Backbone parameters stage 1 trains (BitFit's biases): their loaded values, for stage 2.
            var own = model.NamedParameters().Where(p => stage1.Trains(p.Name) && !InstalledMethod.TrainsHeadOrPooling(p.Name)
                && !Under(MlpHead.ModuleName, p.Name) && !stage1Paths.Any(path => Under(path, p.Name))).ToList();
            if (own.Count > 0) loaded = model.Attach(LoadedWeights.ModuleName, new LoadedWeights(own.Select(p => (p.Name, p.Param))));
        }
        return new Installed(model, o, head, stage1, stage1Paths, loaded, stage, null);
    }

    private static bool Under(string path, string name) => name.StartsWith(path + ".", StringComparison.Ordinal);

    private sealed class Installed(SequenceClassifier model, EhftOptions o, MlpHead head, InstalledMethod? stage1, List<string> stage1Paths,
        LoadedWeights? loaded, int stage, JsonNode? savedStage1) : InstalledMethod
    {
        private int current = stage;

        public override int Stage => current;

        public override IReadOnlyList<TrainingStage> Stages =>
        [
            new($"stage 1 (MLP head + {o.Stage1})", o.Stage1Epochs, o.Stage1Epochs is null ? o.Stage1Ratio ?? 0.1 : null, o.EffectiveStage1LearningRate),
            new("stage 2 (full fine-tuning from the stage-1 head)"),
        ];

        private bool OwnHead(string name) => Under(MlpHead.ModuleName, name);
        private bool Stage1Parameter(string name) => stage1Paths.Any(p => Under(p, name));

        /// <summary>Stage 1: the MLP head, the stage-1 method's parameters (not the family's head, which the MLP
        /// head replaces), the pooling weights. Stage 2: every parameter the forward uses (not the family's head
        /// nor BERT's pooler, which the MLP head bypasses; not the loaded copies).</summary>
        public override bool Trains(string name)
        {
            if (SequenceClassifier.IsHead(name) || PeftSetup.GroupOf(name) == "pooler" || Under(LoadedWeights.ModuleName, name)) return false;
            if (OwnHead(name)) return true;
            if (current == 0) return stage1!.Trains(name);
            return true;
        }

        public override string? GroupOf(string name) =>
            OwnHead(name) ? "EH-FT head" : Under(LoadedWeights.ModuleName, name) ? "EH-FT loaded copies" : stage1?.GroupOf(name);

        public override JsonObject ConfigSection() => new()
        {
            ["stage1"] = o.Stage1, ["stage1_settings"] = stage1?.ConfigSection() ?? savedStage1?.DeepClone(),
            ["stage1_epochs"] = o.Stage1Epochs, ["stage1_ratio"] = o.Stage1Ratio, ["stage1_lr"] = o.Stage1LearningRate,
            ["reserve"] = o.Reserve, ["head_hidden"] = o.HeadHidden, ["stage"] = current + 1,
        };

        public override void EnterStage(int next)
        {
            if (next != 1 || current != 0) throw new EngineException($"EH-FT: cannot go from stage {current + 1} to stage {next + 1}");
            if (loaded is not null)
            {
                var named = model.NamedParameters().ToDictionary(p => p.Name, p => p.Param);
                using (Tape.NoGrad())
                    foreach (var (name, value) in loaded.Weights) Backend.Backends.Copy(value, named[name]);
                model.Detach(LoadedWeights.ModuleName);
            }
            if (!o.Reserve)
            {
                model.Hooks.Clear();
                model.Hooks.Head = head.Forward;
                foreach (var path in stage1Paths) model.Detach(path);
            }
            current = next;
        }
    }
}
