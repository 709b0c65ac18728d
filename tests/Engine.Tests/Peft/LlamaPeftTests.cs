using Engine.Autograd;
using Engine.IO;
using Engine.Models;
using Engine.Models.Llama;
using Engine.Models.Peft;
using Engine.Models.Peft.Lora;
using Engine.Models.Peft.Prefix;
using Engine.Models.Peft.Prompt;
using Engine.Optim;
using NUnit.Framework;

namespace Engine.Tests.Peft;

/// <summary>The PEFT methods and depth-wise pooling on the tiny Llama fixtures (hidden 32, 2
/// layers, 4 heads, 2 kv heads: key/value width 16; pad 0, bos 1; 3 labels).</summary>
public class LlamaPeftTests
{
    private TempFolder temp = null!;

    [SetUp] public void SetUp() => temp = new TempFolder();
    [TearDown] public void TearDown() => temp.Dispose();

    private static HfModelFolder Fixture(string kind = "llama") => HfModelFolder.Open(Llama.LlamaReferenceTests.Folder(kind));

    private static PeftOptions Options(string method, string? pooling = null) => new()
    {
        Method = method, Pooling = pooling,
        Settings = method switch
        {
            "prefix" => new PrefixOptions { Length = 3 }, "prompt" => new PromptOptions { Length = 3 },
            "lora" or "dora" => new LoraOptions { Rank = 4, Alpha = 8, Dropout = 0.1 }, _ => null,
        },
    };

    private static SequenceClassifier Model(PeftOptions? peft, DType dtype = DType.F32, string kind = "llama", int seed = 3)
    {
        var folder = Fixture(kind);
        var model = SequenceClassifier.FromFolder(folder, seed, dtype);
        Assert.That(model, Is.InstanceOf<LlamaForSequenceClassification>());
        if (peft is not null) PeftSetup.Apply(model, peft, folder.Path, seed: seed);
        return model;
    }

    private static Tensor Ids(int[,] rows)
    {
        int b = rows.GetLength(0), t = rows.GetLength(1);
        var flat = new int[b * t];
        for (int i = 0; i < b; i++) for (int j = 0; j < t; j++) flat[i * t + j] = rows[i, j];
        return Tensor.FromArray(flat, b, t);
    }

    // bos 1, then tokens; row 0 right-padded, row 1 the same tokens left-padded, row 2 longer and unpadded.
    private static readonly int[] Short = [1, 9, 14, 33, 50];
    private static readonly int[] Long = [1, 9, 14, 33, 50, 71, 80];
    private static readonly Tensor BatchIds = Ids(new[,] { { 1, 9, 14, 33, 50, 0, 0 }, { 0, 0, 1, 9, 14, 33, 50 }, { 1, 9, 14, 33, 50, 71, 80 } });
    private static readonly Tensor BatchMask = Ids(new[,] { { 1, 1, 1, 1, 1, 0, 0 }, { 0, 0, 1, 1, 1, 1, 1 }, { 1, 1, 1, 1, 1, 1, 1 } });

    private static double[] Logits(SequenceClassifier model, Tensor ids, Tensor? mask = null)
    {
        model.Eval();
        using var noGrad = Tape.NoGrad();
        return model.Forward(ids, mask).Logits.ToDoubleArray();
    }

    private static double[] Single(SequenceClassifier model, int[] tokens) => Logits(model, Tensor.FromArray(tokens, 1, tokens.Length));

    private static void Randomise(SequenceClassifier model, string suffix, int seed = 1, double std = 0.2)
    {
        var rng = new Random(seed);
        foreach (var (_, p) in model.NamedParameters().Where(p => p.Name.EndsWith(suffix, StringComparison.Ordinal)))
            Backend.Backends.Copy(Tensor.Randn(p.ShapeArray, rng, p.DType, std), p);
    }

    // ------------------------------------------------------------------ wiring

    [Test]
    public void TheFamilyIsWired()
    {
        var model = Model(null);
        Assert.That(model.BlockCount, Is.EqualTo(2));
        Assert.That(model.HiddenSize, Is.EqualTo(32));
        Assert.That(model.KeyValueWidth, Is.EqualTo(2 * 8), "kv heads · head dim");
        Assert.That(model.DefaultPooling, Is.EqualTo("last"));
        Assert.That(model.WordEmbeddings.ShapeArray, Is.EqualTo(new[] { 101, 32 }));
        var paths = model.LinearLayers().Select(l => l.Path).ToList();
        Assert.That(paths, Has.Count.EqualTo(2 * 7));
        Assert.That(paths, Has.Member("model.layers.0.self_attn.q_proj").And.Member("model.layers.1.mlp.down_proj"));
        var names = model.NamedParameters().Select(p => p.Name).ToHashSet();
        foreach (var (path, _) in model.LinearLayers()) Assert.That(names, Has.Member(path + ".weight"));

        var prefix = Model(Options("prefix"));
        Assert.That(prefix.NamedParameters().Single(p => p.Name == "prefix_encoder.embedding.weight").Param.ShapeArray, Is.EqualTo(new[] { 3, 2 * 2 * 16 }));
        var prompt = Model(Options("prompt"));
        Assert.That(prompt.NamedParameters().Single(p => p.Name == "prompt_encoder.embedding.weight").Param.ShapeArray, Is.EqualTo(new[] { 3, 32 }));
    }

    // ------------------------------------------------------------------ what trains

    [TestCase("head", null, "llama")]
    [TestCase("lora", null, "llama")]
    [TestCase("bitfit", null, "llama3_bf16")]
    [TestCase("prefix", null, "llama")]
    [TestCase("prompt", null, "llama")]
    [TestCase("head", "depthwise", "llama")]
    [TestCase("lora", "depthwise:mean", "llama")]
    [TestCase("prefix", "depthwise:with-embeddings", "llama")]
    [TestCase("dora", "depthwise", "llama")]
    [TestCase("ia3", "depthwise", "llama")]
    public void EachMethodTrainsOnlyItsParameters(string method, string? pooling, string kind)
    {
        var model = Model(Options(method, pooling), kind: kind);
        var before = model.NamedParameters().ToDictionary(p => p.Name, p => p.Param.ToFloatArray());
        var opt = new AdamW(model.Parameters(), 1e-2);
        var labels = Tensor.FromArray(new[] { 0, 2, 1 }, 3);
        model.Train();
        for (int step = 0; step < 4; step++)
        {
            using var scope = Scope.Begin();
            model.Loss(model.Forward(BatchIds, BatchMask).Logits, labels).Backward();
            opt.Step();
            opt.ZeroGrad();
        }
        var changed = new List<string>();
        foreach (var (name, p) in model.NamedParameters())
        {
            bool same = p.ToFloatArray().SequenceEqual(before[name]);
            if (!model.Peft!.Trains(name)) Assert.That(same, $"{name} is frozen under {method} but changed");
            else if (!same) changed.Add(name);
            Assert.That(p.RequiresGrad, Is.EqualTo(model.Peft.Trains(name)), name);
        }
        Assert.That(changed, Has.Member("score.weight"), "the head trains");
        if (pooling is not null) Assert.That(changed, Has.Member(SequencePooling.ParameterName));
        string? own = method switch
        {
            "lora" => "self_attn.q_proj.lora_B.weight", "dora" => "self_attn.q_proj.lora_magnitude_vector", "ia3" => "self_attn.k_proj.ia3_l", "bitfit" => "self_attn.q_proj.bias", "prefix" => "prefix_encoder.", "prompt" => "prompt_encoder.", _ => null,
        };
        if (own is not null) Assert.That(changed, Has.Some.Contains(own), $"the {method} parameters train");
        if (method == "bitfit") Assert.That(changed, Has.Some.Contains("mlp.down_proj.bias"));
        Assert.That(model.ParameterCount(trainableOnly: true), Is.LessThan(model.ParameterCount() / 3));
    }

    [Test]
    public void TheParameterTableCountsLlamaGroups()
    {
        var model = Model(Options("lora", "depthwise"));
        var table = PeftSetup.ParameterTable(model);
        foreach (var group in new[] { "embeddings", "attention", "MLP", "layer norms", "head", "depth-wise pooling", "LoRA adapters", "all" })
            Assert.That(table, Does.Contain(group));
        // q_proj (32 → 32) and v_proj (32 → 16) in 2 layers, r = 4.
        Assert.That(model.NamedParameters().Where(p => p.Name.Contains("lora_")).Sum(p => p.Param.Numel), Is.EqualTo(2 * 4 * ((32 + 32) + (32 + 16))));
    }

    // ------------------------------------------------------------------ LoRA

    [Test]
    public void LoraStartsAsTheBaseModelAndTheMergeEqualsTheUnmergedForward()
    {
        var plain = Logits(Model(null, DType.F64), BatchIds, BatchMask);
        var model = Model(Options("lora") with { Settings = new LoraOptions { Rank = 4, Alpha = 8, Targets = "all-linear" } }, DType.F64);
        Assert.That(LoraMethod.Adapters(model), Has.Count.EqualTo(14));
        Assert.That(Logits(model, BatchIds, BatchMask), Is.EqualTo(plain), "B = 0: the adapted model computes the base model");

        Randomise(model, "lora_B.weight");
        var unmerged = Logits(model, BatchIds, BatchMask);
        Assert.That(unmerged, Is.Not.EqualTo(plain).Within(1e-6));
        PeftSetup.Merge(model);
        Assert.That(Logits(model, BatchIds, BatchMask), Is.EqualTo(unmerged).Within(1e-10));
        model.Peft!.Method.Unmerge();
        Assert.That(Logits(model, BatchIds, BatchMask), Is.EqualTo(unmerged).Within(1e-10));
    }

    [Test]
    public void ALoraAdapterSavesInPeftsFormatAndLoadsBackWithIdenticalLogits()
    {
        var folder = Fixture();
        var model = Model(Options("lora"));
        Randomise(model, "lora_B.weight");
        Randomise(model, "score.weight", 2, 0.1);
        var trained = Logits(model, BatchIds, BatchMask);

        var dir = Path.Combine(temp.Path, "checkpoint");
        AtomicFolder.Write(dir, tmp => model.SaveInto(tmp, folder));
        var config = System.Text.Json.Nodes.JsonNode.Parse(File.ReadAllText(Path.Combine(dir, AdapterFiles.ConfigFile)))!;
        Assert.That(config["target_modules"]!.AsArray().Select(n => n!.GetValue<string>()), Is.EquivalentTo(new[] { "q_proj", "v_proj" }));
        using (var weights = SafeTensors.Open(Path.Combine(dir, AdapterFiles.WeightsFile)))
        {
            Assert.That(weights.Info("base_model.model.model.layers.0.self_attn.q_proj.lora_A.weight").Shape, Is.EqualTo(new[] { 4, 32 }));
            Assert.That(weights.Info("base_model.model.model.layers.1.self_attn.v_proj.lora_B.weight").Shape, Is.EqualTo(new[] { 16, 4 }));
            Assert.That(weights.Info("base_model.model.score.weight").Shape, Is.EqualTo(new[] { 3, 32 }));
            Assert.That(weights.Names, Has.Count.EqualTo(4 * 2 + 1));
        }
        // The adapter onto the base folder (--adapter).
        var onBase = SequenceClassifier.FromFolder(folder, 7);
        AdapterFiles.Load(onBase, dir);
        Assert.That(Logits(onBase, BatchIds, BatchMask), Is.EqualTo(trained));
        // The checkpoint folder itself ("engine_peft" in config.json).
        var reloaded = SequenceClassifier.FromFolder(HfModelFolder.Open(dir));
        Assert.That(reloaded.Peft!.Options.Method, Is.EqualTo("lora"));
        Assert.That(Logits(reloaded, BatchIds, BatchMask), Is.EqualTo(trained));
    }

    // ------------------------------------------------------------------ prefix and prompt, padding

    [TestCase("prefix", null, null)]
    [TestCase("prefix", null, 16)]
    [TestCase("prompt", null, null)]
    [TestCase("prefix", "depthwise:mean", null)]
    [TestCase("prompt", "depthwise:last", null)]
    [TestCase("prompt", "mean", null)]
    [TestCase("lora", "depthwise:with-embeddings", null)]
    [TestCase("dora", "depthwise:mean", null)]
    [TestCase("ia3", "depthwise", null)]
    public void PaddedRowsGiveTheLogitsOfTheUnpaddedRow(string method, string? pooling, int? projection)
    {
        var model = Model(Options(method, pooling) with { Settings = method == "prefix" ? new PrefixOptions { Length = 3, Projection = projection } : Options(method).Settings }, DType.F64);
        if (method is "lora" or "dora") Randomise(model, "lora_B.weight");
        if (method == "ia3") Randomise(model, "ia3_l");
        var batch = Logits(model, BatchIds, BatchMask);
        var shortAlone = Single(model, Short);
        var longAlone = Single(model, Long);
        Assert.That(batch.Take(3), Is.EqualTo(shortAlone).Within(1e-10), "right padding");
        Assert.That(batch.Skip(3).Take(3), Is.EqualTo(shortAlone).Within(1e-10), "left padding");
        Assert.That(batch.Skip(6), Is.EqualTo(longAlone).Within(1e-10), "unpadded");
        // The method does something: the logits are not the base model's.
        var plain = Single(Model(null, DType.F64), Short);
        Assert.That(shortAlone, Is.Not.EqualTo(plain).Within(1e-6));
    }

    [Test]
    public void ThePromptGoesBeforeBosAndThePooledTokenMovesPastIt()
    {
        var model = (LlamaForSequenceClassification)Model(Options("prompt"), DType.F64);
        using var noGrad = Tape.NoGrad();
        var output = model.Decoder.Forward(BatchIds, BatchMask);
        Assert.That(output.LastHiddenState.ShapeArray, Is.EqualTo(new[] { 3, 10, 32 }));
        Assert.That(output.InsertedAt, Is.EqualTo(new[] { 0, 2, 0 }), "before each row's first attended token (bos), after left padding");
        Assert.That(output.TokenMask!.ToIntArray(), Is.EqualTo(new[]
        {
            1, 1, 1, 1, 1, 1, 1, 1, 0, 0,
            0, 0, 1, 1, 1, 1, 1, 1, 1, 1,
            1, 1, 1, 1, 1, 1, 1, 1, 1, 1,
        }));
        Assert.That(output.StatePosition(0, 4), Is.EqualTo(7));
        Assert.That(output.StatePosition(1, 1), Is.EqualTo(1), "left padding keeps its place");
        // The prompt rows of the embedding output are the prompt's embeddings.
        var prompt = model.NamedParameters().Single(p => p.Name == "prompt_encoder.embedding.weight").Param.ToDoubleArray();
        var h0 = output.HiddenStates[0].ToDoubleArray();
        for (int i = 0; i < 3 * 32; i++) Assert.That(h0[(10 + 2) * 32 + i], Is.EqualTo(prompt[i]), "row 1, positions 2..4");
    }

    // ------------------------------------------------------------------ depth-wise pooling

    [TestCase("depthwise", "last")]
    [TestCase("depthwise:mean", "mean")]
    public void DepthwisePoolingAtZeroIsThePlainAverageOfThePooledLayers(string pooling, string within)
    {
        var model = (LlamaForSequenceClassification)Model(Options("head", pooling), DType.F64);
        Assert.That(model.Pooling!.LayerWeights(), Is.EqualTo(new[] { 0.5, 0.5 }).Within(1e-15));
        var logits = Logits(model, BatchIds, BatchMask);

        using var noGrad = Tape.NoGrad();
        var output = model.Decoder.Forward(BatchIds, BatchMask);
        // Blocks 1..L: hidden_states[1] (block 1's output) and hidden_states[2] (the final-normed output of block 2).
        var layers = new[] { output.HiddenStates[1].ToDoubleArray(), output.HiddenStates[2].ToDoubleArray() };
        Assert.That(output.HiddenStates[2].ToDoubleArray(), Is.EqualTo(output.LastHiddenState.ToDoubleArray()));
        var mask = BatchMask.ToIntArray();
        var w = model.NamedParameters().Single(p => p.Name == "score.weight").Param.ToDoubleArray();
        int[] last = LlamaForSequenceClassification.PooledPositions(BatchIds, 0);
        Assert.That(last, Is.EqualTo(new[] { 4, 6, 6 }));
        for (int r = 0; r < 3; r++)
        {
            var z = new double[32];
            foreach (var h in layers)
            {
                if (within == "last")
                    for (int d = 0; d < 32; d++) z[d] += 0.5 * h[(r * 7 + last[r]) * 32 + d];
                else
                {
                    int count = Enumerable.Range(0, 7).Count(j => mask[r * 7 + j] == 1);
                    for (int j = 0; j < 7; j++)
                        if (mask[r * 7 + j] == 1)
                            for (int d = 0; d < 32; d++) z[d] += 0.5 * h[(r * 7 + j) * 32 + d] / count;
                }
            }
            for (int c = 0; c < 3; c++)
            {
                double want = Enumerable.Range(0, 32).Sum(d => w[c * 32 + d] * z[d]);
                Assert.That(logits[r * 3 + c], Is.EqualTo(want).Within(1e-12), $"row {r}, class {c}");
            }
        }
    }

    [Test]
    public void PlainLastPoolingIsTheUsualHead()
    {
        // "last" is Llama's default: no pooling module, the usual pooled token.
        var model = Model(Options("head", "last"));
        Assert.That(model.Pooling, Is.Null);
        var depthwise = Model(Options("head", "depthwise:last"));
        Assert.That(depthwise.Pooling!.Spec.ToString(), Is.EqualTo("depthwise:last"));
    }

    // ------------------------------------------------------------------ checkpoints

    [TestCase("prefix", "depthwise")]
    [TestCase("prompt", "depthwise:mean")]
    [TestCase("lora", "depthwise:with-embeddings")]
    [TestCase("bitfit", null)]
    [TestCase("dora", "depthwise")]
    [TestCase("ia3", "depthwise:mean")]
    public void ACheckpointReloadsWithItsMethodAndIdenticalLogits(string method, string? pooling)
    {
        var folder = Fixture(method == "bitfit" ? "llama3_bf16" : "llama");
        var model = SequenceClassifier.FromFolder(folder, 3);
        PeftSetup.Apply(model, Options(method, pooling), folder.Path, seed: 3);
        // Move every trained parameter away from its start, as training would.
        var rng = new Random(5);
        using (Tape.NoGrad())
            foreach (var (_, p) in model.NamedParameters().Where(p => model.Peft!.Trains(p.Name)))
                Backend.Backends.Copy(Ops.Add(p, Tensor.Randn(p.ShapeArray, rng, p.DType, 0.05)), p);
        var want = Logits(model, BatchIds, BatchMask);

        var dir = Path.Combine(temp.Path, "checkpoint");
        AtomicFolder.Write(dir, tmp => model.SaveInto(tmp, folder));
        var reloaded = SequenceClassifier.FromFolder(HfModelFolder.Open(dir));
        Assert.That(reloaded.Peft!.Options.Method, Is.EqualTo(method));
        Assert.That(reloaded.Pooling?.Spec.ToString(), Is.EqualTo(model.Pooling?.Spec.ToString()));
        Assert.That(Logits(reloaded, BatchIds, BatchMask), Is.EqualTo(want));
    }
}
