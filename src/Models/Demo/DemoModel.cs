using System.Text.Json;
using Engine.IO;
using Engine.Models.Bert;
using Engine.Models.Data;

namespace Engine.Models.Demo;

/// <summary>
/// What `engine demo` trains, made by code with no downloads: a small BERT (2 layers, width 64,
/// 4 heads) with random weights, saved as an ordinary Hugging Face folder (config.json,
/// vocab.txt, tokenizer_config.json, model.safetensors) so the demo runs the same path as
/// training on a real folder; and the <see cref="NegationTask"/> data.
/// </summary>
public static class DemoModel
{
    public static readonly string[] LabelNames = ["negative", "positive"];

    private const double Dropout = 0.1;

    /// <summary>Writes the random-initialised model folder into <paramref name="dir"/> (atomically) and opens it.</summary>
    public static HfModelFolder CreateFolder(string dir, int seed, int hidden = 64, int layers = 2)
    {
        var vocab = NegationTask.Vocabulary();
        var config = new Dictionary<string, object>
        {
            ["model_type"] = "bert", ["architectures"] = new[] { "BertForSequenceClassification" },
            ["vocab_size"] = vocab.Count, ["hidden_size"] = hidden, ["num_hidden_layers"] = layers, ["num_attention_heads"] = 4,
            ["intermediate_size"] = 2 * hidden, ["hidden_act"] = "gelu", ["hidden_dropout_prob"] = Dropout, ["attention_probs_dropout_prob"] = Dropout,
            ["max_position_embeddings"] = 64, ["type_vocab_size"] = 2, ["initializer_range"] = 0.02, ["layer_norm_eps"] = 1e-12,
            ["pad_token_id"] = 0,
            ["id2label"] = LabelNames.Select((n, i) => (n, i)).ToDictionary(x => x.i.ToString(), x => x.n),
            ["label2id"] = LabelNames.Select((n, i) => (n, i)).ToDictionary(x => x.n, x => x.i),
        };
        AtomicFolder.Write(dir, tmp =>
        {
            File.WriteAllText(Path.Combine(tmp, HfModelFolder.ConfigFileName), JsonSerializer.Serialize(config, new JsonSerializerOptions { WriteIndented = true }));
            File.WriteAllLines(Path.Combine(tmp, "vocab.txt"), vocab);
            File.WriteAllText(Path.Combine(tmp, "tokenizer_config.json"), """{"do_lower_case": true, "model_max_length": 64, "tokenizer_class": "BertTokenizer"}""");
            var bertConfig = new BertConfig
            {
                ModelType = "bert", VocabSize = vocab.Count, HiddenSize = hidden, NumHiddenLayers = layers, NumAttentionHeads = 4,
                IntermediateSize = 2 * hidden, MaxPositionEmbeddings = 64, NumLabels = LabelNames.Length, HiddenDropoutProb = Dropout,
            };
            var model = new BertForSequenceClassification(bertConfig, seed);
            SafeTensors.Save(Path.Combine(tmp, SafeTensors.SingleFileName),
                model.NamedParameters().Select(p => new KeyValuePair<string, Tensor>(p.Name, p.Param)), new Dictionary<string, string> { ["format"] = "pt" });
        });
        return HfModelFolder.Open(dir);
    }

    public static Dataset Data(int count, int seed, string name) =>
        new(name, NegationTask.Make(count, seed), new LabelMap(LabelNames), IsRegression: false, SkippedLines: 0);
}
