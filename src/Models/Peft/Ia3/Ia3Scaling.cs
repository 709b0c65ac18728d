using Engine.Nn;

namespace Engine.Models.Peft.Ia3;

/// <summary>
/// One (IA)³ vector on a frozen linear layer W [out, in] with bias b (Liu et al. 2022; PEFT's IA3):
/// on a feed-forward layer it scales the layer's input, y = W (l ⊙ x) + b, l [1, in]; on any other
/// target it scales the output, bias included, y = l ⊙ (W x + b), l [out, 1] (PEFT's shapes and
/// rule). l starts at ones, so the adapted layer computes the base layer at step 0. Its parameter
/// is "ia3_l"; attached at the base layer's path it gets PEFT's key (….key.ia3_l).
/// </summary>
public sealed class Ia3Scaling : Module
{
    public const string ParameterName = "ia3_l";

    public Linear Base { get; }
    public bool FeedForward { get; }
    public Tensor L { get; }

    public Ia3Scaling(Linear baseLayer, bool feedForward)
    {
        Base = baseLayer;
        FeedForward = feedForward;
        int outFeatures = baseLayer.Weight.Dim(0), inFeatures = baseLayer.Weight.Dim(1);
        L = Param(ParameterName, Tensor.Full(feedForward ? [1, inFeatures] : [outFeatures, 1], 1.0, baseLayer.Weight.DType));
    }

    public Tensor Forward(Tensor x) =>
        FeedForward ? Base.Forward(Ops.Mul(x, L)) : Ops.Mul(Base.Forward(x), Ops.Reshape(L, -1));
}
