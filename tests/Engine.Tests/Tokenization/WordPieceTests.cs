using Engine.Models.Tokenization;
using NUnit.Framework;

namespace Engine.Tests.Tokenization;

/// <summary>BERT WordPiece from a small vocab.txt written by the test, configured by tokenizer_config.json.</summary>
public class WordPieceTests
{
    internal static readonly string[] Vocabulary =
    [
        "[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "hello", "world", ",", "!", ".", "na", "##ive", "cafe", "un", "##aff", "##able",
        "中", "文", "the", "quick", "brown", "fox", "1", "##2", "##3", "a", "b", "c", "d", "e", "f", "g", "h", "Hello", "café",
    ];

    private static TokenizerTestFolder Folder(object? tokenizerConfig = null)
    {
        var folder = new TokenizerTestFolder().WriteLines("vocab.txt", Vocabulary);
        if (tokenizerConfig is not null) folder.WriteJson("tokenizer_config.json", tokenizerConfig);
        return folder;
    }

    [Test]
    public void SingleTextGetsClsAndSepWithTypeZero()
    {
        using var folder = Folder();
        var tok = folder.Tokenizer();
        var e = tok.Encode("Hello, World!");
        Assert.That(TokenizerTestFolder.Tokens(tok, e.Ids), Is.EqualTo("[CLS] hello , world ! [SEP]"));
        Assert.That(e.TypeIds, Is.All.EqualTo(0));
        Assert.That(tok.PadId, Is.EqualTo(0));
        Assert.That(tok.VocabSize, Is.EqualTo(Vocabulary.Length));
    }

    [Test]
    public void UncasedStripsAccentsAsHuggingFaceDoes()
    {
        using var folder = Folder();
        var tok = folder.Tokenizer();
        Assert.That(TokenizerTestFolder.Tokens(tok, tok.EncodeWithoutSpecialTokens("naïve CAFÉ")), Is.EqualTo("na ##ive cafe"));
        Assert.That(TokenizerTestFolder.Tokens(tok, tok.EncodeWithoutSpecialTokens("unaffable")), Is.EqualTo("un ##aff ##able"));
        Assert.That(CanonicalDecomposition.Decompose("é한ǖ"), Is.EqualTo("e\u0301\u1112\u1161\u11AB" + "u\u0308\u0304"));
    }

    [Test]
    public void CasedKeepsCaseAndAccents()
    {
        using var folder = Folder(new { do_lower_case = false });
        var tok = folder.Tokenizer();
        Assert.That(TokenizerTestFolder.Tokens(tok, tok.EncodeWithoutSpecialTokens("Hello hello café naïve")), Is.EqualTo("Hello hello café [UNK]"));
    }

    [Test]
    public void LowercaseWithoutStrippingAccentsWhenConfigSaysSo()
    {
        using var folder = Folder(new { do_lower_case = true, strip_accents = false });
        var tok = folder.Tokenizer();
        Assert.That(TokenizerTestFolder.Tokens(tok, tok.EncodeWithoutSpecialTokens("CAFÉ")), Is.EqualTo("café"));
    }

    [Test]
    public void CjkPunctuationControlAndWhitespace()
    {
        using var folder = Folder();
        var tok = folder.Tokenizer();
        Assert.That(TokenizerTestFolder.Tokens(tok, tok.EncodeWithoutSpecialTokens("中文hello\u0000\u200b.\t\n world\u00a0!")), Is.EqualTo("中 文 hello . world !"));
        Assert.That(tok.Encode("").Ids, Is.EqualTo(TokenizerTestFolder.Ids(tok, "[CLS]", "[SEP]")));
        Assert.That(tok.Encode(" \t\n ").Ids, Is.EqualTo(TokenizerTestFolder.Ids(tok, "[CLS]", "[SEP]")));
    }

    [Test]
    public void UnknownAndOverlongWordsBecomeUnk()
    {
        using var folder = Folder();
        var tok = folder.Tokenizer();
        Assert.That(TokenizerTestFolder.Tokens(tok, tok.EncodeWithoutSpecialTokens("123 zebra 😀")), Is.EqualTo("1 ##2 ##3 [UNK] [UNK]"));
        Assert.That(tok.EncodeWithoutSpecialTokens("naive"), Is.EqualTo(TokenizerTestFolder.Ids(tok, "na", "##ive")));
    }

    [Test]
    public void MaxCharactersRuleCountsCodePoints()
    {
        var vocab = new Dictionary<string, int> { ["[UNK]"] = 0, ["x"] = 1, ["##x"] = 2 };
        var model = new WordPieceModel(new Engine.Models.Tokenization.Vocabulary(vocab), 0, "##", maxCharacters: 100);
        var ids = new List<int>();
        model.Encode(new string('x', 100), ids);
        Assert.That(ids, Has.Count.EqualTo(100), "exactly 100 characters are still split");
        ids.Clear();
        model.Encode(new string('x', 101), ids);
        Assert.That(ids, Is.EqualTo(new[] { 0 }), "more than 100 characters become [UNK]");
    }

    [Test]
    public void PairGetsSepAndTypeIds()
    {
        using var folder = Folder();
        var tok = folder.Tokenizer();
        var e = tok.Encode("hello world", "the quick fox");
        Assert.That(TokenizerTestFolder.Tokens(tok, e.Ids), Is.EqualTo("[CLS] hello world [SEP] the quick fox [SEP]"));
        Assert.That(e.TypeIds, Is.EqualTo(new[] { 0, 0, 0, 0, 1, 1, 1, 1 }));
    }

    [Test]
    public void SpecialTokensInTheTextKeepTheirIds()
    {
        using var folder = Folder();
        var tok = folder.Tokenizer();
        Assert.That(TokenizerTestFolder.Tokens(tok, tok.EncodeWithoutSpecialTokens("hello [MASK] world[SEP]")), Is.EqualTo("hello [MASK] world [SEP]"));
    }

    [Test]
    public void TruncatesLongestFirst()
    {
        using var folder = Folder();
        var tok = folder.Tokenizer();
        // 5 and 2 content tokens, max 8 → room 5: the shorter keeps 2, the longer gets 3.
        var e = tok.Encode("a b c d e", "f g", maxLength: 8);
        Assert.That(TokenizerTestFolder.Tokens(tok, e.Ids), Is.EqualTo("[CLS] a b c [SEP] f g [SEP]"));
        // Equal lengths 4 and 4, room 7: the first gets 3, the second 4 (ties take from the first).
        e = tok.Encode("a b c d", "e f g h", maxLength: 10);
        Assert.That(TokenizerTestFolder.Tokens(tok, e.Ids), Is.EqualTo("[CLS] a b c [SEP] e f g h [SEP]"));
        e = tok.Encode("a b c d e f g h", maxLength: 4);
        Assert.That(TokenizerTestFolder.Tokens(tok, e.Ids), Is.EqualTo("[CLS] a b [SEP]"));
        e = tok.Encode("a b c", "d e", maxLength: 2);
        Assert.That(TokenizerTestFolder.Tokens(tok, e.Ids), Is.EqualTo("[CLS] [SEP] [SEP]"), "no room for content");
    }

    [Test]
    public void ModelMaxLengthTruncatesWhenNoMaxLengthIsGiven()
    {
        using var folder = Folder(new { model_max_length = 5 });
        var tok = folder.Tokenizer();
        Assert.That(TokenizerTestFolder.Tokens(tok, tok.Encode("a b c d e").Ids), Is.EqualTo("[CLS] a b c [SEP]"));
        Assert.That(tok.Encode("a b c d e", maxLength: 100).Ids, Has.Count.EqualTo(7));
    }

    /// <summary>The cases of tokenizers' own truncate_encodings_longest_first test (lengths 0, 2, 4, 8; max 7).</summary>
    [TestCase(0, 0, 0, 0)] [TestCase(0, 2, 0, 2)] [TestCase(0, 4, 0, 4)] [TestCase(0, 8, 0, 7)]
    [TestCase(2, 0, 2, 0)] [TestCase(2, 2, 2, 2)] [TestCase(2, 4, 2, 4)] [TestCase(2, 8, 2, 5)]
    [TestCase(4, 0, 4, 0)] [TestCase(4, 2, 4, 2)] [TestCase(4, 4, 3, 4)] [TestCase(4, 8, 3, 4)]
    [TestCase(8, 0, 7, 0)] [TestCase(8, 2, 5, 2)] [TestCase(8, 4, 4, 3)] [TestCase(8, 8, 3, 4)]
    public void LongestFirstMatchesTheTokenizersLibrary(int n1, int n2, int want1, int want2)
    {
        var (a, b) = Truncation.LongestFirst(Enumerable.Range(0, n1).ToArray(), Enumerable.Range(100, n2).ToArray(), 7);
        Assert.That((a.Count, b!.Count), Is.EqualTo((want1, want2)));
        Assert.That(a, Is.EqualTo(Enumerable.Range(0, want1)), "tokens are removed from the end");
    }

    [Test]
    public void EncodeBatchPadsOnTheRight()
    {
        using var folder = Folder();
        var tok = folder.Tokenizer();
        var batch = tok.EncodeBatch(["hello", "hello world !"], ["a", "b c"]);
        Assert.That((batch.Rows, batch.Columns), Is.EqualTo((2, 8)));
        Assert.That(batch.Ids[..8], Is.EqualTo(TokenizerTestFolder.Ids(tok, "[CLS]", "hello", "[SEP]", "a", "[SEP]", "[PAD]", "[PAD]", "[PAD]")));
        Assert.That(batch.AttentionMask[..8], Is.EqualTo(new[] { 1, 1, 1, 1, 1, 0, 0, 0 }));
        Assert.That(batch.TypeIds[8..], Is.EqualTo(new[] { 0, 0, 0, 0, 0, 1, 1, 1 }));
    }

    [Test]
    public void RenamedSpecialTokensFromTokenizerConfig()
    {
        using var folder = new TokenizerTestFolder().WriteLines("vocab.txt", ["<pad>", "<unk>", "<cls>", "<sep>", "hello"])
            .WriteJson("tokenizer_config.json", new { unk_token = "<unk>", cls_token = new { content = "<cls>" }, sep_token = "<sep>", pad_token = "<pad>" });
        var tok = folder.Tokenizer();
        Assert.That(tok.Encode("hello zebra").Ids, Is.EqualTo(new[] { 2, 4, 1, 3 }));
    }

    [Test]
    public void MissingSpecialTokenNamesTheFile()
    {
        using var folder = new TokenizerTestFolder().WriteLines("vocab.txt", ["[PAD]", "[UNK]", "hello"]);
        var e = Assert.Throws<EngineException>(() => folder.Tokenizer())!;
        Assert.That(e.Message, Does.Contain("vocab.txt").And.Contain("[CLS]"));
        Assert.That(e.Message, Does.Not.Contain("\n"));
    }

    [Test]
    public void CorruptVocabularyNamesTheFile()
    {
        using var folder = new TokenizerTestFolder();
        File.WriteAllBytes(folder.File("vocab.txt"), [0x5B, 0x55, 0x4E, 0x4B, 0x5D, 0x0A, 0xFF, 0xFE, 0x00, 0x0A]);
        var e = Assert.Throws<EngineException>(() => folder.Tokenizer())!;
        Assert.That(e.Message, Does.Contain("vocab.txt"));
        Assert.That(e.Message, Does.Not.Contain("\n"));
    }

    [Test]
    public void CorruptTokenizerConfigNamesTheFile()
    {
        using var folder = Folder().Write("tokenizer_config.json", "{ not json");
        var e = Assert.Throws<EngineException>(() => folder.Tokenizer())!;
        Assert.That(e.Message, Does.Contain("tokenizer_config.json"));
    }

    [Test]
    public void FolderWithoutTokenizerFilesNamesTheFolder()
    {
        using var folder = new TokenizerTestFolder();
        var e = Assert.Throws<EngineException>(() => folder.Tokenizer())!;
        Assert.That(e.Message, Does.Contain(folder.Path).And.Contain("no tokenizer files"));
    }
}
