namespace Engine.Models.Tiny;

/// <summary>A batch: token ids [B, T] (I32), additive mask [B, T], labels [B] (I32).</summary>
public sealed record Batch(Tensor Ids, Tensor Mask, Tensor Labels);

/// <summary>
/// A synthetic classification task that needs attention: each sequence starts with [CLS] (id 1)
/// and holds tokens A (id 2) and B (id 3) among noise tokens (ids 4..vocab−1), padded with 0;
/// the label is 1 when A occurs more often than B, else 0 (counts never tie). The model must
/// count across the whole sequence from position 0.
/// </summary>
public static class MajorityTask
{
    public const int Pad = 0, Cls = 1, A = 2, B = 3;

    public static List<(int[] Tokens, int Label)> Make(int count, int vocab, int minLen, int maxLen, int seed)
    {
        var rng = new Random(seed);
        var data = new List<(int[], int)>(count);
        while (data.Count < count)
        {
            int len = rng.Next(minLen, maxLen + 1);
            var toks = new int[len];
            toks[0] = Cls;
            int a = 0, b = 0;
            for (int i = 1; i < len; i++)
            {
                int r = rng.Next(3);
                toks[i] = r == 0 ? A : r == 1 ? B : rng.Next(4, vocab);
                if (toks[i] == A) a++;
                if (toks[i] == B) b++;
            }
            if (a == b) continue;
            data.Add((toks, a > b ? 1 : 0));
        }
        return data;
    }

    /// <summary>Pads a slice of examples to its longest sequence.</summary>
    public static Batch Collate(IReadOnlyList<(int[] Tokens, int Label)> examples, DType dtype = DType.F32)
    {
        int b = examples.Count, t = examples.Max(e => e.Tokens.Length);
        var ids = new int[b * t];
        var mask = new double[b * t];
        for (int i = 0; i < b; i++)
            for (int j = 0; j < t; j++)
            {
                bool real = j < examples[i].Tokens.Length;
                ids[i * t + j] = real ? examples[i].Tokens[j] : Pad;
                mask[i * t + j] = real ? 0 : -1e9;
            }
        return new Batch(Tensor.FromArray(ids, b, t), Tensor.FromDoubles(mask, [b, t], dtype),
            Tensor.FromArray(examples.Select(e => e.Label).ToArray(), b));
    }
}
