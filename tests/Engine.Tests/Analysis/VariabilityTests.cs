using System.Text.Json;
using Engine.Models;
using Engine.Models.Analysis;
using Engine.Models.Data;
using Engine.Models.Demo;
using Engine.Models.Tokenization;
using NUnit.Framework;

namespace Engine.Tests.Analysis;

/// <summary>Hidden-state variability ν: the low-rank computation against the dense formula with a
/// numpy-style pseudo-inverse (float64), its behaviour, the pooling of tokens, the whole-model
/// analysis on BERT and Llama folders, and `engine analyze variability`.</summary>
public class VariabilityTests
{
    // ------------------------------------------------------------------ float64 reference

    /// <summary>N vectors of width d (row-major) and their labels: class c (of k) has
    /// count(c) = 3 + 2c examples (unequal sizes, so the unweighted global mean and the per-class
    /// 1/|G_y| matter), mean <paramref name="means"/>[c] (d values) and Gaussian noise of std 1 with
    /// a per-dimension scale 0.5…1.5, made exactly zero-mean within each class (up to rounding) so
    /// the sample class means are the given ones.</summary>
    private static (double[] X, int[] Labels) Data(double[][] means, int seed, int extra = 0)
    {
        int k = means.Length, d = means[0].Length;
        var rng = new Random(seed);
        var scale = Enumerable.Range(0, d).Select(_ => 0.5 + rng.NextDouble()).ToArray();
        var x = new List<double>();
        var labels = new List<int>();
        for (int c = 0; c < k; c++)
        {
            int count = 3 + 2 * c + extra;
            var noise = new double[count, d];
            for (int i = 0; i < count; i++)
                for (int j = 0; j < d; j++) noise[i, j] = Gaussian(rng) * scale[j];
            for (int j = 0; j < d; j++)
            {
                double m = 0;
                for (int i = 0; i < count; i++) m += noise[i, j];
                for (int i = 0; i < count; i++) noise[i, j] -= m / count;
            }
            for (int i = 0; i < count; i++)
            {
                for (int j = 0; j < d; j++) x.Add(means[c][j] + noise[i, j]);
                labels.Add(10 * c + 7); // any integers name the classes
            }
        }
        return (x.ToArray(), labels.ToArray());
    }

    private static double Gaussian(Random rng) => Math.Sqrt(-2 * Math.Log(1 - rng.NextDouble())) * Math.Cos(2 * Math.PI * rng.NextDouble());

    private static double[][] RandomMeans(int k, int d, int seed, double spread = 2)
    {
        var rng = new Random(seed);
        return Enumerable.Range(0, k).Select(_ => Enumerable.Range(0, d).Select(_ => spread * Gaussian(rng)).ToArray()).ToArray();
    }

    private static double[] MatMul(double[] a, double[] b, int n)
    {
        var r = new double[n * n];
        for (int i = 0; i < n; i++)
            for (int k = 0; k < n; k++)
                for (int j = 0; j < n; j++) r[i * n + j] += a[i * n + k] * b[k * n + j];
        return r;
    }

    private static double Norm(double[] a) => Math.Sqrt(a.Sum(v => v * v));

    private static double Distance(double[] a, double[] b) => Math.Sqrt(a.Zip(b, (x, y) => (x - y) * (x - y)).Sum());

    /// <summary>
    /// numpy.linalg.pinv(a, rtol=None) for a symmetric positive semi-definite d×d matrix: for such a
    /// matrix the SVD is the eigendecomposition, so pinv = Σ_{λ > d·ε·λ_max} v vᵀ / λ. The result is
    /// checked against the four Penrose conditions (which define the pseudo-inverse uniquely), so
    /// the reference does not rest on the eigen-solver being right.
    /// </summary>
    private static double[] DensePinv(double[] a, int d)
    {
        var (values, vectors) = SymmetricEigen.Decompose(a, d);
        double cutoff = Variability.PseudoInverseCutoff(d, values.Max());
        var p = new double[d * d];
        for (int e = 0; e < d; e++)
        {
            if (!(values[e] > cutoff)) continue;
            for (int i = 0; i < d; i++)
                for (int j = 0; j < d; j++) p[i * d + j] += vectors[i * d + e] * vectors[j * d + e] / values[e];
        }
        var ap = MatMul(a, p, d);
        var pa = MatMul(p, a, d);
        Assert.That(Distance(MatMul(ap, a, d), a), Is.LessThanOrEqualTo(1e-10 * Norm(a)), "A A⁺ A = A");
        Assert.That(Distance(MatMul(pa, p, d), p), Is.LessThanOrEqualTo(1e-10 * Norm(p)), "A⁺ A A⁺ = A⁺");
        var apT = Enumerable.Range(0, d * d).Select(i => ap[i % d * d + i / d]).ToArray();
        var paT = Enumerable.Range(0, d * d).Select(i => pa[i % d * d + i / d]).ToArray();
        Assert.That(Distance(ap, apT), Is.LessThanOrEqualTo(1e-10 * Norm(ap)), "(A A⁺)ᵀ = A A⁺");
        Assert.That(Distance(pa, paT), Is.LessThanOrEqualTo(1e-10 * Norm(pa)), "(A⁺ A)ᵀ = A⁺ A");
        return p;
    }

    /// <summary>The paper's formula written out with d×d matrices: Σ_w, Σ_b, ν = tr(Σ_w Σ_b⁺)/|Y|.</summary>
    private static double DenseNu(double[] x, int d, int[] labels)
    {
        var classes = labels.Distinct().ToArray();
        int k = classes.Length;
        var means = classes.Select(c =>
        {
            var rows = Enumerable.Range(0, labels.Length).Where(i => labels[i] == c).ToArray();
            return Enumerable.Range(0, d).Select(j => rows.Average(i => x[i * d + j])).ToArray();
        }).ToArray();
        var global = Enumerable.Range(0, d).Select(j => means.Average(m => m[j])).ToArray();
        var within = new double[d * d];
        var between = new double[d * d];
        for (int c = 0; c < k; c++)
        {
            var rows = Enumerable.Range(0, labels.Length).Where(i => labels[i] == classes[c]).ToArray();
            foreach (var i in rows)
                for (int a = 0; a < d; a++)
                    for (int b = 0; b < d; b++)
                        within[a * d + b] += (x[i * d + a] - means[c][a]) * (x[i * d + b] - means[c][b]) / rows.Length / k;
            for (int a = 0; a < d; a++)
                for (int b = 0; b < d; b++)
                    between[a * d + b] += (means[c][a] - global[a]) * (means[c][b] - global[b]) / k;
        }
        var product = MatMul(within, DensePinv(between, d), d);
        double trace = 0;
        for (int i = 0; i < d; i++) trace += product[i * d + i];
        return trace / k;
    }

    [TestCase(6, 3, 1)]
    [TestCase(12, 5, 2)]
    [TestCase(5, 2, 3)]
    [TestCase(2, 5, 4)] // d < |Y| − 1: Σ_b has rank d, and the Gram matrix one more zero eigenvalue
    [TestCase(1, 3, 5)]
    public void TheLowRankFormEqualsTheDenseFormula(int d, int k, int seed)
    {
        var (x, labels) = Data(RandomMeans(k, d, seed), seed + 100);
        double dense = DenseNu(x, d, labels);
        double lowRank = Variability.Nu<double>(x, d, labels);
        Assert.That(double.IsFinite(dense) && dense > 0, $"dense ν {dense}");
        Assert.That(lowRank, Is.EqualTo(dense).Within(1e-9 * dense));
    }

    [Test]
    public void CollinearClassMeansGiveARankOneBetweenClassMatrixOnBothSides()
    {
        // Class means −v, 0, +v: Σ_b = (2/3)·v vᵀ has rank 1 (not |Y| − 1 = 2); both computations must
        // cut the rounding-level eigenvalues instead of inverting them. In closed form, with u = v/|v|
        // and λ = (2/3)|v|²: ν = (1/3)·uᵀΣ_w u / λ, uᵀΣ_w u = (1/3) Σ_y (1/|G_y|) Σ_n (u·(h_n − μ_y))².
        var v = new[] { 1.0, -2.0, 0.5, 3.0, 0.25 };
        var means = new[] { v.Select(a => -a).ToArray(), new double[5], v };
        var (x, labels) = Data(means, 8);
        double length = Norm(v);
        double within = 0;
        for (int c = 0; c < 3; c++)
        {
            var rows = Enumerable.Range(0, labels.Length).Where(i => labels[i] == 10 * c + 7).ToArray();
            within += rows.Sum(i => Math.Pow(Enumerable.Range(0, 5).Sum(j => v[j] / length * (x[i * 5 + j] - means[c][j])), 2)) / rows.Length / 3;
        }
        double closedForm = within / (2.0 / 3 * length * length) / 3;
        Assert.That(DenseNu(x, 5, labels), Is.EqualTo(closedForm).Within(1e-9 * closedForm));
        Assert.That(Variability.Nu<double>(x, 5, labels), Is.EqualTo(closedForm).Within(1e-9 * closedForm));
    }

    [Test]
    public void ALayerThatSeparatesTheClassesHasTheLowerNu()
    {
        // The same within-class noise around class means 20 times further apart: Σ_b grows 400-fold,
        // Σ_w is unchanged, so ν falls 400-fold.
        var means = RandomMeans(3, 8, 21, spread: 0.2);
        var (close, labels) = Data(means, 22);
        var (apart, _) = Data(means.Select(m => m.Select(a => 20 * a).ToArray()).ToArray(), 22);
        double nuClose = Variability.Nu<double>(close, 8, labels), nuApart = Variability.Nu<double>(apart, 8, labels);
        Assert.That(nuApart, Is.LessThan(nuClose));
        Assert.That(nuClose / nuApart, Is.EqualTo(400).Within(400 * 1e-9));
    }

    [Test]
    public void NuIgnoresATranslationAndAGlobalScaleOfTheStates()
    {
        var (x, labels) = Data(RandomMeans(4, 6, 31), 32);
        double nu = Variability.Nu<double>(x, 6, labels);
        var shifted = x.Select((a, i) => 3 * a + 100 + i % 6).ToArray();
        Assert.That(Variability.Nu<double>(shifted, 6, labels), Is.EqualTo(nu).Within(1e-8 * nu));
        Assert.That(Variability.Nu<float>(x.Select(a => (float)a).ToArray(), 6, labels), Is.EqualTo(nu).Within(1e-5 * nu), "float32 input");
    }

    [Test]
    public void EqualClassMeansLeaveNuUndefinedAndOneClassIsAnError()
    {
        // The same rows under two labels: the class means are equal to the last bit, Σ_b = 0.
        var (rows, _) = Data([new double[4]], 41, extra: 5);
        var x = rows.Concat(rows).ToArray();
        var labels = Enumerable.Range(0, x.Length / 4).Select(i => i < rows.Length / 4 ? 0 : 1).ToArray();
        Assert.That(Variability.Nu<double>(x, 4, labels), Is.NaN);
        var e = Assert.Throws<EngineException>(() => Variability.Nu<double>(x, 4, labels.Select(_ => 1).ToArray()))!;
        Assert.That(e.Message, Does.Contain("1 class"));
    }

    [Test]
    public void TheEigenSolverReconstructsASymmetricMatrix()
    {
        var rng = new Random(5);
        const int n = 9;
        var b = Enumerable.Range(0, n * n).Select(_ => Gaussian(rng)).ToArray();
        var a = new double[n * n];
        for (int i = 0; i < n; i++)
            for (int j = 0; j < n; j++) a[i * n + j] = b[i * n + j] + b[j * n + i];
        var (values, vectors) = SymmetricEigen.Decompose(a, n);
        Assert.That(values, Is.Ordered);
        for (int e = 0; e < n; e++)
        {
            var column = Enumerable.Range(0, n).Select(i => vectors[i * n + e]).ToArray();
            var av = Enumerable.Range(0, n).Select(i => Enumerable.Range(0, n).Sum(j => a[i * n + j] * column[j])).ToArray();
            Assert.That(Distance(av, column.Select(c => c * values[e]).ToArray()), Is.LessThan(1e-12 * Norm(a)), $"A v = λ v for λ {values[e]}");
            for (int f = 0; f < n; f++)
                Assert.That(Enumerable.Range(0, n).Sum(i => vectors[i * n + e] * vectors[i * n + f]), Is.EqualTo(e == f ? 1 : 0).Within(1e-12));
        }
    }

    // ------------------------------------------------------------------ pooling and the rule

    [Test]
    public void PoolingAveragesTheTokensThatAreNeitherSpecialNorPadding()
    {
        // Two rows of 4 positions, width 2: row 0 = [CLS] a b [SEP], row 1 = [CLS] c [SEP] pad.
        int[] ids = [2, 10, 11, 3, 2, 12, 3, 0];
        int[] mask = [1, 1, 1, 1, 1, 1, 1, 0];
        float[] states = [100, 100, 1, 2, 3, 6, 100, 100, 100, 100, 5, 7, 100, 100, 100, 100];
        var pooled = new float[4];
        Variability.PoolMeans(states, ids, mask, 2, 4, 2, new HashSet<int> { 0, 2, 3 }, pooled);
        Assert.That(pooled, Is.EqualTo(new float[] { 2, 4, 5, 7 }));
        // A masked token is left out even when its id is an ordinary one.
        mask[2] = 0;
        Variability.PoolMeans(states, ids, mask, 2, 4, 2, new HashSet<int> { 0, 2, 3 }, pooled);
        Assert.That(pooled[..2], Is.EqualTo(new float[] { 1, 2 }));
    }

    [Test]
    public void TheSpecialTokensAreTheTemplatesAndPadding()
    {
        using var temp = new TempFolder();
        var folder = DemoModel.CreateFolder(temp.File("m"), 1, hidden: 32);
        var tokenizer = TextTokenizer.FromFolder(folder);
        var special = Variability.SpecialTokenIds(tokenizer);
        Assert.That(special, Is.EquivalentTo(new[] { tokenizer.TokenToId("[CLS]")!.Value, tokenizer.TokenToId("[SEP]")!.Value, tokenizer.PadId }));
    }

    [Test]
    public void TheAutomaticHeadLayerIsTheFirstBlockWithinTheToleranceOfTheMinimum()
    {
        double[] nu = [100, 50, 10, 9.8, 9.6, 12];
        Assert.That(Variability.AutoHeadLayer(nu), Is.EqualTo(2), "10 ≤ 1.05 · 9.6");
        Assert.That(Variability.AutoHeadLayer(nu, 0), Is.EqualTo(4));
        Assert.That(Variability.AutoHeadLayer(nu, 0.03), Is.EqualTo(3), "9.8 ≤ 1.03 · 9.6 < 10");
        Assert.That(Variability.AutoHeadLayer([1, 5, 4]), Is.EqualTo(2), "the embedding output is never the head layer");
        Assert.That(Variability.AutoHeadLayer([1, double.NaN, 4]), Is.EqualTo(2), "undefined values are passed over");
    }

    // ------------------------------------------------------------------ whole models

    private static Dataset DemoData(int count, int seed) => DemoModel.Data(count, seed, "demo");

    [Test]
    public void ABertModelGivesOneNuPerLayerIndependentOfBatchingAndPadding()
    {
        using var temp = new TempFolder();
        var folder = DemoModel.CreateFolder(temp.File("m"), 1, hidden: 32);
        var tokenizer = TextTokenizer.FromFolder(folder);
        var model = SequenceClassifier.FromFolder(folder);
        var data = DemoData(120, 3);
        var one = Variability.Analyze(model, tokenizer, data, new VariabilityOptions { BatchSize = 64 });
        Assert.That(one.Nu, Has.Length.EqualTo(3), "embeddings and 2 blocks");
        Assert.That(one.Nu, Has.All.GreaterThan(0));
        Assert.That((one.Examples, one.Classes, one.Skipped, one.HiddenSize), Is.EqualTo((120, 2, 0, 32)));
        // Batches of 7 pad differently (and the two-clause sentences much less): padding that leaked
        // into the pooled means or the attention would change ν.
        var other = Variability.Analyze(model, tokenizer, data, new VariabilityOptions { BatchSize = 7 });
        for (int l = 0; l < 3; l++) Assert.That(other.Nu[l], Is.EqualTo(one.Nu[l]).Within(1e-4 * one.Nu[l]), $"layer {l}");
    }

    [Test]
    public void OnAnotherDeviceTheValuesAreTheCpus()
    {
        // The mirror device runs the CPU's kernels behind a device boundary: host reads of its
        // memory throw, and the results must be bit-identical.
        using var temp = new TempFolder();
        var folder = DemoModel.CreateFolder(temp.File("m"), 1, hidden: 32);
        var tokenizer = TextTokenizer.FromFolder(folder);
        var data = DemoData(50, 9);
        var cpu = Variability.Analyze(SequenceClassifier.FromFolder(folder), tokenizer, data, new VariabilityOptions { BatchSize = 16 });
        var model = SequenceClassifier.FromFolder(folder);
        model.To(Devices.MirrorBackend.Install());
        var other = Variability.Analyze(model, tokenizer, data, new VariabilityOptions { BatchSize = 16 });
        Assert.That(other.Nu, Is.EqualTo(cpu.Nu));
    }

    [Test]
    public void MaxExamplesSamplesAcrossAFileSortedByLabel()
    {
        using var temp = new TempFolder();
        var folder = DemoModel.CreateFolder(temp.File("m"), 1, hidden: 32);
        var data = DemoData(200, 4);
        var sorted = data with { Examples = data.Examples.OrderBy(e => e.Label).ToList() };
        var result = Variability.Analyze(SequenceClassifier.FromFolder(folder), TextTokenizer.FromFolder(folder), sorted, new VariabilityOptions { MaxExamples = 40 });
        Assert.That((result.Examples, result.Classes), Is.EqualTo((40, 2)));
    }

    /// <summary>The tiny Llama fixture (hidden 32, 2 blocks, vocabulary 101) without a pad_token_id,
    /// with a word-level tokenizer.json over the demo's words: bos &lt;s&gt; (1) before every text.</summary>
    private static HfModelFolder LlamaFolder(TempFolder temp)
    {
        var source = Llama.LlamaReferenceTests.Folder("llama");
        var dir = temp.File("llama");
        Directory.CreateDirectory(dir);
        File.Copy(Path.Combine(source, "model.safetensors"), Path.Combine(dir, "model.safetensors"));
        var config = System.Text.Json.Nodes.JsonNode.Parse(File.ReadAllText(Path.Combine(source, "config.json")))!.AsObject();
        config.Remove("pad_token_id");
        File.WriteAllText(Path.Combine(dir, "config.json"), config.ToJsonString());
        var vocab = new[] { "<unk>", "<s>", "</s>" }.Concat(NegationTask.Vocabulary().Skip(5)).Select((t, i) => (t, i)).ToDictionary(p => p.t, p => p.i);
        var json = new
        {
            added_tokens = new[] { "<unk>", "<s>", "</s>" }.Select((t, i) => new { id = i, content = t, special = true }),
            pre_tokenizer = new { type = "WhitespaceSplit" },
            post_processor = new
            {
                type = "TemplateProcessing",
                single = new object[] { new { SpecialToken = new { id = "<s>", type_id = 0 } }, new { Sequence = new { id = "A", type_id = 0 } } },
                pair = new object[] { new { SpecialToken = new { id = "<s>", type_id = 0 } }, new { Sequence = new { id = "A", type_id = 0 } }, new { Sequence = new { id = "B", type_id = 1 } } },
                special_tokens = new Dictionary<string, object> { ["<s>"] = new { id = "<s>", ids = new[] { 1 }, tokens = new[] { "<s>" } } },
            },
            model = new { type = "WordPiece", unk_token = "<unk>", continuing_subword_prefix = "##", max_input_chars_per_word = 100, vocab },
        };
        File.WriteAllText(Path.Combine(dir, "tokenizer.json"), JsonSerializer.Serialize(json));
        return HfModelFolder.Open(dir);
    }

    [Test]
    public void ALlamaModelWithoutAPadTokenGivesOneNuPerLayer()
    {
        using var temp = new TempFolder();
        var folder = LlamaFolder(temp);
        var tokenizer = TextTokenizer.FromFolder(folder);
        Assert.That(tokenizer.Encode("the movie is bad .").Ids[0], Is.EqualTo(1), "bos first");
        Assert.That(Variability.SpecialTokenIds(tokenizer), Does.Contain(1));
        var model = SequenceClassifier.FromFolder(folder);
        var one = Variability.Analyze(model, tokenizer, DemoData(60, 5), new VariabilityOptions { BatchSize = 16 });
        Assert.That(one.Nu, Has.Length.EqualTo(3));
        Assert.That(one.Nu, Has.All.GreaterThan(0));
        var other = Variability.Analyze(model, tokenizer, DemoData(60, 5), new VariabilityOptions { BatchSize = 5 });
        for (int l = 0; l < 3; l++) Assert.That(other.Nu[l], Is.EqualTo(one.Nu[l]).Within(1e-4 * one.Nu[l]), $"layer {l}");
    }

    // ------------------------------------------------------------------ engine analyze variability

    [Test]
    public void TheCommandPrintsWritesAndPlotsTheLibrarysValues()
    {
        using var temp = new TempFolder();
        var folder = DemoModel.CreateFolder(temp.File("m"), 1, hidden: 32);
        var data = DemoData(80, 6);
        File.WriteAllLines(temp.File("train.tsv"), new[] { "sentence\tlabel" }.Concat(data.Examples.Select(e => $"{e.Text}\t{DemoModel.LabelNames[e.Label]}")));
        var r = EngineProcess.Run("analyze", "variability", "--model", folder.Path, "--data", temp.File("train.tsv"), "--out", temp.File("nu.json"), "--plot", temp.File("nu.png"));
        Assert.That(r.Exit, Is.EqualTo(0), r.Err);
        Assert.That(r.Out, Does.Contain("layer emb").And.Contain("layer 2").And.Contain("automatic head layer"));
        using var json = JsonDocument.Parse(File.ReadAllText(temp.File("nu.json")));
        var nu = json.RootElement.GetProperty("nu").EnumerateArray().Select(v => v.GetDouble()).ToArray();
        var expected = Variability.Analyze(SequenceClassifier.FromFolder(folder), TextTokenizer.FromFolder(folder), data, new VariabilityOptions()).Nu;
        Assert.That(nu, Has.Length.EqualTo(3));
        for (int l = 0; l < 3; l++) Assert.That(nu[l], Is.EqualTo(expected[l]).Within(1e-9 * expected[l]), $"layer {l}");
        Assert.That(new FileInfo(temp.File("nu.png")).Length, Is.GreaterThan(1000));
    }

    [Test]
    public void BadInputIsOneLineAndWritesNothing()
    {
        using var temp = new TempFolder();
        var model = DemoModel.CreateFolder(temp.File("m"), 1, hidden: 32).Path;
        var good = temp.File("train.tsv");
        File.WriteAllLines(good, ["sentence\tlabel", "the movie is bad .\t0", "the food was good .\t1"]);
        File.WriteAllLines(temp.File("one.tsv"), ["sentence\tlabel", "the movie is bad .\t0", "the food was bad .\t0"]);
        File.WriteAllLines(temp.File("stsb.tsv"), ["sentence1\tsentence2\tscore", "the movie is bad .\tthe food was bad .\t2.5", "the movie is good .\tthe food was bad .\t1.0"]);
        var output = temp.File("nu.json");
        string Fails(params string[] args)
        {
            var line = EngineProcess.AssertUserError(EngineProcess.Run(["analyze", "variability", .. args, "--out", output]));
            Assert.That(File.Exists(output), Is.False, "nothing written");
            return line;
        }
        Assert.That(Fails("--model", model, "--data", temp.File("missing.tsv")), Does.Contain("missing.tsv"));
        Assert.That(Fails("--model", temp.File("nothing"), "--data", good), Does.Contain("nothing"));
        Assert.That(Fails("--model", model, "--data", temp.File("stsb.tsv"), "--task", "stsb"), Does.Contain("regression"));
        Assert.That(Fails("--model", model, "--data", temp.File("one.tsv")), Does.Contain("1 class"));
        Assert.That(Fails("--model", model, "--data", good, "--max-examples", "1"), Does.Contain("max examples"));
        Assert.That(Fails("--model", model, "--data", good, "--max-len", "1"), Does.Contain("max length"));
    }
}
