namespace Engine.Models.Peft.Full;

/// <summary>Full fine-tuning: every parameter trains (the default). A model given only a pooling
/// (<c>--pooling depthwise</c>) is a full run with that pooling.</summary>
public sealed class FullMethod : FineTuningMethod
{
    public override string Name => PeftOptions.Full;
    public override string Description => "every parameter trains";
    public override MethodOptions Defaults => NoOptions.Instance;

    public override InstalledMethod Install(SequenceClassifier model, MethodOptions options, MethodContext context) => new Installed();

    private sealed class Installed : InstalledMethod
    {
        public override bool Trains(string parameterName) => true;
    }
}
