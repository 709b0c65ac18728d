using Engine.Models.Bert;
using Engine.Nn;

namespace Engine.Models;

/// <summary>Logits [B, C]; every layer's output (index 0: the embeddings, i: block i); the
/// model's final hidden states (after a final norm, where the family has one).</summary>
public sealed record ClassifierOutput(Tensor Logits, IReadOnlyList<Tensor> HiddenStates, Tensor LastHiddenState);

/// <summary>
/// A Hugging Face sequence-classification model of any family: what `engine forward`, the
/// trainer and the PEFT methods drive. Parameter names are the checkpoint's.
/// </summary>
public abstract class SequenceClassifier : Module
{
    public abstract int NumLabels { get; }

    /// <summary>config.json's problem_type ("regression", "single_label_classification",
    /// "multi_label_classification") or null.</summary>
    public abstract string? ProblemType { get; }

    /// <summary>For each parameter, the name its weights had in the file they were loaded from
    /// (a checkpoint may omit the bert. prefix or use LayerNorm.gamma); empty before loading.</summary>
    public IReadOnlyDictionary<string, string> SourceNames { get; protected set; } = new Dictionary<string, string>();

    /// <summary>ids [B, T] I32; attentionMask [B, T] I32 (1 token, 0 padding) or null; tokenTypeIds [B, T] I32 or null.</summary>
    public abstract ClassifierOutput Forward(Tensor ids, Tensor? attentionMask = null, Tensor? tokenTypeIds = null);

    /// <summary>Hugging Face's choice of loss: one label → MSE (regression, float labels [B]);
    /// problem_type "multi_label_classification" → BCE-with-logits (float labels [B, C]);
    /// otherwise cross-entropy (I32 labels [B]).</summary>
    public Tensor Loss(Tensor logits, Tensor labels)
    {
        var problemType = ProblemType;
        if (NumLabels == 1 || problemType == "regression")
        {
            var target = labels.DType == logits.DType ? labels : CastTo(labels, logits.DType);
            return Ops.Mse(Ops.Reshape(logits, -1), Ops.Reshape(target, -1));
        }
        if (problemType == "multi_label_classification")
            return Ops.BceWithLogits(logits, labels.DType == logits.DType ? labels : CastTo(labels, logits.DType));
        if (labels.DType != DType.I32) labels = CastTo(labels, DType.I32);
        return Ops.CrossEntropy(logits, labels);
    }

    private static Tensor CastTo(Tensor t, DType dtype)
    {
        var r = Tensor.Empty(t.ShapeArray, dtype, t.Device);
        t.Backend.Cast(t, r);
        return r;
    }

    /// <summary>Builds the family's classifier from a folder and loads its weights.</summary>
    public static SequenceClassifier FromFolder(HfModelFolder folder, int seed = 0, DType dtype = DType.F32, Action<string>? log = null) =>
        folder.Family switch
        {
            ModelFamily.Bert => BertForSequenceClassification.FromFolder(folder, seed, dtype, log),
            _ => throw new EngineException($"{folder.Path}: model_type '{folder.ModelType}' has no sequence-classification model in the engine yet"),
        };
}
