using System.Text.Json.Nodes;
using System.Text.RegularExpressions;
using Engine.Models.Peft.BitFit;
using Engine.Models.Peft.Lora;

namespace Engine.Models.Peft.Spafit;

/// <summary>
/// SPAFIT's options: the two thresholds N1 ≤ N2 (blocks counted from 1; null: ⌊L/3⌋ and
/// ⌊2L/3⌋ of the model's L blocks) and the LoRA settings of the top stratum (LoRA's options and
/// --lora-* flags; default r 8, α 16 on the attention query and value).
/// </summary>
public sealed record SpafitOptions : MethodOptions
{
    public int? N1 { get; init; }
    public int? N2 { get; init; }
    public LoraOptions Lora { get; init; } = new();

    public override void Validate()
    {
        if (N1 is < 0) throw new EngineException($"train: --n1 must be at least 0, got {N1}");
        if (N2 is < 0) throw new EngineException($"train: --n2 must be at least 0, got {N2}");
        if (N1 is { } n1 && N2 is { } n2 && n1 > n2) throw new EngineException($"train: --n1 {n1} is above --n2 {n2} (SPAFIT needs N1 ≤ N2)");
        Lora.Validate();
    }

    /// <summary>(N1, N2) on a model of <paramref name="blocks"/> blocks; beyond the depth, or N1 &gt; N2, is an error.</summary>
    public (int N1, int N2) For(int blocks)
    {
        int n1 = N1 ?? blocks / 3, n2 = N2 ?? 2 * blocks / 3;
        if (n2 > blocks) throw new EngineException($"train: --n2 {n2} is beyond the model's depth ({blocks} blocks)");
        if (n1 > blocks) throw new EngineException($"train: --n1 {n1} is beyond the model's depth ({blocks} blocks)");
        if (n1 > n2) throw new EngineException($"train: N1 {n1} is above N2 {n2} on this {blocks}-block model (SPAFIT needs N1 ≤ N2; give --n2)");
        return (n1, n2);
    }
}

/// <summary>
/// SPAFIT (Arora &amp; Wang, stratified progressive adaptation): the blocks fall into three strata,
/// 1..N1 frozen, N1+1..N2 BitFit (their bias vectors), N2+1..L LoRA on the attention weight
/// matrices (LoRA itself, installed through the registry on those blocks' target layers) plus
/// their biases; the embeddings and BERT's pooler stay frozen; the head and the pooling weights
/// train. The parameter table shows each stratum as a row.
/// </summary>
public sealed class SpafitMethod : FineTuningMethod
{
    public override double DefaultLearningRate => 5e-4;
    public override string Name => "spafit";
    public override string Description => "blocks 1..N1 frozen, N1+1..N2 biases, N2+1..L LoRA plus biases, the head and the pooling weights";
    public override MethodOptions Defaults { get; } = new SpafitOptions();

    public override IReadOnlyList<MethodOption> CliOptions { get; } =
    [
        new("--n1", "SPAFIT: the last frozen block (default floor(L/3))"),
        new("--n2", "SPAFIT: the last BitFit block; LoRA and biases above it (default floor(2L/3))"),
        .. LoraOptions.CliOptions,
    ];

    public override MethodOptions FromCli(OptionValues v) => new SpafitOptions { N1 = v.Int("--n1"), N2 = v.Int("--n2"), Lora = LoraOptions.FromCli(v) };

    public override MethodOptions FromConfig(JsonNode? s) => s is null ? Defaults : new SpafitOptions
    {
        N1 = s["n1"]!.GetValue<int>(), N2 = s["n2"]!.GetValue<int>(), Lora = LoraOptions.FromConfig(s["lora"]),
    };

    public override InstalledMethod Install(SequenceClassifier model, MethodOptions options, MethodContext context)
    {
        var o = OptionsAs<SpafitOptions>(options);
        var (n1, n2) = o.For(model.BlockCount);
        // LoRA on the top stratum's target layers: LoRA itself, given those layers' full paths as targets.
        var top = ModuleMatch.Select(model, o.Lora.TargetsFor(model), Name).Where(l => BlockOf(l.Path) >= n2).Select(l => l.Path).ToList();
        var lora = top.Count == 0 ? null
            : MethodRegistry.Get("lora").Install(model, o.Lora with { Targets = string.Join(",", top) }, context);
        return new Installed(model, o, n1, n2, lora);
    }

    private static readonly Regex BlockIndex = new(@"(?:^|\.)layers?\.(\d+)\.", RegexOptions.Compiled);

    /// <summary>The 0-based block of a parameter or module path ("….layer.3.…", "model.layers.3.…"), −1 outside the blocks.</summary>
    public static int BlockOf(string path) => BlockIndex.Match(path) is { Success: true } m ? int.Parse(m.Groups[1].Value) : -1;

    private sealed class Installed(SequenceClassifier model, SpafitOptions o, int n1, int n2, InstalledMethod? lora) : InstalledMethod
    {
        /// <summary>The 1-based stratum of a block parameter (0 outside the blocks).</summary>
        private int Stratum(string name) => BlockOf(name) switch { < 0 => 0, var b when b < n1 => 1, var b when b < n2 => 2, _ => 3 };

        public override bool Trains(string name) =>
            TrainsHeadOrPooling(name) || (lora?.Trains(name) ?? false) || (BitFitMethod.IsBias(name) && Stratum(name) >= 2);

        public override string? GroupOf(string name) => Stratum(name) switch
        {
            1 => $"blocks 1–{n1} frozen",
            2 => $"blocks {n1 + 1}–{n2} BitFit",
            3 => $"blocks {n2 + 1}–{model.BlockCount} LoRA",
            _ => null,
        };

        public override JsonObject ConfigSection() => new() { ["n1"] = n1, ["n2"] = n2, ["lora"] = o.Lora.ToConfig(model) };
    }
}
