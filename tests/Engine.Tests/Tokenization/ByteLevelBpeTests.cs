using Engine.Models.Tokenization;
using NUnit.Framework;

namespace Engine.Tests.Tokenization;

/// <summary>RoBERTa's byte-level BPE from a small vocab.json + merges.txt written by the test
/// (Ġ is GPT-2's byte alphabet for the space byte).</summary>
public class ByteLevelBpeTests
{
    internal static readonly string[] Merges = ["h e", "l l", "he ll", "hell o", "Ġ w", "o r", "Ġw or", "l d", "Ġwor ld"];

    internal static Dictionary<string, int> Vocab()
    {
        string[] tokens = ["<s>", "<pad>", "</s>", "<unk>", "<mask>", "h", "e", "l", "o", "w", "r", "d", "!", "Ġ",
            "he", "ll", "hell", "hello", "Ġw", "or", "Ġwor", "ld", "Ġworld"];
        return tokens.Select((t, i) => (t, i)).ToDictionary(p => p.t, p => p.i);
    }

    internal static TokenizerTestFolder Folder(object? tokenizerConfig = null)
    {
        var folder = new TokenizerTestFolder(padTokenId: 1).WriteJson("vocab.json", Vocab())
            .WriteLines("merges.txt", ["#version: 0.2", .. Merges]);
        if (tokenizerConfig is not null) folder.WriteJson("tokenizer_config.json", tokenizerConfig);
        return folder;
    }

    [Test]
    public void SingleTextIsBosTextEos()
    {
        using var folder = Folder();
        var tok = folder.Tokenizer();
        var e = tok.Encode("hello world!");
        Assert.That(TokenizerTestFolder.Tokens(tok, e.Ids), Is.EqualTo("<s> hello Ġworld ! </s>"));
        Assert.That(e.TypeIds, Is.All.EqualTo(0));
        Assert.That(tok.PadId, Is.EqualTo(1));
    }

    [Test]
    public void PairIsJoinedByTwoEosAllTypeZero()
    {
        using var folder = Folder();
        var tok = folder.Tokenizer();
        var e = tok.Encode("hello", "world");
        Assert.That(TokenizerTestFolder.Tokens(tok, e.Ids), Is.EqualTo("<s> hello </s> </s> w or ld </s>"));
        Assert.That(e.TypeIds, Is.All.EqualTo(0));
        e = tok.Encode("hello hello", "world world", maxLength: 8);
        Assert.That(TokenizerTestFolder.Tokens(tok, e.Ids), Is.EqualTo("<s> hello Ġ </s> </s> w or </s>"),
            "3 and 4 content tokens, 4 special tokens, room 4: both are cut to 2");
    }

    [Test]
    public void AddPrefixSpaceAndUnknownBytes()
    {
        using var folder = Folder(new { add_prefix_space = true });
        var tok = folder.Tokenizer();
        Assert.That(TokenizerTestFolder.Tokens(tok, tok.EncodeWithoutSpecialTokens("world")), Is.EqualTo("Ġworld"));
        // 'é' is the bytes C3 A9 ("Ã©" in the byte alphabet), not in this vocabulary: one <unk> per byte.
        Assert.That(TokenizerTestFolder.Tokens(tok, tok.EncodeWithoutSpecialTokens("hé")), Is.EqualTo("Ġ h <unk> <unk>"));
    }

    [Test]
    public void SpecialTokensInTheText()
    {
        using var folder = Folder();
        var tok = folder.Tokenizer();
        Assert.That(TokenizerTestFolder.Tokens(tok, tok.EncodeWithoutSpecialTokens("hello<mask> world")), Is.EqualTo("hello <mask> Ġworld"));
    }

    [Test]
    public void Gpt2SplitPattern()
    {
        var pieces = new ByteLevelPreTokenizer(addPrefixSpace: false, useRegex: true).Split("I'm  fine, 123 ok!\n", true);
        Assert.That(pieces, Is.EqualTo(new[] { "I", "'m", "Ġ", "Ġfine", ",", "Ġ123", "Ġok", "!", "Ċ" }));
    }

    [Test]
    public void ByteAlphabetIsGpt2s()
    {
        Assert.That(ByteLevelPreTokenizer.ByteToChar[' '], Is.EqualTo('Ġ'));
        Assert.That(ByteLevelPreTokenizer.ByteToChar['\n'], Is.EqualTo('Ċ'));
        Assert.That(ByteLevelPreTokenizer.ByteToChar['a'], Is.EqualTo('a'));
        Assert.That(ByteLevelPreTokenizer.ByteToChar.Distinct().Count(), Is.EqualTo(256));
    }

    [Test]
    public void MergesFollowRankNotPosition()
    {
        // "a b" is ranked after "b c": in "abc" the b–c merge happens first, leaving a + bc.
        var vocab = new Dictionary<string, int> { ["a"] = 0, ["b"] = 1, ["c"] = 2, ["ab"] = 3, ["bc"] = 4 };
        var model = new BpeModel(new Engine.Models.Tokenization.Vocabulary(vocab), [("b", "c"), ("a", "b")], "test");
        var ids = new List<int>();
        model.Encode("abc", ids);
        Assert.That(ids, Is.EqualTo(new[] { 0, 4 }));
        ids.Clear();
        model.Encode("abab", ids);
        Assert.That(ids, Is.EqualTo(new[] { 3, 3 }));
    }

    [Test]
    public void MergeOutsideTheVocabularyNamesTheFile()
    {
        using var folder = new TokenizerTestFolder().WriteJson("vocab.json", Vocab()).WriteLines("merges.txt", ["#version: 0.2", "h e", "x y"]);
        var e = Assert.Throws<EngineException>(() => folder.Tokenizer())!;
        Assert.That(e.Message, Does.Contain("merges.txt").And.Contain("'x'"));
    }

    [Test]
    public void MalformedMergeLineNamesTheFileAndLine()
    {
        using var folder = new TokenizerTestFolder().WriteJson("vocab.json", Vocab()).WriteLines("merges.txt", ["#version: 0.2", "h e", "hell"]);
        var e = Assert.Throws<EngineException>(() => folder.Tokenizer())!;
        Assert.That(e.Message, Does.Contain("merges.txt").And.Contain("line 3"));
    }

    [Test]
    public void MissingMergesNamesTheFile()
    {
        using var folder = new TokenizerTestFolder().WriteJson("vocab.json", Vocab());
        var e = Assert.Throws<EngineException>(() => folder.Tokenizer())!;
        Assert.That(e.Message, Does.Contain("vocab.json").And.Contain("merges.txt"));
    }

    [Test]
    public void CorruptVocabularyNamesTheFile()
    {
        using var folder = new TokenizerTestFolder().Write("vocab.json", "[1, 2").WriteLines("merges.txt", ["h e"]);
        var e = Assert.Throws<EngineException>(() => folder.Tokenizer())!;
        Assert.That(e.Message, Does.Contain("vocab.json").And.Contain("not valid JSON"));
    }
}
