namespace Engine.Models.Peft.Head;

/// <summary>
/// Head-only training (a linear probe when the head is one layer): the backbone is frozen and
/// only the classification head (BERT: classifier.*, RoBERTa: classifier.dense and
/// classifier.out_proj, Llama: score.*) and the depth-wise pooling weights train. BERT's pooler
/// belongs to the pretrained backbone and stays frozen, as it does in PEFT's SEQ_CLS models.
/// Every other method trains the head too.
/// </summary>
public static class HeadOnly
{
    public static bool Trains(string parameterName) =>
        PeftFamily.IsHead(parameterName) || parameterName.StartsWith(SequencePooling.ModuleName + ".", StringComparison.Ordinal);
}
