using Engine.Models;
using Engine.Models.Pretraining;
using Engine.Nn;
using NUnit.Framework;

namespace Engine.Tests.Pretraining;

/// <summary>
/// The pretraining models' loss gradient, whole model at once, against central finite
/// differences in float64: BertForMaskedLM (embeddings, post-LN encoder, the head at the masked
/// positions, the decoder tied to the word embeddings) and LlamaForCausalLM (tied and untied).
/// Each op has its own gradient check in the catalog; this checks what the models compose from
/// them — the gathers into the encoder's output, the tying, the shifted targets — for sampled
/// elements of every parameter tensor. Dropout is off (the finite differences rerun the forward).
/// </summary>
public class WholeModelGradientTests
{
    /// <summary>Per parameter tensor: the largest |analytic − numeric| over up to 24 sampled
    /// elements, relative to that tensor's own largest numeric gradient (floored at 1e-3 of the
    /// model's largest, for tensors whose gradient is zero by symmetry, as the key bias's).</summary>
    private static List<(string Name, double Error)> Check(LanguageModel model, int[] ids, int[] targets, int b, int t, Func<string, double>? plant = null)
    {
        double Loss() => LanguageModel.Loss(model.Predict(ids, targets, b, t)).Item();
        foreach (var p in model.Parameters()) p.Grad = null;
        LanguageModel.Loss(model.Predict(ids, targets, b, t)).Backward();
        var found = new List<(string, double[] Analytic, double[] Numeric)>();
        foreach (var (name, p) in model.NamedParameters())
        {
            var g = p.Grad!.ToDoubleArray();
            var v = p.Span<double>();
            int n = Math.Min(v.Length, 24);
            var analytic = new double[n];
            var numeric = new double[n];
            for (int k = 0; k < n; k++)
            {
                int j = (int)((long)k * 7919 % v.Length);
                double keep = v[j], eps = 1e-6;
                v[j] = keep + eps; double up = Loss();
                v[j] = keep - eps; double down = Loss();
                v[j] = keep;
                numeric[k] = (up - down) / (2 * eps);
                analytic[k] = g[j] * (plant?.Invoke(name) ?? 1);
            }
            found.Add((name, analytic, numeric));
        }
        double overall = found.Max(f => f.Numeric.Max(Math.Abs));
        Assert.That(overall, Is.GreaterThan(1e-4), "the loss depends on the parameters");
        return found.Select(f => (f.Item1, f.Analytic.Zip(f.Numeric, (a, x) => Math.Abs(a - x)).Max()
            / Math.Max(f.Numeric.Max(Math.Abs), 1e-3 * overall))).ToList();
    }

    private static void AllClose(List<(string Name, double Error)> errors)
    {
        foreach (var (name, error) in errors) Assert.That(error, Is.LessThan(1e-5), name);
    }

    private static (int[] Ids, int[] Targets) MaskedRows(int b, int t, int vocab, int maskId)
    {
        var rng = new Random(1);
        var ids = Enumerable.Range(0, b * t).Select(_ => 5 + rng.Next(vocab - 5)).ToArray();
        var targets = Enumerable.Repeat(MlmMasker.Ignore, b * t).ToArray();
        foreach (var i in new[] { 1, 4, 8, 11 }) { targets[i] = ids[i]; ids[i] = maskId; }
        targets[6] = ids[6]; // a position scored with its own token kept, as 10% of BERT's are
        return (ids, targets);
    }

    private static MaskedLanguageModel Bert() => new(new BertConfig
    {
        ModelType = "bert", VocabSize = 23, HiddenSize = 8, NumHiddenLayers = 2, NumAttentionHeads = 2, IntermediateSize = 16,
        MaxPositionEmbeddings = 16, HiddenDropoutProb = 0, AttentionProbsDropoutProb = 0,
    }, seed: 3, initStd: 0.3, dtype: DType.F64);

    [Test]
    public void MaskedLmGradientsMatchFiniteDifferences()
    {
        var model = Bert();
        var (ids, targets) = MaskedRows(2, 6, 23, 4);
        var errors = Check(model, ids, targets, 2, 6);
        Assert.That(errors.Count, Is.EqualTo(model.NamedParameters().Count()));
        AllClose(errors);
    }

    [Test]
    public void TheCheckCatchesAPlantedError()
    {
        // An encoder weight's gradient off by 1%: the check must say which.
        var (ids, targets) = MaskedRows(2, 6, 23, 4);
        const string wrong = "bert.encoder.layer.0.attention.self.value.weight";
        var errors = Check(Bert(), ids, targets, 2, 6, name => name == wrong ? 1.01 : 1);
        Assert.That(errors.Where(e => e.Error >= 1e-5).Select(e => e.Name), Is.EqualTo(new[] { wrong }));
    }

    [TestCase(true)]
    [TestCase(false)]
    public void CausalLmGradientsMatchFiniteDifferences(bool tied)
    {
        var config = new LlamaConfig
        {
            ModelType = "llama", VocabSize = 19, HiddenSize = 8, IntermediateSize = 16, NumHiddenLayers = 2, NumAttentionHeads = 2,
            NumKeyValueHeads = 1, HeadDim = 4, TieWordEmbeddings = tied,
        };
        var model = new CausalLanguageModel(config, seed: 2, dtype: DType.F64);
        var rng = new Random(4);
        foreach (var p in model.Parameters()) // the default 0.02 makes a nearly flat loss; larger weights make every path count
        {
            var v = p.Span<double>();
            for (int i = 0; i < v.Length; i++) v[i] += 0.3 * (rng.NextDouble() - 0.5);
        }
        int b = 2, t = 5;
        var ids = Enumerable.Range(0, b * t).Select(_ => rng.Next(19)).ToArray();
        var errors = Check(model, ids, CausalLanguageModel.ShiftedTargets(ids, b, t), b, t);
        Assert.That(errors.Any(e => e.Name == "lm_head.weight"), Is.EqualTo(!tied));
        AllClose(errors);
    }
}
