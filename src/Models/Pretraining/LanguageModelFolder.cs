using System.Text.Json;
using System.Text.Json.Nodes;
using Engine.IO;
using Engine.Models.Tokenization;

namespace Engine.Models.Pretraining;

/// <summary>The shape of a model to pretrain. <see cref="KeyValueHeads"/>, <see cref="TieEmbeddings"/>
/// and <see cref="RmsNormEps"/> matter for Llama only; <see cref="Dropout"/> for BERT only.</summary>
public sealed record LmShape(string Arch, int Layers, int Hidden, int Heads, int Intermediate, int KeyValueHeads = 0,
    int MaxPositions = 512, bool TieEmbeddings = true, double Dropout = 0.1, double RmsNormEps = 1e-5, double RopeTheta = 10000);

/// <summary>
/// The named model shapes of `engine pretrain --preset` and `engine init --preset`:
/// bert-mini (4 layers, d 256, 4 heads, FFN 1024), bert-small (4 layers, d 512, 8 heads, FFN
/// 2048), both meant for the bert-base-uncased WordPiece vocabulary; llama-mini (4 layers,
/// d 256, 8 query heads sharing 2 key/value heads, head dim 32, SwiGLU FFN 704 ≈ 8/3·d
/// rounded up to a multiple of 64, output layer tied to the embeddings), meant for the Llama 2
/// SentencePiece vocabulary. The vocabulary size always comes from the tokenizer.
/// </summary>
public static class LmPresets
{
    public static readonly IReadOnlyDictionary<string, LmShape> All = new Dictionary<string, LmShape>
    {
        ["bert-mini"] = new("bert", 4, 256, 4, 1024),
        ["bert-small"] = new("bert", 4, 512, 8, 2048),
        ["llama-mini"] = new("llama", 4, 256, 8, 704, KeyValueHeads: 2, MaxPositions: 2048, TieEmbeddings: true, Dropout: 0),
    };

    public static LmShape Get(string name) => All.TryGetValue(name, out var s) ? s
        : throw new EngineException($"--preset: unknown preset '{name}' ({string.Join(", ", All.Keys)})");
}

/// <summary>
/// Writes a randomly initialised language model as a Hugging Face folder, ready for `engine
/// pretrain` (and for `engine train`, which drops the LM head): config.json with
/// architectures BertForMaskedLM or LlamaForCausalLM, the tokenizer files, model.safetensors.
///
/// BERT takes a WordPiece vocab.txt (uncased: do_lower_case true); pad_token_id is [PAD]'s id.
/// Llama takes a SentencePiece tokenizer.model or a tokenizer.json; bos/eos ids come from the
/// tokenizer, and pad_token_id is set to the unknown token &lt;unk&gt; (Llama 2 names no pad token,
/// and sequence classification of batches needs one; &lt;unk&gt; never occurs in byte-fallback
/// text, so it is never mistaken for a real last token).
/// </summary>
public static class LanguageModelFolder
{
    public static HfModelFolder Create(string dir, LmShape shape, string tokenizerPath, int seed, JsonObject? configOverrides = null)
    {
        if (!File.Exists(tokenizerPath)) throw new EngineException($"{tokenizerPath}: no such tokenizer file");
        if (shape.Hidden % shape.Heads != 0) throw new EngineException($"init: hidden size {shape.Hidden} is not a multiple of {shape.Heads} heads");
        AtomicFolder.Write(dir, tmp =>
        {
            var config = shape.Arch switch
            {
                "bert" => BertFiles(tmp, shape, tokenizerPath),
                "llama" => LlamaFiles(tmp, shape, tokenizerPath),
                _ => throw new EngineException($"--arch: unknown architecture '{shape.Arch}' (bert, llama)"),
            };
            if (configOverrides is not null)
                foreach (var (key, value) in configOverrides)
                    if (key is not ("vocab_size" or "model_type" or "architectures")) config[key] = value?.DeepClone();
            File.WriteAllText(Path.Combine(tmp, HfModelFolder.ConfigFileName), config.ToJsonString(new JsonSerializerOptions { WriteIndented = true }));
            // Build the model from the config just written (so overrides count), save its random weights.
            var folder = HfModelFolderWithoutWeights(tmp);
            LanguageModel model = shape.Arch == "bert" ? new MaskedLanguageModel(folder.BertConfig, seed) : new CausalLanguageModel(folder.LlamaConfig, seed);
            model.SaveWeights(tmp);
        });
        return HfModelFolder.Open(dir);
    }

    /// <summary>Opens a folder whose weights are not written yet (an empty placeholder file stands in).</summary>
    private static HfModelFolder HfModelFolderWithoutWeights(string dir)
    {
        File.WriteAllBytes(Path.Combine(dir, SafeTensors.SingleFileName), []);
        return HfModelFolder.Open(dir);
    }

    private static JsonObject BertFiles(string dir, LmShape s, string vocabPath)
    {
        var vocab = File.ReadAllLines(vocabPath);
        foreach (var special in new[] { "[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]" })
            if (!vocab.Contains(special)) throw new EngineException($"{vocabPath}: the vocabulary has no {special} token (is it a BERT vocab.txt?)");
        File.Copy(vocabPath, Path.Combine(dir, "vocab.txt"));
        File.WriteAllText(Path.Combine(dir, "tokenizer_config.json"),
            $$"""{"do_lower_case": true, "model_max_length": {{s.MaxPositions}}, "tokenizer_class": "BertTokenizer"}""");
        return new JsonObject
        {
            ["model_type"] = "bert", ["architectures"] = new JsonArray("BertForMaskedLM"),
            ["vocab_size"] = vocab.Length, ["hidden_size"] = s.Hidden, ["num_hidden_layers"] = s.Layers, ["num_attention_heads"] = s.Heads,
            ["intermediate_size"] = s.Intermediate, ["hidden_act"] = "gelu", ["hidden_dropout_prob"] = s.Dropout, ["attention_probs_dropout_prob"] = s.Dropout,
            ["max_position_embeddings"] = s.MaxPositions, ["type_vocab_size"] = 2, ["initializer_range"] = 0.02, ["layer_norm_eps"] = 1e-12,
            ["pad_token_id"] = Array.IndexOf(vocab, "[PAD]"), ["tie_word_embeddings"] = true, ["torch_dtype"] = "float32",
        };
    }

    private static JsonObject LlamaFiles(string dir, LmShape s, string tokenizerPath)
    {
        bool json = tokenizerPath.EndsWith(".json", StringComparison.OrdinalIgnoreCase);
        var copy = Path.Combine(dir, json ? "tokenizer.json" : "tokenizer.model");
        File.Copy(tokenizerPath, copy);
        File.WriteAllText(Path.Combine(dir, "tokenizer_config.json"),
            $$"""{"add_bos_token": true, "add_eos_token": false, "bos_token": "<s>", "eos_token": "</s>", "unk_token": "<unk>", "pad_token": "<unk>", "model_max_length": {{s.MaxPositions}}, "tokenizer_class": "LlamaTokenizer", "legacy": false}""");
        // The ids come from the tokenizer itself: read it through a folder holding just the tokenizer files.
        TextTokenizer tokenizer;
        try { tokenizer = TextTokenizer.FromFolder(HfModelFolderWithoutWeights(WithStubConfig(dir))); }
        catch (EngineException e) when (e.Message.Contains(copy)) { throw new EngineException(e.Message.Replace(copy, tokenizerPath)); }   // name the user's file, not the temporary copy
        int bos = tokenizer.TokenToId("<s>") ?? throw new EngineException($"{tokenizerPath}: the tokenizer has no <s> token");
        int eos = tokenizer.TokenToId("</s>") ?? throw new EngineException($"{tokenizerPath}: the tokenizer has no </s> token");
        int pad = tokenizer.TokenToId("<unk>") ?? throw new EngineException($"{tokenizerPath}: the tokenizer has no <unk> token");
        int kv = s.KeyValueHeads > 0 ? s.KeyValueHeads : s.Heads;
        if (s.Heads % kv != 0) throw new EngineException($"init: {s.Heads} heads are not a multiple of {kv} key/value heads");
        return new JsonObject
        {
            ["model_type"] = "llama", ["architectures"] = new JsonArray("LlamaForCausalLM"),
            ["vocab_size"] = tokenizer.VocabSize, ["hidden_size"] = s.Hidden, ["intermediate_size"] = s.Intermediate,
            ["num_hidden_layers"] = s.Layers, ["num_attention_heads"] = s.Heads, ["num_key_value_heads"] = kv,
            ["hidden_act"] = "silu", ["max_position_embeddings"] = s.MaxPositions, ["initializer_range"] = 0.02, ["rms_norm_eps"] = s.RmsNormEps,
            ["rope_theta"] = s.RopeTheta, ["attention_bias"] = false, ["mlp_bias"] = false, ["tie_word_embeddings"] = s.TieEmbeddings,
            ["bos_token_id"] = bos, ["eos_token_id"] = eos, ["pad_token_id"] = pad, ["torch_dtype"] = "float32",
        };
    }

    /// <summary>A minimal Llama config.json so the tokenizer files can be opened as a folder before the real config exists.</summary>
    private static string WithStubConfig(string dir)
    {
        File.WriteAllText(Path.Combine(dir, HfModelFolder.ConfigFileName),
            """{"model_type": "llama", "vocab_size": 1, "hidden_size": 8, "intermediate_size": 8, "num_hidden_layers": 1, "num_attention_heads": 1}""");
        return dir;
    }
}
