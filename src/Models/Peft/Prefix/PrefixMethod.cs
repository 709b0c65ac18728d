using System.Text.Json.Nodes;

namespace Engine.Models.Peft.Prefix;

/// <summary>Prefix tuning's options: p virtual key/value positions per layer, and the optional MLP
/// reparameterisation (PEFT's prefix_projection with encoder_hidden_size).</summary>
public sealed record PrefixOptions : MethodOptions
{
    public int Length { get; init; } = 20;

    /// <summary>Hidden size of the MLP reparameterisation used during training; null: the prefixes are trained directly.</summary>
    public int? Projection { get; init; }

    public override void Validate()
    {
        if (Length < 1) throw new EngineException($"train: prefix length must be at least 1, got {Length}");
        if (Projection is < 1) throw new EngineException($"train: prefix projection size must be at least 1, got {Projection}");
    }
}

/// <summary>Prefix tuning (P-tuning v2): per-layer key/value prefixes through the model's
/// <see cref="ModelHooks.KeyValuePrefixes"/> hook, from a <see cref="PrefixEncoder"/>.</summary>
public sealed class PrefixMethod : FineTuningMethod
{
    public override double DefaultLearningRate => 5e-3;
    public override string Name => "prefix";
    public override string Description => "per-layer key/value prefixes, the head and the pooling weights";
    public override MethodOptions Defaults { get; } = new PrefixOptions();

    public override IReadOnlyList<MethodOption> CliOptions { get; } =
    [
        new("--prefix-length", "prefix tuning: virtual key/value positions per layer (default 20)"),
        new("--prefix-projection", "prefix tuning: reparameterise through an MLP with this hidden size"),
    ];

    public override MethodOptions FromCli(OptionValues v) => new PrefixOptions { Length = v.Int("--prefix-length", 20), Projection = v.Int("--prefix-projection") };

    public override MethodOptions FromConfig(JsonNode? s) =>
        new PrefixOptions { Length = s?["length"]?.GetValue<int>() ?? 20, Projection = s?["projection"]?.GetValue<int?>() };

    public override InstalledMethod Install(SequenceClassifier model, MethodOptions options, MethodContext context)
    {
        var o = OptionsAs<PrefixOptions>(options);
        var dtype = model.Parameters().First().DType;
        var encoder = model.Attach(PrefixEncoder.ModuleName,
            new PrefixEncoder(o.Length, model.BlockCount, model.KeyValueWidth, model.HiddenSize, o.Projection, context.Rng, dtype));
        model.Hooks.KeyValuePrefixes = encoder.Prefixes;
        return new Installed(o);
    }

    private sealed class Installed(PrefixOptions o) : InstalledMethod
    {
        public override bool Trains(string parameterName) => TrainsHeadOrPooling(parameterName) || Under(PrefixEncoder.ModuleName, parameterName);
        public override string? GroupOf(string parameterName) => Under(PrefixEncoder.ModuleName, parameterName) ? "prefix" : null;
        public override JsonObject ConfigSection() => new() { ["length"] = o.Length, ["projection"] = o.Projection };
    }
}
