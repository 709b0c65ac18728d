namespace Engine.Models;

/// <summary>
/// Attention-mask building shared by the model families. An input mask is I32 [B, T] (1 token,
/// 0 padding); the attention ops take an additive mask over keys [B, S]: 0 where attended, the
/// dtype's most negative value where padded (Hugging Face's extended mask). Everything is made on
/// the host from the I32 mask (wherever that is) and the additive mask is put on the device asked for.
/// </summary>
public static class AttentionMasks
{
    /// <summary>The additive mask [B, T] for <paramref name="attentionMask"/> (null: none, every
    /// position a token). <paramref name="ids"/> gives the expected shape; <paramref name="who"/> names the model in errors.</summary>
    public static Tensor? Additive(Tensor ids, Tensor? attentionMask, DType dtype, Device device, string who)
    {
        if (attentionMask is null) return null;
        if (!Shape.Equal(attentionMask.Shape, ids.Shape) || attentionMask.DType != DType.I32)
            throw new EngineException($"{who}: attention_mask must be I32 {Shape.Format(ids.Shape)}, got {attentionMask.DType} {Shape.Format(attentionMask.Shape)}");
        double min = dtype == DType.F64 ? double.MinValue : float.MinValue;
        var m = attentionMask.ToIntArray().Select(v => v != 0 ? 0.0 : min).ToArray();
        return Tensor.FromDoubles(m, ids.ShapeArray, dtype).To(device);
    }

    /// <summary>An additive mask [B, S] → [B, p + S] with p always-visible positions in front (key/value prefixes).</summary>
    public static Tensor WithVisiblePrefix(Tensor additive, int p) =>
        Ops.Concat([Tensor.Zeros([additive.Dim(0), p], additive.DType, additive.Device), additive], 1);

    /// <summary>An all-ones I32 mask [B, T].</summary>
    public static Tensor AllTokens(int b, int t) => Tensor.FromArray(Enumerable.Repeat(1, b * t).ToArray(), b, t);

    /// <summary>Per row, the first position whose mask is 1 (0 without a mask or for a row of padding).</summary>
    public static int[] FirstAttended(Tensor? attentionMask, int b, int t)
    {
        var first = new int[b];
        if (attentionMask is null) return first;
        var m = attentionMask.ToIntArray();
        for (int r = 0; r < b; r++)
        {
            int j = 0;
            while (j < t && m[r * t + j] == 0) j++;
            first[r] = j < t ? j : 0;
        }
        return first;
    }

    /// <summary>Rows [B, T] (row-major) with p copies of <paramref name="value"/> inserted before
    /// position at[r] of row r → [B, T + p].</summary>
    public static int[] Insert(int[] rows, int b, int t, int[] at, int p, int value)
    {
        var r = new int[b * (t + p)];
        for (int i = 0; i < b; i++)
            for (int j = 0; j < t + p; j++)
                r[i * (t + p) + j] = j < at[i] ? rows[i * t + j] : j < at[i] + p ? value : rows[i * t + j - p];
        return r;
    }

    /// <summary>An I32 mask [B, T] → [B, T + p] with p ones (visible virtual tokens) before position at[r] of row r.</summary>
    public static Tensor InsertOnes(Tensor mask, int[] at, int p)
    {
        int b = mask.Dim(0), t = mask.Dim(1);
        return Tensor.FromArray(Insert(mask.ToIntArray(), b, t, at, p, 1), b, t + p);
    }
}
