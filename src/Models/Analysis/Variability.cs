using System.Numerics;
using Engine.Autograd;
using Engine.Models.Bert;
using Engine.Models.Data;
using Engine.Models.Llama;
using Engine.Models.Tokenization;
using Engine.Models.Training;

namespace Engine.Models.Analysis;

/// <summary>How <see cref="Variability.Analyze"/> reads the data.</summary>
public sealed record VariabilityOptions
{
    /// <summary>Tokens per example after truncation (longest-first for pairs), special tokens included.</summary>
    public int MaxLength { get; init; } = 128;

    /// <summary>Examples per forward batch (memory only; the result does not depend on it beyond rounding).</summary>
    public int BatchSize { get; init; } = 32;

    /// <summary>Use at most this many examples: a uniform random sample drawn with <see cref="Seed"/>
    /// (Fisher–Yates over <see cref="Random"/>), so a file sorted by label still gives every class.
    /// Null: every example.</summary>
    public int? MaxExamples { get; init; }

    public int Seed { get; init; }

    public void Validate()
    {
        if (MaxLength < 2) throw new EngineException($"variability: max length must be at least 2, got {MaxLength}");
        if (BatchSize < 1) throw new EngineException($"variability: batch size must be at least 1, got {BatchSize}");
        if (MaxExamples is < 2) throw new EngineException($"variability: max examples must be at least 2, got {MaxExamples}");
    }
}

/// <summary>ν per layer, with what it was computed on.</summary>
/// <param name="Nu">Index 0: the embedding output, i: the output of block i; NaN where every class
/// has the same mean (Σ_b = 0), so ν is undefined.</param>
/// <param name="Examples">Examples pooled (after sampling, without the skipped ones).</param>
/// <param name="Classes">|Y|: the classes present among them.</param>
/// <param name="Skipped">Examples passed over because no token was left to pool (all special tokens).</param>
/// <param name="HiddenSize">d, the width of the pooled vectors.</param>
public sealed record VariabilityResult(double[] Nu, int Examples, int Classes, int Skipped, int HiddenSize);

/// <summary>
/// Hidden-state variability (Xie et al., Findings of EMNLP 2022): a forward-only, per-layer score
/// of how well a layer's sentence vectors already separate the classes; low is well specialised.
///
/// For one layer, with h_n ∈ R^d the mean of example n's pooled tokens, G_y the examples of class
/// y, K = |Y| the classes present, μ_y the class means and μ = (1/K) Σ_y μ_y (unweighted):
/// <code>
/// Σ_w = (1/K) Σ_y (1/|G_y|) Σ_{n∈G_y} (h_n − μ_y)(h_n − μ_y)ᵀ
/// Σ_b = (1/K) Σ_y (μ_y − μ)(μ_y − μ)ᵀ
/// ν   = (1/K) · tr(Σ_w · Σ_b⁺)
/// </code>
/// computed without any d×d matrix. With M = [μ_1 − μ, …, μ_K − μ] (d×K) and A = M/√K, Σ_b = A·Aᵀ,
/// whose nonzero eigenvalues are those of the K×K Gram matrix G = AᵀA = MᵀM/K. For each
/// eigenpair G·v_k = λ_k·v_k, u_k = A·v_k/√λ_k is a unit eigenvector of Σ_b with eigenvalue λ_k, so
/// <code>
/// Σ_b⁺ = Σ_{k: λ_k > τ} u_k u_kᵀ / λ_k,        τ = d · ε · max_k λ_k   (ε = 2⁻⁵² of float64)
/// ν    = (1/K) Σ_{k: λ_k > τ} (u_kᵀ Σ_w u_k) / λ_k
/// u_kᵀ Σ_w u_k = (1/K) Σ_y (1/|G_y|) Σ_{n∈G_y} (u_k · (h_n − μ_y))²
/// </code>
/// τ is the cutoff of numpy.linalg.pinv(Σ_b, rtol=None) (and of matrix_rank): an eigenvalue of the
/// d×d Σ_b at most max(d, d)·ε times the largest counts as zero. Σ_b has rank ≤ K − 1 (the
/// columns of M sum to zero), so one eigenvalue of G is zero up to rounding and is always cut;
/// with d &lt; K − 1 more are. In terms of the singular values σ_k of M: λ_k = σ_k²/K.
///
/// Memory: the pooled vectors of every layer, (L + 1)·N·d float32 values for N examples (BERT-base,
/// 10,000 examples: 13 · 10⁴ · 768 · 4 B ≈ 400 MB), plus per layer N·d float64 while that layer is
/// scored, K·d for the class means and K² for G: linear in d and in N, never d². Time per layer:
/// O(N·d·K) after one forward pass over the data.
/// </summary>
public static class Variability
{
    /// <summary>The automatic head-layer rule's default tolerance: the smallest l ≥ 1 with ν_l ≤ (1 + 0.05)·min ν.</summary>
    public const double DefaultTolerance = 0.05;

    /// <summary>
    /// ν of one layer (see the class summary): <paramref name="x"/> holds N vectors of width
    /// <paramref name="d"/> row-major (N·d values), <paramref name="labels"/> their N class ids (any
    /// integers; the classes are those present, at least two). NaN when every class mean is the
    /// same (Σ_b = 0).
    /// </summary>
    public static double Nu<T>(ReadOnlySpan<T> x, int d, ReadOnlySpan<int> labels) where T : struct, IFloatingPointIeee754<T>
    {
        int n = labels.Length;
        if (d < 1 || x.Length != n * d) throw new EngineException($"variability: {x.Length} values for {n} vectors of width {d}");
        var classIds = new Dictionary<int, int>();
        var classOf = new int[n];
        for (int i = 0; i < n; i++)
        {
            if (!classIds.TryGetValue(labels[i], out int c)) classIds[labels[i]] = c = classIds.Count;
            classOf[i] = c;
        }
        int k = classIds.Count;
        if (k < 2) throw new EngineException($"variability: the data has {k} class{(k == 1 ? "" : "es")}; ν needs at least two");

        // Class means μ_y and the centred means M_y = μ_y − μ, K rows of d.
        var counts = new int[k];
        var means = new double[k * d];
        for (int i = 0; i < n; i++)
        {
            counts[classOf[i]]++;
            var row = x.Slice(i * d, d);
            var mean = means.AsSpan(classOf[i] * d, d);
            for (int j = 0; j < d; j++) mean[j] += double.CreateTruncating(row[j]);
        }
        for (int c = 0; c < k; c++)
            for (int j = 0; j < d; j++) means[c * d + j] /= counts[c];
        var centred = (double[])means.Clone();
        for (int j = 0; j < d; j++)
        {
            double global = 0;
            for (int c = 0; c < k; c++) global += means[c * d + j];
            global /= k;
            for (int c = 0; c < k; c++) centred[c * d + j] -= global;
        }

        // G = MᵀM / K and its eigenpairs.
        var gram = new double[k * k];
        for (int a = 0; a < k; a++)
            for (int b = 0; b <= a; b++)
            {
                double dot = 0;
                for (int j = 0; j < d; j++) dot += centred[a * d + j] * centred[b * d + j];
                gram[a * k + b] = gram[b * k + a] = dot / k;
            }
        var (values, vectors) = SymmetricEigen.Decompose(gram, k);
        double largest = values[^1];
        if (!(largest > 0)) return double.NaN;
        double cutoff = PseudoInverseCutoff(d, largest);

        double nu = 0;
        var u = new double[d];
        var sums = new double[k];
        for (int e = 0; e < k; e++)
        {
            double lambda = values[e];
            if (!(lambda > cutoff)) continue;
            // u = A v / √λ = Σ_y v_y M_y / √(K λ).
            Array.Clear(u);
            double scale = 1 / Math.Sqrt(k * lambda);
            for (int c = 0; c < k; c++)
            {
                double w = vectors[c * k + e] * scale;
                for (int j = 0; j < d; j++) u[j] += w * centred[c * d + j];
            }
            // u·μ_y per class, then Σ over examples of (u·h_n − u·μ_y)².
            var projectedMeans = new double[k];
            for (int c = 0; c < k; c++)
                for (int j = 0; j < d; j++) projectedMeans[c] += u[j] * means[c * d + j];
            Array.Clear(sums);
            for (int i = 0; i < n; i++)
            {
                var row = x.Slice(i * d, d);
                double dot = 0;
                for (int j = 0; j < d; j++) dot += u[j] * double.CreateTruncating(row[j]);
                double r = dot - projectedMeans[classOf[i]];
                sums[classOf[i]] += r * r;
            }
            double within = 0;
            for (int c = 0; c < k; c++) within += sums[c] / counts[c];
            nu += within / k / lambda;
        }
        return nu / k;
    }

    /// <summary>Machine epsilon of float64, 2⁻⁵² (the spacing of doubles at 1; not
    /// <see cref="double.Epsilon"/>, the smallest subnormal).</summary>
    public const double Float64Epsilon = 2.220446049250313e-16;

    /// <summary>τ: eigenvalues of the d×d Σ_b at or below this count as zero in its pseudo-inverse
    /// (numpy.linalg.pinv's rtol=None rule, max(d, d)·ε relative to the largest).</summary>
    public static double PseudoInverseCutoff(int d, double largestEigenvalue) => d * Float64Epsilon * largestEigenvalue;

    /// <summary>The automatic head layer: the smallest l in 1…L with ν_l ≤ (1 + tolerance)·min_{l ≥ 1} ν_l
    /// (<paramref name="nu"/> indexed as <see cref="VariabilityResult.Nu"/>; the embedding output,
    /// index 0, is never chosen, and undefined values are passed over).</summary>
    public static int AutoHeadLayer(IReadOnlyList<double> nu, double tolerance = DefaultTolerance)
    {
        if (!(tolerance >= 0)) throw new EngineException($"variability: the tolerance must be at least 0, got {tolerance}");
        var blocks = Enumerable.Range(1, Math.Max(0, nu.Count - 1)).Where(l => double.IsFinite(nu[l])).ToList();
        if (blocks.Count == 0) throw new EngineException("variability: no block has a defined ν");
        double min = blocks.Min(l => nu[l]);
        return blocks.First(l => nu[l] <= (1 + tolerance) * min);
    }

    /// <summary>The ids that are never pooled: every special token the tokenizer's template adds
    /// ([CLS], [SEP], &lt;s&gt;, &lt;/s&gt;, bos, eos) and the pad id.</summary>
    public static HashSet<int> SpecialTokenIds(TextTokenizer tokenizer)
    {
        var ids = tokenizer.Template.Single.Concat(tokenizer.Template.Pair).SelectMany(p => p.SpecialIds ?? []).ToHashSet();
        ids.Add(tokenizer.PadId);
        return ids;
    }

    /// <summary>
    /// Mean over the pooled tokens of each row: <paramref name="states"/> [B, T, D] row-major,
    /// <paramref name="ids"/> and <paramref name="mask"/> [B, T]; a token is pooled when its mask is
    /// 1 and its id is not in <paramref name="special"/>. Writes row r's mean into
    /// <paramref name="into"/>[r·D …]; a row without pooled tokens gets zeros (callers skip such rows
    /// beforehand).
    /// </summary>
    public static void PoolMeans(ReadOnlySpan<float> states, ReadOnlySpan<int> ids, ReadOnlySpan<int> mask, int b, int t, int d,
        IReadOnlySet<int> special, Span<float> into)
    {
        var sum = new double[d];
        for (int r = 0; r < b; r++)
        {
            Array.Clear(sum);
            int count = 0;
            for (int j = 0; j < t; j++)
            {
                if (mask[r * t + j] == 0 || special.Contains(ids[r * t + j])) continue;
                count++;
                var token = states.Slice((r * t + j) * d, d);
                for (int c = 0; c < d; c++) sum[c] += token[c];
            }
            var row = into.Slice(r * d, d);
            for (int c = 0; c < d; c++) row[c] = count == 0 ? 0 : (float)(sum[c] / count);
        }
    }

    /// <summary>
    /// ν of every layer of <paramref name="model"/> on <paramref name="data"/> (a classification
    /// dataset): one forward pass in evaluation mode without gradients, each layer's states
    /// mean-pooled over the non-special tokens (<see cref="PoolMeans"/>), then <see cref="Nu{T}"/>
    /// per layer. Layer L of a Llama-family model is the final-normed output, as Hugging Face's
    /// output_hidden_states gives it. <paramref name="progress"/> gets (examples done, examples in all).
    /// </summary>
    public static VariabilityResult Analyze(SequenceClassifier model, TextTokenizer tokenizer, Dataset data, VariabilityOptions options,
        Action<int, int>? progress = null)
    {
        options.Validate();
        CheckData(data);
        var examples = data.Examples;
        if (options.MaxExamples is int max && examples.Count > max)
        {
            var order = Enumerable.Range(0, examples.Count).ToArray();
            new Random(options.Seed).Shuffle(order);
            examples = order.Take(max).Order().Select(i => examples[i]).ToList();
        }
        var special = SpecialTokenIds(tokenizer);
        var all = Batches.Encode(examples, tokenizer, options.MaxLength);
        var encoded = all.Where(e => e.Ids.Any(id => !special.Contains(id))).ToList();
        int skipped = all.Count - encoded.Count;
        if (encoded.Count < 2) throw new EngineException($"{data.Source}: {encoded.Count} example{(encoded.Count == 1 ? "" : "s")} with tokens to pool; ν needs at least two");

        int n = encoded.Count;
        float[][]? pooled = null;
        int d = 0;
        bool wasTraining = model.Training;
        model.Eval();
        try
        {
            using var noGrad = Tape.NoGrad();
            int done = 0;
            foreach (var idx in Batches.Order(encoded, options.BatchSize, null, false))
            {
                using var scope = Scope.Begin();
                var batch = Batches.Collate(encoded, idx, tokenizer.PadId);
                var states = HiddenStates(model, batch);
                int b = batch.Ids.Dim(0), t = batch.Ids.Dim(1);
                if (states[0].Dim(1) != t)
                    throw new EngineException($"variability: the model's hidden states have {states[0].Dim(1)} positions for {t} tokens (prompt tuning inserts positions); analyse its base model instead");
                d = states[0].Dim(2);
                pooled ??= states.Select(_ => new float[(long)n * d]).ToArray();
                var ids = batch.Ids.ToIntArray();
                var mask = batch.Mask.ToIntArray();
                for (int l = 0; l < states.Count; l++)
                {
                    // Read in place on the CPU (a host copy from a device, released with the step scope).
                    var host = states[l].Device == Device.Cpu ? states[l] : states[l].To(Device.Cpu);
                    ReadOnlySpan<float> values = host.DType == DType.F32 ? host.Span<float>() : host.ToFloatArray();
                    PoolMeans(values, ids, mask, b, t, d, special, pooled[l].AsSpan(done * d, b * d));
                }
                done += b;
                progress?.Invoke(done, n);
            }
        }
        finally
        {
            if (wasTraining) model.Train();
        }
        var labels = encoded.Select(e => e.Label).ToArray();
        var nu = pooled!.Select(layer => Nu<float>(layer, d, labels)).ToArray();
        return new VariabilityResult(nu, n, labels.Distinct().Count(), skipped, d);
    }

    /// <summary>Throws unless <paramref name="data"/> is a fully labelled classification dataset with two classes or more.</summary>
    public static void CheckData(Dataset data)
    {
        if (data.IsRegression) throw new EngineException($"{data.Source}: a regression task has no classes; ν needs class labels");
        if (!data.IsFullyLabelled) throw new EngineException($"{data.Source}: some examples have no label; ν needs every example labelled");
        int classes = data.Examples.Select(e => e.Label).Distinct().Count();
        if (classes < 2) throw new EngineException($"{data.Source}: the data has {classes} class{(classes == 1 ? "" : "es")}; ν needs at least two");
    }

    /// <summary>The backbone's hidden states (embedding output, then each block's output) without the
    /// head: a Llama-family classifier needs a pad token to pick its pooled position, the states do not.</summary>
    private static IReadOnlyList<Tensor> HiddenStates(SequenceClassifier model, TensorBatch batch) => model switch
    {
        BertForSequenceClassification bert => bert.Encoder.Forward(batch.Ids, batch.Mask, batch.Types).HiddenStates,
        LlamaForSequenceClassification llama => llama.Decoder.Forward(batch.Ids, batch.Mask).HiddenStates,
        _ => throw new EngineException($"variability: not wired for {model.GetType().Name} (BERT, RoBERTa and the Llama family are)"),
    };
}
