using Engine.Models.Peft.Lora;
using Engine.Nn;

namespace Engine.Models.Peft.Dora;

/// <summary>
/// DoRA (PEFT's LoRA with use_dora): LoRA's options and targets (<see cref="LoraOptions"/>, the
/// --lora-* options), a <see cref="DoraAdapter"/> per target layer. Saved in PEFT's format:
/// adapter_config.json of peft_type LORA with use_dora true; adapter_model.safetensors with
/// …lora_A.weight, …lora_B.weight and …lora_magnitude_vector [out].
/// </summary>
public sealed class DoraMethod : LowRankMethod<DoraAdapter>
{
    public override string Name => "dora";
    public override string Description => "weight-decomposed LoRA: a low-rank direction and a magnitude per output feature, the head and the pooling weights";
    protected override bool UseDora => true;
    protected override string Group => "DoRA adapters";
    protected override DoraAdapter NewAdapter(Linear layer, LoraOptions o, Random rng, DropoutSeeds seeds) => new(layer, o, rng, seeds);
    protected override bool Owns(string parameterName) => IsAdapterParameter(parameterName);

    /// <summary>A DoRA parameter (lora_A, lora_B, lora_magnitude_vector).</summary>
    public static bool IsAdapterParameter(string name) =>
        LoraMethod.IsAdapterParameter(name) || name.EndsWith("." + DoraAdapter.MagnitudeName, StringComparison.Ordinal);
}
