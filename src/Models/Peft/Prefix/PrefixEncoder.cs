using Engine.Nn;

namespace Engine.Models.Peft.Prefix;

/// <summary>
/// Prefix tuning, P-tuning v2 style: p virtual key/value positions in every attention layer.
/// Laid out as PEFT's PrefixEncoder: "embedding.weight" is [p, 2·L·W] (W: a block's key/value
/// width), columns [2l·W, (2l+1)·W) holding layer l's keys and the next W its values. With the
/// MLP reparameterisation (PEFT's prefix_projection), "embedding.weight" is [p, D] and
/// transform.0 (Linear D → hidden), tanh, transform.2 (Linear hidden → 2·L·W) produce the
/// table; the MLP is trained with the embedding and saved with it. The table starts as
/// N(0, 1), as torch.nn.Embedding starts (PEFT and P-tuning v2).
/// Attached to a classifier as "prefix_encoder".
/// </summary>
public sealed class PrefixEncoder : Module
{
    public const string ModuleName = "prefix_encoder";

    private readonly Tensor embedding;
    private readonly Linear? up, down;
    private readonly int layers, width;

    public PrefixEncoder(int length, int layers, int width, int hiddenSize, int? projection, Random rng, DType dtype)
    {
        this.layers = layers;
        this.width = width;
        int columns = 2 * layers * width;
        embedding = Child("embedding", new Table(projection is null ? [length, columns] : [length, hiddenSize], rng, dtype)).Weight;
        if (projection is { } h)
        {
            var transform = Child("transform", new Group());
            up = transform.Add("0", new Linear(hiddenSize, h, rng, dtype: dtype));
            down = transform.Add("2", new Linear(h, columns, rng, dtype: dtype));
        }
    }

    public int Length => embedding.Dim(0);

    /// <summary>Per layer, keys and values [B, p, W] (the same for every row of the batch).</summary>
    public IReadOnlyList<(Tensor Key, Tensor Value)> Prefixes(int batch)
    {
        var table = up is null ? embedding : down!.Forward(Ops.Tanh(up.Forward(embedding)));
        var zeros = Tensor.Zeros([batch, Length, width], table.DType, table.Device);
        var result = new List<(Tensor, Tensor)>(layers);
        for (int l = 0; l < layers; l++)
            result.Add((Ops.Add(zeros, Ops.Slice(table, 1, 2 * l * width, width)), Ops.Add(zeros, Ops.Slice(table, 1, (2 * l + 1) * width, width))));
        return result;
    }

    /// <summary>A trainable table, N(0, 1) at start.</summary>
    private sealed class Table : Module
    {
        public Tensor Weight { get; }
        public Table(int[] shape, Random rng, DType dtype) => Weight = Param("weight", Tensor.Randn(shape, rng, dtype));
    }
}
