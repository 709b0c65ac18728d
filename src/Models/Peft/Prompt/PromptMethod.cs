using System.Text.Json.Nodes;

namespace Engine.Models.Peft.Prompt;

/// <summary>Prompt tuning's options: p trainable input embeddings, initialised from a text's
/// token embeddings (repeated to fill p) or, by default, from p random vocabulary tokens.</summary>
public sealed record PromptOptions : MethodOptions
{
    public int Length { get; init; } = 20;

    /// <summary>The initialisation text (tokenised without special tokens); null: random vocabulary tokens.</summary>
    public string? InitText { get; init; }

    public override void Validate()
    {
        if (Length < 1) throw new EngineException($"train: prompt length must be at least 1, got {Length}");
    }
}

/// <summary>Prompt tuning: trainable embeddings through the model's <see cref="ModelHooks.VirtualTokens"/> hook.</summary>
public sealed class PromptMethod : FineTuningMethod
{
    public override double DefaultLearningRate => 1e-2;
    public override string Name => "prompt";
    public override string Description => "trainable input embeddings, the head and the pooling weights";
    public override MethodOptions Defaults { get; } = new PromptOptions();

    public override IReadOnlyList<MethodOption> CliOptions { get; } =
    [
        new("--prompt-length", "prompt tuning: trainable input embeddings (default 20)"),
        new("--prompt-init", "prompt tuning: initialise from this text's token embeddings (default: random vocabulary tokens)"),
    ];

    public override MethodOptions FromCli(OptionValues v) => new PromptOptions { Length = v.Int("--prompt-length", 20), InitText = v.String("--prompt-init") };

    public override MethodOptions FromConfig(JsonNode? s) => new PromptOptions { Length = s?["length"]?.GetValue<int>() ?? 20 };

    public override InstalledMethod Install(SequenceClassifier model, MethodOptions options, MethodContext context)
    {
        var o = OptionsAs<PromptOptions>(options);
        IReadOnlyList<int>? tokens = null;
        if (o.InitText is { } text && !context.Restoring)
        {
            if (context.Tokenizer is null) throw new EngineException("prompt: initialising from a text needs the model's tokenizer");
            tokens = context.Tokenizer.EncodeWithoutSpecialTokens(text);
            if (tokens.Count == 0) throw new EngineException($"prompt: the initialisation text '{text}' has no tokens");
        }
        var prompt = model.Attach(PromptEmbedding.ModuleName, new PromptEmbedding(model.WordEmbeddings, o.Length, tokens, context.Rng));
        model.Hooks.VirtualTokens = prompt.Forward;
        return new Installed(o);
    }

    private sealed class Installed(PromptOptions o) : InstalledMethod
    {
        public override bool Trains(string parameterName) => TrainsHeadOrPooling(parameterName) || Under(PromptEmbedding.ModuleName, parameterName);
        public override string? GroupOf(string parameterName) => Under(PromptEmbedding.ModuleName, parameterName) ? "prompt" : null;
        public override JsonObject ConfigSection() => new() { ["length"] = o.Length };
    }
}
