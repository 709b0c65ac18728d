using Engine.IO;
using Engine.Models;
using NUnit.Framework;

namespace Engine.Tests;

public class HfModelFolderTests
{
    private TempFolder temp = null!;

    [SetUp] public void SetUp() => temp = new TempFolder();
    [TearDown] public void TearDown() => temp.Dispose();

    private const string BertJson = """
        {
          "architectures": ["BertForSequenceClassification"],
          "model_type": "bert", "vocab_size": 100, "hidden_size": 8, "num_hidden_layers": 2,
          "num_attention_heads": 2, "intermediate_size": 16, "hidden_act": "gelu",
          "max_position_embeddings": 32, "type_vocab_size": 2, "layer_norm_eps": 1e-12,
          "pad_token_id": 0, "position_embedding_type": "absolute", "classifier_dropout": null,
          "id2label": {"0": "NEGATIVE", "1": "POSITIVE"}, "label2id": {"NEGATIVE": 0, "POSITIVE": 1},
          "transformers_version": "4.44.0", "gradient_checkpointing": false
        }
        """;

    private const string LlamaJson = """
        {
          "model_type": "llama", "vocab_size": 128, "hidden_size": 16, "intermediate_size": 32,
          "num_hidden_layers": 2, "num_attention_heads": 4, "num_key_value_heads": 2,
          "rms_norm_eps": 1e-5, "rope_theta": 500000.0, "max_position_embeddings": 131072,
          "rope_scaling": {"factor": 32.0, "high_freq_factor": 4.0, "low_freq_factor": 1.0,
                           "original_max_position_embeddings": 8192, "rope_type": "llama3"},
          "attention_bias": false, "mlp_bias": false, "tie_word_embeddings": true,
          "bos_token_id": 1, "eos_token_id": [2, 3], "pretraining_tp": 1, "num_labels": 3
        }
        """;

    private string Folder(string name, string config, params string[] files)
    {
        var dir = Path.Combine(temp.Path, name);
        Directory.CreateDirectory(dir);
        File.WriteAllText(Path.Combine(dir, "config.json"), config);
        foreach (var f in files) File.WriteAllText(Path.Combine(dir, f), "{}");
        return dir;
    }

    private static void WriteWeights(string dir, params (string Name, int[] Shape)[] tensors)
    {
        var w = new SafeTensorsWriter(new Dictionary<string, string> { ["format"] = "pt" });
        foreach (var (name, shape) in tensors) w.Add(name, DType.F32, shape, new byte[Shape.Numel(shape) * 4]);
        w.Save(Path.Combine(dir, SafeTensors.SingleFileName));
    }

    [Test]
    public void BertFolderReadsConfigWeightsAndTokenizerFiles()
    {
        var dir = Folder("bert", BertJson, "vocab.txt", "tokenizer_config.json", "special_tokens_map.json");
        WriteWeights(dir, ("bert.embeddings.word_embeddings.weight", [100, 8]));
        var folder = HfModelFolder.Open(dir);
        Assert.That(folder.Family, Is.EqualTo(ModelFamily.Bert));
        var c = folder.BertConfig;
        Assert.That((c.VocabSize, c.HiddenSize, c.NumHiddenLayers, c.NumAttentionHeads, c.IntermediateSize), Is.EqualTo((100, 8, 2, 2, 16)));
        Assert.That(c.MaxPositionEmbeddings, Is.EqualTo(32));
        Assert.That(c.ClassifierDropout, Is.Null);
        Assert.That(c.NumLabels, Is.EqualTo(2));
        Assert.That(c.Id2Label![1], Is.EqualTo("POSITIVE"));
        Assert.That(c.Label2Id!["NEGATIVE"], Is.EqualTo(0));
        Assert.That(c.Architectures, Is.EqualTo(new[] { "BertForSequenceClassification" }));
        Assert.That(c.Extra.Keys, Is.EquivalentTo(new[] { "transformers_version", "gradient_checkpointing" }));
        Assert.That(c.Extra["transformers_version"].GetString(), Is.EqualTo("4.44.0"));
        Assert.That(folder.Tokenizer.VocabTxt, Does.EndWith("vocab.txt"));
        Assert.That(folder.Tokenizer.TokenizerConfig, Does.EndWith("tokenizer_config.json"));
        Assert.That(folder.Tokenizer.TokenizerJson, Is.Null);
        Assert.That(folder.IsSharded, Is.False);
        Assert.Throws<EngineException>(() => _ = folder.LlamaConfig);
        using var w = folder.OpenWeights();
        Assert.That(w.Names, Is.EqualTo(new[] { "bert.embeddings.word_embeddings.weight" }));
    }

    [Test]
    public void LlamaFolderWithGroupedQueryAttentionAndLlama3RopeScaling()
    {
        var dir = Folder("llama", LlamaJson, "tokenizer.json", "generation_config.json");
        WriteWeights(dir, ("model.embed_tokens.weight", [128, 16]));
        var folder = HfModelFolder.Open(dir);
        Assert.That(folder.Family, Is.EqualTo(ModelFamily.Llama));
        var c = folder.LlamaConfig;
        Assert.That((c.NumAttentionHeads, c.NumKeyValueHeads, c.HeadDim), Is.EqualTo((4, 2, 4)));
        Assert.That(c.RopeTheta, Is.EqualTo(500000.0));
        Assert.That(c.RopeScaling, Is.Not.Null);
        Assert.That(c.RopeScaling!.Type, Is.EqualTo("llama3"));
        Assert.That((c.RopeScaling.Factor, c.RopeScaling.LowFreqFactor, c.RopeScaling.HighFreqFactor, c.RopeScaling.OriginalMaxPositionEmbeddings),
            Is.EqualTo((32.0, (double?)1.0, (double?)4.0, (int?)8192)));
        Assert.That(c.TieWordEmbeddings, Is.True);
        Assert.That(c.EosTokenIds, Is.EqualTo(new[] { 2, 3 }));
        Assert.That(c.PadTokenId, Is.Null);
        Assert.That(c.NumLabels, Is.EqualTo(3));
        Assert.That(c.RmsNormEps, Is.EqualTo(1e-5));
        Assert.That(c.Extra.ContainsKey("pretraining_tp"));
        Assert.That(folder.GenerationConfigPath, Does.EndWith("generation_config.json"));
        Assert.That(folder.ReadGenerationConfig(), Is.Not.Null);
    }

    [Test]
    public void LlamaDefaultsAndExplicitHeadDim()
    {
        var dir = Folder("mistral", """
            {"model_type": "mistral", "vocab_size": 10, "hidden_size": 12, "intermediate_size": 24,
             "num_hidden_layers": 1, "num_attention_heads": 3, "head_dim": 8}
            """);
        WriteWeights(dir, ("x", [1]));
        var c = HfModelFolder.Open(dir).LlamaConfig;
        Assert.That((c.NumKeyValueHeads, c.HeadDim, c.RopeTheta, c.RopeScaling), Is.EqualTo((3, 8, 10000.0, (RopeScaling?)null)));
    }

    [Test]
    public void BadConfigsNameTheFileAndField()
    {
        var dir = Folder("bad", """{"model_type": "llama", "vocab_size": "many", "hidden_size": 8, "intermediate_size": 16, "num_hidden_layers": 1, "num_attention_heads": 2}""");
        WriteWeights(dir, ("x", [1]));
        var e = Assert.Throws<EngineException>(() => HfModelFolder.Open(dir))!;
        Assert.That(e.Message, Does.Contain("config.json").And.Contain("vocab_size"));

        var gqa = Folder("gqa", """
            {"model_type": "llama", "vocab_size": 10, "hidden_size": 12, "intermediate_size": 24,
             "num_hidden_layers": 1, "num_attention_heads": 3, "num_key_value_heads": 2}
            """);
        WriteWeights(gqa, ("x", [1]));
        Assert.That(Assert.Throws<EngineException>(() => HfModelFolder.Open(gqa))!.Message, Does.Contain("num_key_value_heads"));

        var rope = Folder("rope", """
            {"model_type": "llama", "vocab_size": 10, "hidden_size": 12, "intermediate_size": 24,
             "num_hidden_layers": 1, "num_attention_heads": 3, "rope_scaling": {"rope_type": "llama3", "factor": 8.0}}
            """);
        WriteWeights(rope, ("x", [1]));
        Assert.That(Assert.Throws<EngineException>(() => HfModelFolder.Open(rope))!.Message, Does.Contain("low_freq_factor"));

        Assert.That(Assert.Throws<EngineException>(() => HfModelFolder.Open(temp.Path))!.Message, Does.Contain("no config.json"));
    }

    [Test]
    public void PyTorchOnlyFolderSaysHowToConvert()
    {
        var dir = Folder("pt", BertJson);
        File.WriteAllBytes(Path.Combine(dir, "pytorch_model.bin"), [.. "PK\x03\x04"u8, 0, 0]);
        var e = Assert.Throws<EngineException>(() => HfModelFolder.Open(dir))!;
        Assert.That(e.Message, Does.Contain("pytorch_model.bin").And.Contain("save_file").And.Contain("model.safetensors"));
    }

    [Test]
    public void ShardedFolderIsFound()
    {
        var dir = Folder("sharded", BertJson);
        new SafeTensorsWriter().Add("a", DType.F32, [2], new byte[8]).Save(Path.Combine(dir, "model-00001-of-00001.safetensors"));
        File.WriteAllText(Path.Combine(dir, SafeTensors.IndexFileName), """{"metadata": {}, "weight_map": {"a": "model-00001-of-00001.safetensors"}}""");
        var folder = HfModelFolder.Open(dir);
        Assert.That(folder.IsSharded);
        using var w = folder.OpenWeights();
        Assert.That(w.Info("a").Shape, Is.EqualTo(new[] { 2 }));
    }

    [Test]
    public void WeightMatchReportsEveryProblemAtOnce()
    {
        var dir = Folder("m", BertJson);
        WriteWeights(dir,
            ("bert.embeddings.word_embeddings.weight", [100, 8]),
            ("bert.embeddings.LayerNorm.gamma", [8]),
            ("bert.pooler.dense.weight", [8, 4]),
            ("bert.embeddings.position_ids", [1, 32]),
            ("cls.predictions.bias", [100]));
        using var source = HfModelFolder.Open(dir).OpenWeights();
        ExpectedTensor[] expected =
        [
            new("embeddings.word_embeddings.weight", [100, 8]),
            new("embeddings.LayerNorm.weight", [8]),
            new("pooler.dense.weight", [8, 8]),
            new("classifier.weight", [2, 8]),
            new("classifier.bias", [2]),
        ];
        // Try the name with the "bert." prefix, and LayerNorm's legacy gamma/beta names.
        static IEnumerable<string> Candidates(string name)
        {
            foreach (var n in new[] { name, "bert." + name })
            {
                yield return n;
                if (n.EndsWith("LayerNorm.weight")) yield return n.Replace("LayerNorm.weight", "LayerNorm.gamma");
            }
        }
        var match = WeightMatch.Match(expected, source, Candidates, n => n.EndsWith("position_ids"));
        Assert.That(match.IsComplete, Is.False);
        Assert.That(match.Matched["embeddings.LayerNorm.weight"], Is.EqualTo("bert.embeddings.LayerNorm.gamma"));
        Assert.That(match.Missing.Select(m => m.Name), Is.EqualTo(new[] { "classifier.weight", "classifier.bias" }));
        Assert.That(match.Unexpected.Select(u => u.Name), Is.EqualTo(new[] { "cls.predictions.bias" }));
        Assert.That(match.ShapeMismatches.Single().SourceName, Is.EqualTo("bert.pooler.dense.weight"));
        var e = Assert.Throws<EngineException>(match.ThrowIfIncomplete)!;
        Assert.That(e.Message, Does.Contain("model.safetensors")
            .And.Contain("classifier.weight [2, 8]").And.Contain("classifier.bias [2]")
            .And.Contain("cls.predictions.bias [100]")
            .And.Contain("bert.pooler.dense.weight is [8, 4], expected [8, 8]"));
        Assert.That(e.Message, Does.Not.Contain("\n"));
    }
}
