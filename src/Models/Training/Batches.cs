using Engine.Models.Data;
using Engine.Models.Tokenization;

namespace Engine.Models.Training;

/// <summary>One tokenized example: ids and token types with special tokens, and its target.</summary>
public sealed record EncodedExample(int[] Ids, int[] Types, int Label, double Value);

/// <summary>A padded batch: ids, attention mask and token types [B, T] (I32), class labels [B]
/// (I32) and regression values [B] (F32).</summary>
public sealed record TensorBatch(Tensor Ids, Tensor Mask, Tensor Types, Tensor Labels, Tensor Values, int Tokens);

/// <summary>Tokenizing, ordering and padding examples.</summary>
public static class Batches
{
    public static List<EncodedExample> Encode(IEnumerable<Example> examples, TextTokenizer tokenizer, int maxLength) =>
        examples.Select(e =>
        {
            var enc = tokenizer.Encode(e.Text, e.TextPair, maxLength);
            return new EncodedExample(enc.Ids.ToArray(), enc.TypeIds.ToArray(), e.Label, e.Value);
        }).ToList();

    /// <summary>
    /// The batches of one epoch as lists of example indices. With a generator the order is
    /// shuffled (a pure function of the generator's seed: the same epoch seed gives the same
    /// batches, which is what makes a resumed run identical); with <paramref name="bucket"/>,
    /// examples of similar length share batches (sorted within windows of 50 batches) and the
    /// batches are then shuffled. Without a generator: input order (evaluation).
    /// </summary>
    public static List<int[]> Order(IReadOnlyList<EncodedExample> data, int batchSize, Random? rng, bool bucket)
    {
        var idx = Enumerable.Range(0, data.Count).ToArray();
        if (rng is not null) rng.Shuffle(idx);
        if (rng is not null && bucket)
        {
            int window = batchSize * 50;
            for (int s = 0; s < idx.Length; s += window)
                Array.Sort(idx, s, Math.Min(window, idx.Length - s), Comparer<int>.Create((a, b) => data[a].Ids.Length.CompareTo(data[b].Ids.Length)));
        }
        var batches = new List<int[]>();
        for (int s = 0; s < idx.Length; s += batchSize) batches.Add(idx[s..Math.Min(idx.Length, s + batchSize)]);
        if (rng is not null && bucket)
        {
            var arr = batches.ToArray();
            rng.Shuffle(arr);
            batches = arr.ToList();
        }
        return batches;
    }

    /// <summary>Pads to the longest example of the batch (right padding with <paramref name="padId"/>).</summary>
    public static TensorBatch Collate(IReadOnlyList<EncodedExample> data, int[] indices, int padId)
    {
        int b = indices.Length, t = indices.Max(i => data[i].Ids.Length);
        var ids = new int[b * t];
        var mask = new int[b * t];
        var types = new int[b * t];
        var labels = new int[b];
        var values = new float[b];
        int tokens = 0;
        for (int r = 0; r < b; r++)
        {
            var e = data[indices[r]];
            for (int j = 0; j < t; j++)
            {
                bool real = j < e.Ids.Length;
                ids[r * t + j] = real ? e.Ids[j] : padId;
                mask[r * t + j] = real ? 1 : 0;
                types[r * t + j] = real ? e.Types[j] : 0;
            }
            tokens += e.Ids.Length;
            labels[r] = e.Label;
            values[r] = (float)e.Value;
        }
        return new TensorBatch(Tensor.FromArray(ids, b, t), Tensor.FromArray(mask, b, t), Tensor.FromArray(types, b, t),
            Tensor.FromArray(labels, b), Tensor.FromArray(values, b), tokens);
    }
}
