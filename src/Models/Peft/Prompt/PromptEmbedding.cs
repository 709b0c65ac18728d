using Engine.Nn;

namespace Engine.Models.Peft.Prompt;

/// <summary>
/// Prompt tuning: p trainable input embeddings [p, D] ("embedding.weight", attached to a
/// classifier as "prompt_encoder") inserted into the word embeddings by the family's virtual-token
/// hook (BERT: right after [CLS], see <see cref="Bert.BertModel"/>; Llama: right before each
/// row's first attended token, see <see cref="Llama.LlamaModel"/>). They start as copies of
/// word-embedding rows: of p randomly drawn vocabulary tokens (PEFT's SAMPLE_VOCAB), or of a
/// text's tokens repeated to fill p (PEFT's TEXT initialisation).
/// </summary>
public sealed class PromptEmbedding : Module
{
    public const string ModuleName = "prompt_encoder";

    public Tensor Weight { get; }

    public PromptEmbedding(Tensor wordEmbeddings, int length, IReadOnlyList<int>? initTokens, Random rng)
    {
        int vocab = wordEmbeddings.Dim(0), dim = wordEmbeddings.Dim(1);
        var ids = new int[length];
        for (int i = 0; i < length; i++)
            ids[i] = initTokens is { Count: > 0 } t ? t[i % t.Count] : rng.Next(vocab);
        if (ids.Any(id => id < 0 || id >= vocab)) throw new EngineException($"prompt: an initialisation token id is outside the vocabulary of {vocab}");
        var table = wordEmbeddings.ToDoubleArray();
        var rows = new double[length * dim];
        for (int i = 0; i < length; i++) Array.Copy(table, (long)ids[i] * dim, rows, (long)i * dim, dim);
        Weight = Param("embedding.weight", Tensor.FromDoubles(rows, [length, dim], wordEmbeddings.DType));
    }

    public int Length => Weight.Dim(0);

    /// <summary>The prompt for a batch: [B, p, D].</summary>
    public Tensor Forward(int batch) => Ops.Add(Tensor.Zeros([batch, Length, Weight.Dim(1)], Weight.DType, Weight.Device), Weight);
}
