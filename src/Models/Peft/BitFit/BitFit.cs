using Engine.Models.Peft.Head;

namespace Engine.Models.Peft.BitFit;

/// <summary>
/// BitFit (Ben Zaken et al.): only bias vectors train — every parameter whose name ends in
/// ".bias": the attention projections and output, the MLP layers, the layer norms (embedding
/// LayerNorm included) and BERT's pooler — plus the head and the depth-wise pooling weights.
/// (PEFT has no BitFit tuner; its nearest is LoRA's bias="all".)
/// </summary>
public static class BitFitMethod
{
    public static bool Trains(string parameterName) =>
        HeadOnly.Trains(parameterName) || parameterName.EndsWith(".bias", StringComparison.Ordinal);
}
