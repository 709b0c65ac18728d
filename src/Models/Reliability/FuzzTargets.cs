using Encoding = System.Text.Encoding;
using System.Text.Json;
using Engine.IO;
using Engine.Models.Bert;
using Engine.Models.Data;
using Engine.Models.Llama;
using Engine.Models.Peft;
using Engine.Models.Tokenization;

namespace Engine.Models.Reliability;

/// <summary>
/// The readers <see cref="Fuzzer"/> attacks, each with small valid seed inputs made here (no
/// files from outside): config.json of a BERT and of a Llama folder (read and the model built
/// and loaded from the folder's matching weights), every tokenizer file (vocab.txt,
/// tokenizer.json, vocab.json, merges.txt, tokenizer.model, tokenizer_config.json; the tokenizer
/// built and a few texts encoded), adapter_config.json, and the TSV, CSV and JSON Lines readers.
/// </summary>
public static class FuzzTargets
{
    private static readonly string[] Texts = ["Hello, World!", "naïve CAFÉ unaffable 123", "中文 hello world", "", "  [MASK] the fox", "zebra 😀"];

    private static readonly string[] WordPieceVocab =
    [
        "[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "hello", "world", ",", "!", ".", "na", "##ive", "cafe", "un", "##aff", "##able",
        "中", "文", "the", "quick", "brown", "fox", "1", "##2", "##3", "a", "b", "c", "d", "e", "f", "g", "h",
    ];

    private static readonly string[] BpeTokens =
        ["<s>", "<pad>", "</s>", "<unk>", "<mask>", "h", "e", "l", "o", "w", "r", "d", "!", "Ġ", "he", "ll", "hell", "hello", "Ġw", "or", "Ġwor", "ld", "Ġworld"];
    /// <summary>The BPE vocabulary: the tokens above, then every other character of the byte alphabet (so any text encodes).</summary>
    private static Dictionary<string, int> BpeVocab() =>
        BpeTokens.Concat(ByteAlphabet().Except(BpeTokens)).Select((t, i) => (t, i)).ToDictionary(p => p.t, p => p.i);
    /// <summary>GPT-2's byte alphabet (bytes_to_unicode): printable Latin-1 bytes stand for themselves, the others for 256 + n.</summary>
    private static IEnumerable<string> ByteAlphabet()
    {
        int n = 0;
        for (int b = 0; b < 256; b++)
        {
            bool printable = b is >= '!' and <= '~' or >= 0xA1 and <= 0xAC or >= 0xAE and <= 0xFF;
            yield return ((char)(printable ? b : 256 + n++)).ToString();
        }
    }

    private static readonly string[] BpeMerges = ["h e", "l l", "he ll", "hell o", "Ġ w", "o r", "Ġw or", "l d", "Ġwor ld"];

    private static byte[] Utf8(string s) => Encoding.UTF8.GetBytes(s);
    private static byte[] Json(object o) => JsonSerializer.SerializeToUtf8Bytes(o, new JsonSerializerOptions { WriteIndented = true });

    /// <summary>A BERT config.json (no weights needed: tokenizer reads do not map them).</summary>
    private static void TokenizerFolder(string dir)
    {
        File.WriteAllBytes(Path.Combine(dir, HfModelFolder.ConfigFileName), Json(new
        {
            model_type = "bert", vocab_size = 64, hidden_size = 8, num_hidden_layers = 1, num_attention_heads = 2, intermediate_size = 16,
            max_position_embeddings = 32, pad_token_id = 0,
        }));
        File.WriteAllBytes(Path.Combine(dir, SafeTensors.SingleFileName), []);
    }

    private static void Tokenize(string dir)
    {
        var tok = TextTokenizer.FromFolder(HfModelFolder.Open(dir));
        foreach (var t in Texts)
        {
            tok.Encode(t, "the quick brown fox", maxLength: 16);
            tok.Encode(t);
        }
    }

    private static FuzzTarget TokenizerTarget(string name, string file, IReadOnlyList<byte[]> seeds, params (string File, byte[] Bytes)[] companions) =>
        new(name, file, seeds, Tokenize, dir =>
        {
            TokenizerFolder(dir);
            foreach (var (f, b) in companions) File.WriteAllBytes(Path.Combine(dir, f), b);
        });

    private static object WordPieceJson() => new
    {
        version = "1.0",
        added_tokens = new[] { "[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]" }.Select((t, i) => new { id = i, content = t, special = true, normalized = false }),
        normalizer = new { type = "BertNormalizer", clean_text = true, handle_chinese_chars = true, strip_accents = (bool?)null, lowercase = true },
        pre_tokenizer = new { type = "BertPreTokenizer" },
        post_processor = new { type = "BertProcessing", sep = new object[] { "[SEP]", 3 }, cls = new object[] { "[CLS]", 2 } },
        model = new
        {
            type = "WordPiece", unk_token = "[UNK]", continuing_subword_prefix = "##", max_input_chars_per_word = 100,
            vocab = WordPieceVocab.Select((t, i) => (t, i)).ToDictionary(p => p.t, p => p.i),
        },
    };

    private static object BpeJson() => new
    {
        version = "1.0",
        added_tokens = new[] { "<s>", "<pad>", "</s>", "<unk>", "<mask>" }.Select((t, i) => new { id = i, content = t, special = true }),
        normalizer = (object?)null,
        pre_tokenizer = new { type = "ByteLevel", add_prefix_space = false, trim_offsets = true, use_regex = true },
        post_processor = new { type = "RobertaProcessing", sep = new object[] { "</s>", 2 }, cls = new object[] { "<s>", 0 }, trim_offsets = true, add_prefix_space = false },
        model = new
        {
            type = "BPE", dropout = (double?)null, unk_token = (string?)null, continuing_subword_prefix = "", end_of_word_suffix = "", fuse_unk = false,
            byte_fallback = false, vocab = BpeVocab(), merges = BpeMerges,
        },
    };

    /// <summary>A Llama-style SentencePiece BPE model (sentencepiece_model.proto written by hand):
    /// pieces &lt;unk&gt; &lt;s&gt; &lt;/s&gt;, then single characters and a few merges with scores.</summary>
    public static byte[] SentencePieceModel()
    {
        var pieces = new List<(string Piece, float Score, int Type)> { ("<unk>", 0, 2), ("<s>", 0, 3), ("</s>", 0, 3) };
        string[] merged = ["▁h", "▁w", "el", "lo", "▁he", "▁hel", "▁hello", "or", "ld", "▁wor", "▁world"];
        foreach (var (m, i) in merged.Select((m, i) => (m, i))) pieces.Add((m, -i, 1));
        foreach (var c in "▁helowrdtqukcbn,!") pieces.Add((c.ToString(), -100 - pieces.Count, 1));
        var model = new MemoryStream();
        foreach (var (piece, score, type) in pieces)
        {
            var p = new MemoryStream();
            Proto.String(p, 1, piece);
            Proto.Float(p, 2, score);
            Proto.Varint(p, 3, (ulong)type);
            Proto.Bytes(model, 1, p.ToArray());
        }
        var trainer = new MemoryStream();
        Proto.Varint(trainer, 3, 2); // model_type BPE
        Proto.Varint(trainer, 4, (ulong)pieces.Count);
        Proto.Varint(trainer, 40, 0); // unk_id
        Proto.Varint(trainer, 41, 1); // bos_id
        Proto.Varint(trainer, 42, 2); // eos_id
        Proto.Varint(trainer, 43, ulong.MaxValue); // pad_id -1
        Proto.Bytes(model, 2, trainer.ToArray());
        var normalizer = new MemoryStream();
        Proto.String(normalizer, 1, "identity");
        Proto.Varint(normalizer, 3, 1); // add_dummy_prefix
        Proto.Varint(normalizer, 4, 0); // remove_extra_whitespaces
        Proto.Varint(normalizer, 5, 1); // escape_whitespaces
        Proto.Bytes(model, 3, normalizer.ToArray());
        return model.ToArray();
    }

    /// <summary>The few protobuf wire types the model file needs.</summary>
    private static class Proto
    {
        public static void Tag(Stream s, int field, int wire) => Raw(s, (ulong)(field << 3 | wire));
        public static void Raw(Stream s, ulong v)
        {
            while (v >= 0x80) { s.WriteByte((byte)(v | 0x80)); v >>= 7; }
            s.WriteByte((byte)v);
        }
        public static void Varint(Stream s, int field, ulong v) { Tag(s, field, 0); Raw(s, v); }
        public static void Float(Stream s, int field, float v) { Tag(s, field, 5); s.Write(BitConverter.GetBytes(v)); }
        public static void Bytes(Stream s, int field, byte[] b) { Tag(s, field, 2); Raw(s, (ulong)b.Length); s.Write(b); }
        public static void String(Stream s, int field, string v) => Bytes(s, field, Encoding.UTF8.GetBytes(v));
    }

    private static FuzzTarget ConfigTarget(string name, Func<string, byte[]> makeFolder)
    {
        var scratch = Directory.CreateTempSubdirectory("engine-fuzz-seed-").FullName;
        try
        {
            var seed = makeFolder(scratch);
            var weights = File.ReadAllBytes(Path.Combine(scratch, SafeTensors.SingleFileName));
            return new FuzzTarget(name, HfModelFolder.ConfigFileName, [seed],
                dir => SequenceClassifier.FromFolder(HfModelFolder.Open(dir)),
                dir => File.WriteAllBytes(Path.Combine(dir, SafeTensors.SingleFileName), weights));
        }
        finally { Directory.Delete(scratch, recursive: true); }
    }

    private static byte[] BertFolder(string dir)
    {
        var vocab = WordPieceVocab.Concat(Enumerable.Range(0, 31).Select(i => $"w{i}")).ToList();
        RandomBert.Create(dir, vocab, seed: 1, hidden: 8, layers: 2, heads: 2, maxPositions: 32, labels: ["neg", "pos"]);
        return File.ReadAllBytes(Path.Combine(dir, HfModelFolder.ConfigFileName));
    }

    private static byte[] LlamaFolder(string dir)
    {
        var config = Json(new
        {
            model_type = "llama", vocab_size = 48, hidden_size = 8, intermediate_size = 16, num_hidden_layers = 2, num_attention_heads = 2,
            num_key_value_heads = 1, rms_norm_eps = 1e-5, rope_theta = 10000.0, max_position_embeddings = 64, tie_word_embeddings = false,
            pad_token_id = 0, bos_token_id = 1, eos_token_id = 2, id2label = new Dictionary<string, string> { ["0"] = "a", ["1"] = "b", ["2"] = "c" },
            rope_scaling = new { rope_type = "llama3", factor = 8.0, low_freq_factor = 1.0, high_freq_factor = 4.0, original_max_position_embeddings = 32 },
        });
        File.WriteAllBytes(Path.Combine(dir, HfModelFolder.ConfigFileName), config);
        File.WriteAllBytes(Path.Combine(dir, SafeTensors.SingleFileName), []);
        var model = new LlamaForSequenceClassification(HfModelFolder.Open(dir).LlamaConfig, seed: 1);
        SafeTensors.Save(Path.Combine(dir, SafeTensors.SingleFileName), model.NamedParameters().Select(p => new KeyValuePair<string, Tensor>(p.Name, p.Param)));
        return config;
    }

    private static FuzzTarget DataTarget(string file, params string[] seeds) =>
        new("data" + Path.GetExtension(file), file, seeds.Select(Utf8).ToList(), dir =>
        {
            var data = DatasetReader.Read(Path.Combine(dir, file), new DataOptions());
            DatasetReader.Read(Path.Combine(dir, file), new DataOptions { SkipBadLines = true, Warn = _ => { } });
            _ = data.Examples.Count;
        });

    /// <summary>Every target, in a fixed order.</summary>
    public static IReadOnlyList<FuzzTarget> All() =>
    [
        ConfigTarget("config-bert", BertFolder),
        ConfigTarget("config-llama", LlamaFolder),
        TokenizerTarget("vocab.txt", "vocab.txt", [Utf8(string.Join("\n", WordPieceVocab) + "\n")]),
        TokenizerTarget("tokenizer.json", "tokenizer.json", [Json(WordPieceJson()), Json(BpeJson())]),
        TokenizerTarget("vocab.json", "vocab.json", [Json(BpeVocab())],
            ("merges.txt", Utf8("#version: 0.2\n" + string.Join("\n", BpeMerges) + "\n"))),
        TokenizerTarget("merges.txt", "merges.txt", [Utf8("#version: 0.2\n" + string.Join("\n", BpeMerges) + "\n")],
            ("vocab.json", Json(BpeVocab()))),
        TokenizerTarget("tokenizer.model", "tokenizer.model", [SentencePieceModel()]),
        TokenizerTarget("tokenizer_config.json", "tokenizer_config.json",
            [Utf8("""{"do_lower_case": true, "model_max_length": 512, "cls_token": "[CLS]", "sep_token": "[SEP]", "pad_token": "[PAD]", "unk_token": "[UNK]", "mask_token": "[MASK]", "tokenize_chinese_chars": true, "strip_accents": null, "tokenizer_class": "BertTokenizer", "added_tokens_decoder": {"0": {"content": "[PAD]", "special": true}, "33": {"content": "<new>", "special": false}}}""")],
            ("vocab.txt", Utf8(string.Join("\n", WordPieceVocab) + "\n"))),
        new("adapter_config.json", AdapterFiles.ConfigFile,
            [Utf8("""{"peft_type": "LORA", "task_type": "SEQ_CLS", "r": 8, "lora_alpha": 16, "lora_dropout": 0.1, "target_modules": ["query", "value"], "bias": "none", "fan_in_fan_out": false, "use_rslora": false, "use_dora": false, "modules_to_save": ["classifier"], "base_model_name_or_path": "bert"}"""),
             Utf8("""{"peft_type": "LORA", "r": 4, "lora_alpha": 8.0, "target_modules": ".*\\.(q_proj|v_proj)$"}""")],
            dir => AdapterFiles.ReadConfig(dir)),
        DataTarget("data.tsv", "sentence\tlabel\nthe food was good\t1\nit was not great .\t0\n\"quoted\" text\t1\n", "sentence1\tsentence2\tlabel\na\tb\tx\nc\td\ty\n"),
        DataTarget("data.csv", "text,label\n\"the food, was good\",1\n\"a \"\"quoted\"\" word\",0\n\"two\nlines\",1\nplain,0\n"),
        DataTarget("data.jsonl", "{\"text\": \"the food was good\", \"label\": 1}\n{\"text\": \"not great\", \"label\": 0}\n\n{\"sentence\": \"x\", \"text\": \"é ü\", \"label\": \"1\"}\n"),
    ];
}
