using System.Text.Json;
using Engine.IO;

namespace Engine.Models.Bert;

/// <summary>
/// A BERT with random weights (N(0, 0.02), as transformers initialises one), written as an
/// ordinary Hugging Face folder: config.json, vocab.txt, tokenizer_config.json (uncased),
/// model.safetensors. No pretrained weights exist on the machines this engine is built on; this
/// is how `engine demo` and `engine init` make a model to fine-tune from scratch.
/// </summary>
public static class RandomBert
{
    public static HfModelFolder Create(string dir, IReadOnlyList<string> vocab, int seed, int hidden, int layers, int heads,
        int maxPositions, IReadOnlyList<string>? labels = null, double dropout = 0.1, int? intermediate = null)
    {
        int ffn = intermediate ?? 4 * hidden;
        if (hidden % heads != 0) throw new EngineException($"init: hidden size {hidden} is not a multiple of {heads} heads");
        foreach (var special in new[] { "[PAD]", "[UNK]", "[CLS]", "[SEP]" })
            if (!vocab.Contains(special)) throw new EngineException($"init: the vocabulary has no {special} token");
        var config = new Dictionary<string, object>
        {
            ["model_type"] = "bert", ["architectures"] = new[] { "BertForSequenceClassification" },
            ["vocab_size"] = vocab.Count, ["hidden_size"] = hidden, ["num_hidden_layers"] = layers, ["num_attention_heads"] = heads,
            ["intermediate_size"] = ffn, ["hidden_act"] = "gelu", ["hidden_dropout_prob"] = dropout, ["attention_probs_dropout_prob"] = dropout,
            ["max_position_embeddings"] = maxPositions, ["type_vocab_size"] = 2, ["initializer_range"] = 0.02, ["layer_norm_eps"] = 1e-12,
            ["pad_token_id"] = vocab.ToList().IndexOf("[PAD]"),
        };
        if (labels is not null)
        {
            config["id2label"] = labels.Select((n, i) => (n, i)).ToDictionary(x => x.i.ToString(), x => x.n);
            config["label2id"] = labels.Select((n, i) => (n, i)).ToDictionary(x => x.n, x => x.i);
        }
        var bertConfig = new BertConfig
        {
            ModelType = "bert", VocabSize = vocab.Count, HiddenSize = hidden, NumHiddenLayers = layers, NumAttentionHeads = heads,
            IntermediateSize = ffn, MaxPositionEmbeddings = maxPositions, NumLabels = labels?.Count ?? 2, HiddenDropoutProb = dropout,
        };
        AtomicFolder.Write(dir, tmp =>
        {
            File.WriteAllText(Path.Combine(tmp, HfModelFolder.ConfigFileName), JsonSerializer.Serialize(config, new JsonSerializerOptions { WriteIndented = true }));
            File.WriteAllLines(Path.Combine(tmp, "vocab.txt"), vocab);
            File.WriteAllText(Path.Combine(tmp, "tokenizer_config.json"),
                $$"""{"do_lower_case": true, "model_max_length": {{maxPositions}}, "tokenizer_class": "BertTokenizer"}""");
            var model = new BertForSequenceClassification(bertConfig, seed);
            SafeTensors.Save(Path.Combine(tmp, SafeTensors.SingleFileName),
                model.NamedParameters().Select(p => new KeyValuePair<string, Tensor>(p.Name, p.Param)), new Dictionary<string, string> { ["format"] = "pt" });
        });
        return HfModelFolder.Open(dir);
    }
}
