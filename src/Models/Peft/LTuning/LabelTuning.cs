using Engine.Nn;

namespace Engine.Models.Peft.LTuning;

/// <summary>
/// L-Tuning's module, attached to a classifier as "ltuning" (Kowsher et al., arXiv 2402.01643;
/// docs/methods.md). Shapes: K labels, l label-prompt positions, D hidden size, m blocks, W a
/// block's key/value width (<see cref="SequenceClassifier.KeyValueWidth"/>).
///
/// - "label_states" [K, l, D]: the frozen backbone's last hidden states of each label prompt,
///   computed once when the method is installed and saved with the model (frozen: never trained).
/// - "scorer" Linear(D, 1): one score per label token, a [K, l] (no softmax, as the reference code).
/// - LT-prefix: encoders "projection" Linear(l, l·2m·W) maps a label's scores to its key/value
///   prefixes, viewed as [l, 2m·W] with block i's keys in columns [2i·W, (2i+1)·W) and its
///   values in the next W (PEFT's prefix layout); decoders "key_projection" and
///   "value_projection", each Linear(l, l·m·W) (block i in columns [i·W, (i+1)·W)). Dropout
///   on the prefixes of each row.
/// - LT-prompt: encoders "projection" Linear(l, l·D) maps the scores to l embeddings [l, D];
///   decoders "transform" Linear(D, D) on each label token's state (no scorer).
/// - "head": encoders Linear(D, 2) on dropout(the family's pretrained pooler of z) (BERT's frozen
///   pooler; RoBERTa's classification model has none, so z); decoders Linear(D, 2, bias = false)
///   on z (the last non-pad token, or the pooling's vector). Column 1 is "this is the label".
///
/// Each row of a forward is one (text, candidate label) pair: <see cref="UseRows"/> sets the
/// candidates, and <see cref="Prefixes"/> / <see cref="Prompt"/> give each row its label's
/// prefixes or embeddings (computed for the K labels, then gathered per row).
/// Initialisation: PyTorch's nn.Linear default, U(−1/√in, 1/√in), for every layer.
/// </summary>
public sealed class LabelTuning : Module
{
    public const string ModuleName = "ltuning";
    public const string StatesName = "label_states";
    public const string HeadName = "head";

    private readonly Tensor states;
    private readonly Linear? scorer, projection, keyProjection, valueProjection, transform;
    private readonly Linear head;
    private readonly Dropout dropout;
    private readonly Func<Tensor, Tensor> pooler;
    private readonly bool decoder;
    private readonly int labels, length, hidden, blocks, width;
    private int[]? rows;

    /// <summary>LT-prefix (<paramref name="prefix"/>) or LT-prompt; the decoder variants and head
    /// when <paramref name="decoder"/>; K = <paramref name="labels"/>, l = <paramref name="length"/>,
    /// D = <paramref name="hidden"/>, m = <paramref name="blocks"/>, W = <paramref name="width"/>;
    /// <paramref name="labelStates"/> holds the [K·l·D] label states (null: zeros, which load with
    /// the model); <paramref name="pooler"/> is the family's pretrained pooler.</summary>
    public LabelTuning(bool prefix, bool decoder, int labels, int length, int hidden, int blocks, int width, double dropout, DropoutSeeds seeds,
        Func<Tensor, Tensor> pooler, double[]? labelStates, Random rng, DType dtype)
    {
        this.decoder = decoder;
        this.labels = labels;
        this.length = length;
        this.hidden = hidden;
        this.blocks = blocks;
        this.width = width;
        this.pooler = pooler;
        states = Param(StatesName, labelStates is null ? Tensor.Zeros([labels, length, hidden], dtype) : Tensor.FromDoubles(labelStates, [labels, length, hidden], dtype));
        if (prefix || !decoder) scorer = Child("scorer", new Linear(hidden, 1, rng, dtype: dtype));
        if (prefix && !decoder) projection = Child("projection", new Linear(length, length * 2 * blocks * width, rng, dtype: dtype));
        if (prefix && decoder)
        {
            keyProjection = Child("key_projection", new Linear(length, length * blocks * width, rng, dtype: dtype));
            valueProjection = Child("value_projection", new Linear(length, length * blocks * width, rng, dtype: dtype));
        }
        if (!prefix && !decoder) projection = Child("projection", new Linear(length, length * hidden, rng, dtype: dtype));
        if (!prefix && decoder) transform = Child("transform", new Linear(hidden, hidden, rng, dtype: dtype));
        head = Child(HeadName, new Linear(hidden, 2, rng, bias: !decoder, dtype: dtype));
        this.dropout = Child("dropout", new Dropout(dropout, seeds));
    }

    /// <summary>l, the label prompts' length.</summary>
    public int Length => length;

    /// <summary>Sets the candidate label of each row of the next forward.</summary>
    public void UseRows(int[] candidates) => rows = (int[])candidates.Clone();

    /// <summary>Per block, the rows' key and value prefixes [B, l, W].</summary>
    public IReadOnlyList<(Tensor Key, Tensor Value)> Prefixes(int batch)
    {
        var ids = RowIds(batch);
        var scores = Scores();
        var result = new List<(Tensor, Tensor)>(blocks);
        if (projection is not null)
        {
            var x = dropout.Forward(Ops.Embedding(ids, projection.Forward(scores)).Reshape(batch, length, 2 * blocks * width));
            for (int i = 0; i < blocks; i++) result.Add((Ops.Slice(x, 2, 2 * i * width, width), Ops.Slice(x, 2, (2 * i + 1) * width, width)));
            return result;
        }
        var keys = dropout.Forward(Ops.Embedding(ids, keyProjection!.Forward(scores)).Reshape(batch, length, blocks * width));
        var values = dropout.Forward(Ops.Embedding(ids, valueProjection!.Forward(scores)).Reshape(batch, length, blocks * width));
        for (int i = 0; i < blocks; i++) result.Add((Ops.Slice(keys, 2, i * width, width), Ops.Slice(values, 2, i * width, width)));
        return result;
    }

    /// <summary>The rows' prompt embeddings [B, l, D].</summary>
    public Tensor Prompt(int batch)
    {
        var ids = RowIds(batch);
        var table = transform is not null
            ? transform.Forward(states).Reshape(labels, length * hidden)
            : projection!.Forward(Scores());
        return Ops.Embedding(ids, table).Reshape(batch, length, hidden);
    }

    /// <summary>Pair logits [B, 2] from the pooled vector [B, D].</summary>
    public Tensor Head(Tensor z) => decoder ? head.Forward(z) : head.Forward(dropout.Forward(pooler(z)));

    /// <summary>The label tokens' scores a [K, l].</summary>
    private Tensor Scores() => scorer!.Forward(states).Reshape(labels, length);

    private Tensor RowIds(int batch)
    {
        if (rows is null || rows.Length != batch)
            throw new EngineException($"L-Tuning: the {batch} rows of this forward are not paired with candidate labels " +
                                      "(the trainer pairs them through the method's label pairing; a plain forward has no label to read)");
        return Tensor.FromArray(rows, batch).To(states.Device);
    }
}
