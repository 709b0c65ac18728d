using Engine.Nn;

namespace Engine.Models.Tiny;

/// <summary>Sizes of <see cref="TinyTransformer"/>.</summary>
public sealed record TinyConfig(int Vocab = 16, int MaxLen = 32, int Dim = 32, int Heads = 2, int Layers = 2, int Classes = 2, double Dropout = 0.0);

/// <summary>
/// A small post-LayerNorm transformer encoder (BERT's layout) with a classifier on position 0,
/// built only from catalog ops. It is the model of `engine demo` and of the end-to-end tests:
/// small enough to train on a CPU in seconds.
/// </summary>
public sealed class TinyTransformer : Module
{
    public TinyConfig Config { get; }
    private readonly Embedding tokens, positions;
    private readonly LayerNorm embNorm;
    private readonly List<Block> blocks = new();
    private readonly Linear head;
    private readonly Dropout dropout;

    public TinyTransformer(TinyConfig config, int seed)
    {
        Config = config;
        var rng = new Random(seed);
        var seeds = new DropoutSeeds((ulong)seed);
        tokens = Child("tokens", new Embedding(config.Vocab, config.Dim, rng, 0.5));
        positions = Child("positions", new Embedding(config.MaxLen, config.Dim, rng, 0.5));
        embNorm = Child("emb_norm", new LayerNorm(config.Dim));
        dropout = Child("dropout", new Dropout(config.Dropout, seeds));
        for (int i = 0; i < config.Layers; i++) blocks.Add(Child($"layer.{i}", new Block(config, rng, seeds)));
        head = Child("head", new Linear(config.Dim, config.Classes, rng));
    }

    /// <summary>ids [B, T] (I32), mask [B, T] additive (0 keep, −1e9 pad) → logits [B, classes].</summary>
    public Tensor Forward(Tensor ids, Tensor mask)
    {
        int b = ids.Dim(0), t = ids.Dim(1);
        if (t > Config.MaxLen) throw new EngineException($"tiny transformer: sequence length {t} exceeds the maximum {Config.MaxLen}");
        var pos = Tensor.FromArray(Enumerable.Range(0, t).ToArray(), t);
        var h = Ops.Add(tokens.Forward(ids), positions.Forward(pos));
        h = dropout.Forward(embNorm.Forward(h));
        foreach (var block in blocks) h = block.Forward(h, mask);
        var first = Tensor.FromArray(new int[b], b);
        return head.Forward(Ops.GatherRows(h, first));
    }

    private sealed class Block : Module
    {
        private readonly int heads, dim;
        private readonly Linear q, k, v, o, up, down;
        private readonly LayerNorm norm1, norm2;
        private readonly Dropout dropout;

        public Block(TinyConfig c, Random rng, DropoutSeeds seeds)
        {
            heads = c.Heads;
            dim = c.Dim;
            q = Child("query", new Linear(c.Dim, c.Dim, rng));
            k = Child("key", new Linear(c.Dim, c.Dim, rng));
            v = Child("value", new Linear(c.Dim, c.Dim, rng));
            o = Child("output", new Linear(c.Dim, c.Dim, rng));
            norm1 = Child("norm1", new LayerNorm(c.Dim));
            up = Child("up", new Linear(c.Dim, 4 * c.Dim, rng));
            down = Child("down", new Linear(4 * c.Dim, c.Dim, rng));
            norm2 = Child("norm2", new LayerNorm(c.Dim));
            dropout = Child("dropout", new Dropout(c.Dropout, seeds));
        }

        private Tensor Heads(Tensor x) => Ops.Transpose(x.Reshape(x.Dim(0), x.Dim(1), heads, dim / heads), 1, 2);

        public Tensor Forward(Tensor x, Tensor mask)
        {
            var a = Ops.Attention(Heads(q.Forward(x)), Heads(k.Forward(x)), Heads(v.Forward(x)), mask);
            a = Ops.Transpose(a, 1, 2).Reshape(x.Dim(0), x.Dim(1), dim);
            x = norm1.Forward(Ops.Add(x, dropout.Forward(o.Forward(a))));
            var f = down.Forward(Ops.Gelu(up.Forward(x)));
            return norm2.Forward(Ops.Add(x, dropout.Forward(f)));
        }
    }
}
