namespace Engine.Models.Peft;

/// <summary>
/// Which parameters a run trains and how the sentence vector is pooled. Defaults: full
/// fine-tuning with the model's usual pooling. Every field is a documented option of
/// `engine train` (docs/peft.md).
/// </summary>
public sealed record PeftOptions
{
    public const string Full = "full", Head = "head", Lora = "lora", BitFit = "bitfit", Prefix = "prefix", Prompt = "prompt";
    public static readonly string[] Methods = [Full, Head, Lora, BitFit, Prefix, Prompt];

    /// <summary>full, head, lora, bitfit, prefix or prompt.</summary>
    public string Method { get; init; } = Full;

    /// <summary>cls, mean, last, or depthwise[:raw][:with-embeddings][:cls|:mean|:last]; null:
    /// the model's usual pooling ([CLS] for encoders, the last non-pad token for decoders).</summary>
    public string? Pooling { get; init; }

    public LoraOptions LoraSettings { get; init; } = new();

    /// <summary>Prefix tuning: virtual key/value positions per layer.</summary>
    public int PrefixLength { get; init; } = 20;

    /// <summary>Prefix tuning: hidden size of the MLP reparameterisation used during training
    /// (PEFT's prefix_projection with encoder_hidden_size); null: the prefixes are trained directly.</summary>
    public int? PrefixProjection { get; init; }

    /// <summary>Prompt tuning: trainable input embeddings.</summary>
    public int PromptLength { get; init; } = 20;

    /// <summary>Prompt tuning: a text whose token embeddings (repeated to fill the length)
    /// initialise the prompt; null: embeddings of randomly drawn vocabulary tokens.</summary>
    public string? PromptInitText { get; init; }

    /// <summary>True when nothing is asked beyond the defaults (full fine-tuning, usual pooling).</summary>
    public bool IsDefault => Method == Full && Pooling is null;

    public void Validate()
    {
        if (!Methods.Contains(Method)) throw new EngineException($"train: unknown method '{Method}' ({string.Join(", ", Methods)})");
        if (Pooling is not null) PoolingSpec.Parse(Pooling, "cls");
        if (PrefixLength < 1) throw new EngineException($"train: prefix length must be at least 1, got {PrefixLength}");
        if (PrefixProjection is < 1) throw new EngineException($"train: prefix projection size must be at least 1, got {PrefixProjection}");
        if (PromptLength < 1) throw new EngineException($"train: prompt length must be at least 1, got {PromptLength}");
        LoraSettings.Validate();
    }
}

/// <summary>
/// LoRA: W x + (α/r) · B A x on the target linear layers (α/√r with rsLoRA), A [r, in] drawn as
/// PEFT draws it (Kaiming-uniform with a = √5: U(−1/√in, 1/√in)), B [out, r] zero, dropout on
/// the adapter's input. Defaults r = 8, α = 16, dropout 0.1 (the LoRA paper's GLUE settings).
/// </summary>
public sealed record LoraOptions
{
    public int Rank { get; init; } = 8;
    public double Alpha { get; init; } = 16;
    public double Dropout { get; init; } = 0.1;

    /// <summary>Comma-separated module names matched against the end of each linear layer's path
    /// (query,value matches …attention.self.query); "all-linear" for every linear layer of the
    /// backbone; "re:PATTERN" for a regular expression over whole paths (what a PEFT config's
    /// string target_modules means); null: the family's default (query,value for BERT,
    /// q_proj,v_proj for Llama).</summary>
    public string? Targets { get; init; }

    /// <summary>rsLoRA: scale α/√r instead of α/r.</summary>
    public bool UseRsLora { get; init; }

    public double Scale => UseRsLora ? Alpha / Math.Sqrt(Rank) : Alpha / Rank;

    public void Validate()
    {
        if (Rank < 1) throw new EngineException($"train: LoRA rank must be at least 1, got {Rank}");
        if (Dropout is < 0 or >= 1) throw new EngineException($"train: LoRA dropout must be in [0, 1), got {Dropout}");
        if (Targets is { } t && t.Trim().Length == 0) throw new EngineException("train: --lora-targets is empty");
    }
}
