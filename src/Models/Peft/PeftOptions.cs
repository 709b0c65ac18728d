namespace Engine.Models.Peft;

/// <summary>
/// Which fine-tuning method a run uses, with its options, and how the sentence vector is pooled.
/// Defaults: full fine-tuning with the model's usual pooling. <see cref="Method"/> names a method
/// of <see cref="MethodRegistry"/>; <see cref="Settings"/> is that method's options record
/// (null: its defaults), e.g. <c>new PeftOptions { Method = "lora", Settings = new LoraOptions { Rank = 16 } }</c>.
/// </summary>
public sealed record PeftOptions
{
    public const string Full = "full";

    /// <summary>A name from <see cref="MethodRegistry"/>: full, head, lora, bitfit, prefix, prompt, ….</summary>
    public string Method { get; init; } = Full;

    /// <summary>cls, mean, last, or depthwise[:raw][:with-embeddings][:cls|:mean|:last]; null:
    /// the model's usual pooling ([CLS] for encoders, the last non-pad token for decoders).</summary>
    public string? Pooling { get; init; }

    /// <summary>The method's options record (its type belongs to the method); null: the method's defaults.</summary>
    public MethodOptions? Settings { get; init; }

    /// <summary>True when nothing is asked beyond the defaults (full fine-tuning, usual pooling).</summary>
    public bool IsDefault => Method == Full && Pooling is null;

    /// <summary>The registered method (an unknown name is an error).</summary>
    public FineTuningMethod Registered => MethodRegistry.Get(Method);

    /// <summary>The method's options: <see cref="Settings"/>, or the method's defaults.</summary>
    public MethodOptions EffectiveSettings => Settings ?? Registered.Defaults;

    /// <summary>The settings as <typeparamref name="T"/> (for the method that owns <typeparamref name="T"/>).</summary>
    public T SettingsAs<T>() where T : MethodOptions => (T)EffectiveSettings;

    public void Validate()
    {
        var method = Registered;
        if (Pooling is not null) PoolingSpec.Parse(Pooling, "cls");
        if (Settings is { } s && s.GetType() != method.Defaults.GetType())
        {
            var owner = MethodRegistry.Owner(s);
            throw new EngineException($"train: {s.GetType().Name} " + (owner is null ? "are no method's options" : $"belong to method {owner.Name}") + $", not to method {Method}");
        }
        EffectiveSettings.Validate();
    }
}
