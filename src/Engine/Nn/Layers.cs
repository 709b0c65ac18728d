namespace Engine.Nn;

/// <summary>y = x·Wᵀ + b with W [out, in] (Hugging Face layout). Initialised as PyTorch's
/// nn.Linear by default, or Normal(0, std) when <c>std</c> is given (BERT uses 0.02).</summary>
public sealed class Linear : Module
{
    public Tensor Weight { get; }
    public Tensor? Bias { get; }

    public Linear(int inFeatures, int outFeatures, Random rng, bool bias = true, double? std = null, DType dtype = DType.F32)
    {
        double bound = 1.0 / Math.Sqrt(inFeatures);
        Weight = Param("weight", std is { } s
            ? Tensor.Randn([outFeatures, inFeatures], rng, dtype, s)
            : Tensor.Uniform([outFeatures, inFeatures], rng, -bound, bound, dtype));
        if (bias) Bias = Param("bias", std is null ? Tensor.Uniform([outFeatures], rng, -bound, bound, dtype) : Tensor.Zeros([outFeatures], dtype));
    }

    public Tensor Forward(Tensor x) => Ops.Linear(x, Weight, Bias);
}

/// <summary>A lookup table [count, dim].</summary>
public sealed class Embedding : Module
{
    public Tensor Weight { get; }

    public Embedding(int count, int dim, Random rng, double std = 1.0, DType dtype = DType.F32) =>
        Weight = Param("weight", Tensor.Randn([count, dim], rng, dtype, std));

    public Tensor Forward(Tensor ids) => Ops.Embedding(ids, Weight);
}

/// <summary>Layer norm over the last dim (weight 1, bias 0 at start).</summary>
public sealed class LayerNorm : Module
{
    public Tensor Weight { get; }
    public Tensor Bias { get; }
    public double Eps { get; }

    public LayerNorm(int dim, double eps = 1e-5, DType dtype = DType.F32)
    {
        Eps = eps;
        Weight = Param("weight", Tensor.Full([dim], 1.0, dtype));
        Bias = Param("bias", Tensor.Zeros([dim], dtype));
    }

    public Tensor Forward(Tensor x) => Ops.LayerNorm(x, Weight, Bias, Eps);
}

/// <summary>RMS norm over the last dim (weight 1 at start).</summary>
public sealed class RmsNorm : Module
{
    public Tensor Weight { get; }
    public double Eps { get; }

    public RmsNorm(int dim, double eps = 1e-6, DType dtype = DType.F32)
    {
        Eps = eps;
        Weight = Param("weight", Tensor.Full([dim], 1.0, dtype));
    }

    public Tensor Forward(Tensor x) => Ops.RmsNorm(x, Weight, Eps);
}

/// <summary>Dropout that is active in training mode only; seeds come from a shared sequence.</summary>
public sealed class Dropout(double p, DropoutSeeds seeds) : Module
{
    public double P { get; } = p;

    public Tensor Forward(Tensor x) => Training && P > 0 ? Ops.Dropout(x, P, seeds.Next()) : x;
}
