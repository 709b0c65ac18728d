namespace Engine.Models.Peft.BitFit;

/// <summary>
/// BitFit (Ben Zaken et al.): only bias vectors train — every parameter whose name ends in
/// ".bias": the attention projections and output, the MLP layers, the layer norms (embedding
/// LayerNorm included) and BERT's pooler — plus the head and the depth-wise pooling weights.
/// (PEFT has no BitFit tuner; its nearest is LoRA's bias="all".)
/// </summary>
public sealed class BitFitMethod : FineTuningMethod
{
    public override double DefaultLearningRate => 1e-3;
    public override string Name => "bitfit";
    public override string Description => "every bias vector, the head and the pooling weights";
    public override MethodOptions Defaults => NoOptions.Instance;

    public override InstalledMethod Install(SequenceClassifier model, MethodOptions options, MethodContext context) => new Installed();

    /// <summary>A bias vector (the rule, for methods that combine BitFit with others).</summary>
    public static bool IsBias(string parameterName) => parameterName.EndsWith(".bias", StringComparison.Ordinal);

    private sealed class Installed : InstalledMethod
    {
        public override bool Trains(string parameterName) => TrainsHeadOrPooling(parameterName) || IsBias(parameterName);
    }
}
