using Engine.Models.Tokenization;
using NUnit.Framework;

namespace Engine.Tests.Tokenization;

/// <summary>tokenizer.json files (the tokenizers library's format) of each supported kind, written by the test.</summary>
public class TokenizerJsonTests
{
    private static readonly string[] Texts = ["Hello, World!", "naïve CAFÉ", "unaffable 123", "中文 hello", "", "  ", "hello [MASK] world", "zebra 😀"];

    private static object BertTokenizerJson(bool lowercase = true) => new
    {
        version = "1.0",
        added_tokens = new[] { "[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]" }
            .Select((t, i) => new { id = i, content = t, single_word = false, lstrip = false, rstrip = false, normalized = false, special = true }),
        normalizer = new { type = "BertNormalizer", clean_text = true, handle_chinese_chars = true, strip_accents = (bool?)null, lowercase },
        pre_tokenizer = new { type = "BertPreTokenizer" },
        post_processor = new
        {
            type = "TemplateProcessing",
            single = new object[] { new { SpecialToken = new { id = "[CLS]", type_id = 0 } }, new { Sequence = new { id = "A", type_id = 0 } }, new { SpecialToken = new { id = "[SEP]", type_id = 0 } } },
            pair = new object[]
            {
                new { SpecialToken = new { id = "[CLS]", type_id = 0 } }, new { Sequence = new { id = "A", type_id = 0 } }, new { SpecialToken = new { id = "[SEP]", type_id = 0 } },
                new { Sequence = new { id = "B", type_id = 1 } }, new { SpecialToken = new { id = "[SEP]", type_id = 1 } },
            },
            special_tokens = new Dictionary<string, object>
            {
                ["[CLS]"] = new { id = "[CLS]", ids = new[] { 2 }, tokens = new[] { "[CLS]" } },
                ["[SEP]"] = new { id = "[SEP]", ids = new[] { 3 }, tokens = new[] { "[SEP]" } },
            },
        },
        decoder = new { type = "WordPiece", prefix = "##", cleanup = true },
        model = new
        {
            type = "WordPiece", unk_token = "[UNK]", continuing_subword_prefix = "##", max_input_chars_per_word = 100,
            vocab = WordPieceTests.Vocabulary.Select((t, i) => (t, i)).ToDictionary(p => p.t, p => p.i),
        },
    };

    [Test]
    public void WordPieceFileMatchesVocabTxt()
    {
        using var fast = new TokenizerTestFolder().WriteJson("tokenizer.json", BertTokenizerJson());
        using var slow = new TokenizerTestFolder().WriteLines("vocab.txt", WordPieceTests.Vocabulary);
        TextTokenizer f = fast.Tokenizer(), s = slow.Tokenizer();
        foreach (var text in Texts)
        {
            Assert.That(f.Encode(text), Is.EqualTo(s.Encode(text)).Using<Encoding>(Same), text);
            Assert.That(f.Encode(text, "the quick fox", maxLength: 6), Is.EqualTo(s.Encode(text, "the quick fox", maxLength: 6)).Using<Encoding>(Same), text);
        }
        Assert.That(TokenizerTestFolder.Tokens(f, f.Encode("naïve", "fox").Ids), Is.EqualTo("[CLS] na ##ive [SEP] fox [SEP]"));
        Assert.That(f.Encode("naïve", "fox").TypeIds, Is.EqualTo(new[] { 0, 0, 0, 0, 1, 1 }));
    }

    [Test]
    public void TokenizerJsonIsPreferredOverVocabTxt()
    {
        using var folder = new TokenizerTestFolder().WriteJson("tokenizer.json", BertTokenizerJson(lowercase: false)).WriteLines("vocab.txt", WordPieceTests.Vocabulary);
        var tok = folder.Tokenizer();
        Assert.That(TokenizerTestFolder.Tokens(tok, tok.EncodeWithoutSpecialTokens("Hello")), Is.EqualTo("Hello"), "the cased tokenizer.json, not the uncased vocab.txt default");
    }

    [Test]
    public void BertProcessingAndRobertaProcessing()
    {
        var json = System.Text.Json.Nodes.JsonNode.Parse(System.Text.Json.JsonSerializer.Serialize(BertTokenizerJson()))!;
        json["post_processor"] = System.Text.Json.Nodes.JsonNode.Parse("""{"type":"BertProcessing","sep":["[SEP]",3],"cls":["[CLS]",2]}""");
        using var bert = new TokenizerTestFolder().Write("tokenizer.json", json.ToJsonString());
        var tok = bert.Tokenizer();
        var e = tok.Encode("hello", "world");
        Assert.That(TokenizerTestFolder.Tokens(tok, e.Ids), Is.EqualTo("[CLS] hello [SEP] world [SEP]"));
        Assert.That(e.TypeIds, Is.EqualTo(new[] { 0, 0, 0, 1, 1 }));
    }

    private static object RobertaTokenizerJson(object? preTokenizer = null, object? postProcessor = null, bool ignoreMerges = false) => new
    {
        version = "1.0",
        added_tokens = new[] { "<s>", "<pad>", "</s>", "<unk>", "<mask>" }.Select((t, i) => new { id = i, content = t, special = true }),
        normalizer = (object?)null,
        pre_tokenizer = preTokenizer ?? new { type = "ByteLevel", add_prefix_space = false, trim_offsets = true, use_regex = true },
        post_processor = postProcessor ?? new { type = "RobertaProcessing", sep = new object[] { "</s>", 2 }, cls = new object[] { "<s>", 0 }, trim_offsets = true, add_prefix_space = false },
        model = new
        {
            type = "BPE", dropout = (double?)null, unk_token = (string?)null, continuing_subword_prefix = "", end_of_word_suffix = "", fuse_unk = false, byte_fallback = false,
            ignore_merges = ignoreMerges, vocab = ByteLevelBpeTests.Vocab(),
            merges = ByteLevelBpeTests.Merges.Select((m, i) => i % 2 == 0 ? (object)m : m.Split(' ')), // both merge spellings
        },
    };

    [Test]
    public void ByteLevelBpeFileMatchesVocabJsonAndMerges()
    {
        using var fast = new TokenizerTestFolder().WriteJson("tokenizer.json", RobertaTokenizerJson());
        using var slow = ByteLevelBpeTests.Folder();
        TextTokenizer f = fast.Tokenizer(), s = slow.Tokenizer();
        foreach (var text in new[] { "hello world!", "world hello", "", "hello<mask>" })
        {
            Assert.That(f.Encode(text), Is.EqualTo(s.Encode(text)).Using<Encoding>(Same), text);
            Assert.That(f.Encode(text, "hello world"), Is.EqualTo(s.Encode(text, "hello world")).Using<Encoding>(Same), text);
        }
        Assert.That(TokenizerTestFolder.Tokens(f, f.Encode("hello", "world").Ids), Is.EqualTo("<s> hello </s> </s> w or ld </s>"));
    }

    /// <summary>Llama 3's layout: a Split regex pre-tokenizer, then ByteLevel without its own regex,
    /// ignore_merges, and a TemplateProcessing that puts a bos token first.</summary>
    [Test]
    public void Llama3StyleSplitByteLevelAndTemplate()
    {
        const string llama3Pattern = @"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";
        var pre = new
        {
            type = "Sequence",
            pretokenizers = new object[]
            {
                new { type = "Split", pattern = new { Regex = llama3Pattern }, behavior = "Isolated", invert = false },
                new { type = "ByteLevel", add_prefix_space = false, trim_offsets = true, use_regex = false },
            },
        };
        var post = new
        {
            type = "Sequence",
            processors = new object[]
            {
                new { type = "ByteLevel", add_prefix_space = true, trim_offsets = false, use_regex = true },
                new
                {
                    type = "TemplateProcessing",
                    single = new object[] { new { SpecialToken = new { id = "<s>", type_id = 0 } }, new { Sequence = new { id = "A", type_id = 0 } } },
                    pair = new object[] { new { SpecialToken = new { id = "<s>", type_id = 0 } }, new { Sequence = new { id = "A", type_id = 0 } }, new { SpecialToken = new { id = "<s>", type_id = 1 } }, new { Sequence = new { id = "B", type_id = 1 } } },
                    special_tokens = new Dictionary<string, object> { ["<s>"] = new { id = "<s>", ids = new[] { 0 }, tokens = new[] { "<s>" } } },
                },
            },
        };
        using var folder = new TokenizerTestFolder().WriteJson("tokenizer.json", RobertaTokenizerJson(pre, post, ignoreMerges: true))
            .WriteJson("tokenizer_config.json", new { tokenizer_class = "PreTrainedTokenizerFast", eos_token = "</s>" });
        var tok = folder.Tokenizer();
        var e = tok.Encode("hello world!!", "world");
        Assert.That(TokenizerTestFolder.Tokens(tok, e.Ids), Is.EqualTo("<s> hello Ġworld ! ! <s> w or ld"));
        Assert.That(e.TypeIds, Is.EqualTo(new[] { 0, 0, 0, 0, 0, 1, 1, 1, 1 }));
        Assert.That(tok.HasPadToken, Is.False);
        Assert.That(tok.PadId, Is.EqualTo(0), "no pad token: config.json's pad_token_id (0 in the test folder)");
    }

    /// <summary>Llama 2's tokenizer.json layout: SentencePiece BPE with byte fallback, spaces turned into ▁
    /// by the normalizer; with tokenizer_class LlamaTokenizerFast the template comes from add_bos/add_eos.</summary>
    [Test]
    public void SentencePieceStyleBpeWithByteFallback()
    {
        var vocab = new Dictionary<string, int> { ["<unk>"] = 0, ["<s>"] = 1, ["</s>"] = 2 };
        for (int b = 0; b < 256; b++) vocab[$"<0x{b:X2}>"] = 3 + b;
        foreach (var t in new[] { "▁", "h", "i", "▁h", "▁hi" }) vocab[t] = vocab.Count;
        var json = new
        {
            added_tokens = new[] { "<unk>", "<s>", "</s>" }.Select((t, i) => new { id = i, content = t, special = true }),
            normalizer = new { type = "Sequence", normalizers = new object[] { new { type = "Prepend", prepend = "▁" }, new { type = "Replace", pattern = new { String = " " }, content = "▁" } } },
            pre_tokenizer = (object?)null,
            post_processor = new { type = "TemplateProcessing", single = new object[] { new { Sequence = new { id = "A", type_id = 0 } } }, pair = new object[] { new { Sequence = new { id = "A", type_id = 0 } }, new { Sequence = new { id = "B", type_id = 1 } } }, special_tokens = new { } },
            model = new { type = "BPE", unk_token = "<unk>", fuse_unk = true, byte_fallback = true, vocab, merges = new[] { "▁ h", "▁h i" } },
        };
        using var folder = new TokenizerTestFolder(padTokenId: null).WriteJson("tokenizer.json", json)
            .WriteJson("tokenizer_config.json", new { tokenizer_class = "LlamaTokenizer", add_bos_token = true, add_eos_token = true, bos_token = "<s>", eos_token = "</s>", unk_token = "<unk>", pad_token = (string?)null });
        var tok = folder.Tokenizer();
        var e = tok.Encode("hi h😀", "ih");
        Assert.That(TokenizerTestFolder.Tokens(tok, e.Ids), Is.EqualTo("<s> ▁hi ▁h <0xF0> <0x9F> <0x98> <0x80> </s> <s> ▁ i h </s>"));
        Assert.That(e.TypeIds, Is.EqualTo(new[] { 0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 1 }));
        Assert.That(tok.PadId, Is.EqualTo(0), "no pad token and no pad_token_id: the unk id");
    }

    [Test]
    public void UnsupportedModelTypeNamesTheFileAndType()
    {
        using var folder = new TokenizerTestFolder().WriteJson("tokenizer.json", new { model = new { type = "Unigram", vocab = new object[] { new object[] { "<unk>", 0.0 } } } });
        var e = Assert.Throws<EngineException>(() => folder.Tokenizer())!;
        Assert.That(e.Message, Does.Contain("tokenizer.json").And.Contain("'Unigram'"));
        Assert.That(e.Message, Does.Not.Contain("\n"));
    }

    [Test]
    public void UnsupportedNormalizerNamesTheFileAndType()
    {
        var json = System.Text.Json.Nodes.JsonNode.Parse(System.Text.Json.JsonSerializer.Serialize(BertTokenizerJson()))!;
        json["normalizer"] = System.Text.Json.Nodes.JsonNode.Parse("""{"type":"Precompiled","precompiled_charsmap":""}""");
        using var folder = new TokenizerTestFolder().Write("tokenizer.json", json.ToJsonString());
        var e = Assert.Throws<EngineException>(() => folder.Tokenizer())!;
        Assert.That(e.Message, Does.Contain("tokenizer.json").And.Contain("'Precompiled'"));
    }

    [Test]
    public void CorruptFileNamesTheFile()
    {
        using var folder = new TokenizerTestFolder().Write("tokenizer.json", "{\"model\": {");
        var e = Assert.Throws<EngineException>(() => folder.Tokenizer())!;
        Assert.That(e.Message, Does.Contain("tokenizer.json").And.Contain("not valid JSON"));
        Assert.That(e.Message, Does.Not.Contain("\n"));
    }

    private static bool Same(Encoding a, Encoding b) => a.Ids.SequenceEqual(b.Ids) && a.TypeIds.SequenceEqual(b.TypeIds);
}
