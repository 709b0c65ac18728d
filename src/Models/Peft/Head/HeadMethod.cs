namespace Engine.Models.Peft.Head;

/// <summary>
/// Head-only training (a linear probe when the head is one layer): the backbone is frozen and
/// only the classification head (BERT: classifier.*, RoBERTa: classifier.dense and
/// classifier.out_proj, Llama: score.*) and the depth-wise pooling weights train. BERT's pooler
/// belongs to the pretrained backbone and stays frozen, as it does in PEFT's SEQ_CLS models.
/// </summary>
public sealed class HeadMethod : FineTuningMethod
{
    public override double DefaultLearningRate => 1e-3;
    public override string Name => "head";
    public override string Description => "the classification head (and pooling weights) only";
    public override MethodOptions Defaults => NoOptions.Instance;

    public override InstalledMethod Install(SequenceClassifier model, MethodOptions options, MethodContext context) => new Installed();

    private sealed class Installed : InstalledMethod
    {
        public override bool Trains(string parameterName) => TrainsHeadOrPooling(parameterName);
    }
}
