using Engine.Models.Tokenization;
using Microsoft.ML.Tokenizers;
using NUnit.Framework;

namespace Engine.Tests.Tokenization;

/// <summary>
/// Why the engine keeps its own WordPiece and BPE code although Microsoft.ML.Tokenizers (a dependency,
/// used for SentencePiece) has BertTokenizer, WordPieceTokenizer and BpeTokenizer: for each, a concrete
/// input on which the library's ids differ from Hugging Face's. The expected ids are Hugging Face
/// tokenizers' (0.23.2, the Rust library behind the "fast" tokenizers, run on the same vocabulary and
/// input; docs/tokenizers.md says how). Each test checks that the engine gives Hugging Face's ids and
/// the library does not: when a library version fixes the difference the test fails, and the engine
/// should then use the library for that part and delete its own.
/// </summary>
public class LibraryDifferenceTests
{
    private static readonly string[] BertVocabulary = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "$", "5", "a", "+", "b", "na", "##ive", "cafe", "café", "`", "x"];

    /// <summary>BERT splits every ASCII non-alphanumeric character off as punctuation ($ + ` included, as
    /// BertTokenizerFast does); the library's BertTokenizer drops the ones that are Unicode symbols.
    /// Uncased BERT strips accents (NFD, drop Mn); the library does it with string.Normalize, which leaves
    /// non-ASCII text unchanged under the engine's invariant globalization, so accented words become [UNK].</summary>
    [TestCase("$5 a+b `x`", true, "$ 5 a + b ` x `", TestName = "BertTokenizerDropsAsciiSymbols(uncased)")]
    [TestCase("$5 a+b `x`", false, "$ 5 a + b ` x `", TestName = "BertTokenizerDropsAsciiSymbols(cased)")]
    [TestCase("naïve café", true, "na ##ive cafe", TestName = "BertTokenizerKeepsAccentsUnderInvariantGlobalization")]
    public void BertTokenizerGivesOtherIds(string text, bool lowercase, string huggingFaceTokens)
    {
        using var folder = new TokenizerTestFolder().WriteLines("vocab.txt", BertVocabulary).WriteJson("tokenizer_config.json", new { do_lower_case = lowercase });
        var ours = folder.Tokenizer();
        var huggingFace = TokenizerTestFolder.Ids(ours, huggingFaceTokens.Split(' '));
        var library = BertTokenizer.Create(folder.File("vocab.txt"), new BertOptions { LowerCaseBeforeTokenization = lowercase, RemoveNonSpacingMarks = lowercase });

        Assert.That(ours.EncodeWithoutSpecialTokens(text), Is.EqualTo(huggingFace));
        Assert.That(library.EncodeToIds(text, addSpecialTokens: false), Is.Not.EqualTo(huggingFace),
            $"the library now gives Hugging Face's ids for '{text}': it could replace the engine's WordPiece tokenizer (see docs/tokenizers.md)");
    }

    /// <summary>WordPiece's 100-character limit counts code points in Hugging Face; the library's
    /// WordPieceTokenizer (the model stage alone) counts UTF-16 units, so a word of 60 characters outside
    /// the Basic Multilingual Plane (𝔘, U+1D518) is [UNK] there and 60 pieces in Hugging Face.</summary>
    [Test]
    public void WordPieceTokenizerCountsUtf16UnitsNotCodePoints()
    {
        const string letter = "\U0001D518";
        var word = string.Concat(Enumerable.Repeat(letter, 60));
        string[] tokens = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "x", "##x", letter, "##" + letter];
        var huggingFace = new[] { 6 }.Concat(Enumerable.Repeat(7, 59)).ToArray();
        var ours = new List<int>();
        new WordPieceModel(new Vocabulary(tokens.Select((t, i) => (t, i)).ToDictionary(p => p.t, p => p.i)), unknownId: 1).Encode(word, ours);
        using var vocab = new MemoryStream(System.Text.Encoding.UTF8.GetBytes(string.Join("\n", tokens) + "\n"));
        var library = WordPieceTokenizer.Create(vocab, new WordPieceOptions { UnknownToken = "[UNK]" });

        Assert.That(ours, Is.EqualTo(huggingFace));
        Assert.That(library.EncodeToIds(word, considerPreTokenization: false, considerNormalization: false), Is.Not.EqualTo(huggingFace),
            "the library now counts code points: its WordPiece model could replace the engine's (see docs/tokenizers.md)");
    }

    /// <summary>Llama 2's converted tokenizer.json is BPE with byte_fallback: a character outside the
    /// vocabulary becomes its UTF-8 bytes as &lt;0xXX&gt; tokens. The library's BpeTokenizer has no such
    /// option and gives the unknown token.</summary>
    [Test]
    public void BpeTokenizerHasNoByteFallback()
    {
        const string text = "▁hi▁h😀";   // what Llama 2's normalizer makes of "hi h😀"
        var vocab = new Dictionary<string, int> { ["<unk>"] = 0, ["<s>"] = 1, ["</s>"] = 2 };
        for (int b = 0; b < 256; b++) vocab[$"<0x{b:X2}>"] = 3 + b;
        foreach (var t in new[] { "▁", "h", "i", "▁h", "▁hi" }) vocab[t] = vocab.Count;
        (string, string)[] merges = [("▁", "h"), ("▁h", "i")];
        int[] huggingFace = [263, 262, 243, 162, 155, 131];   // ▁hi ▁h <0xF0> <0x9F> <0x98> <0x80>
        var ours = new List<int>();
        new BpeModel(new Vocabulary(vocab), merges, "test", unknownId: 0, fuseUnknown: true, byteFallback: true).Encode(text, ours);
        var library = BpeTokenizer.Create(new BpeOptions(vocab) { Merges = merges.Select(m => $"{m.Item1} {m.Item2}"), UnknownToken = "<unk>", FuseUnknownTokens = true });

        Assert.That(ours, Is.EqualTo(huggingFace));
        Assert.That(typeof(BpeOptions).GetProperty("ByteFallback"), Is.Null, "the library now has byte fallback (see docs/tokenizers.md)");
        Assert.That(library.EncodeToIds(text, considerPreTokenization: false, considerNormalization: false), Is.Not.EqualTo(huggingFace));
    }

    /// <summary>Llama 3's tokenizer.json sets ignore_merges: a piece that is itself in the vocabulary is
    /// taken whole even when the merges would not build it. The library's BpeTokenizer has no such option.</summary>
    [Test]
    public void BpeTokenizerHasNoIgnoreMerges()
    {
        var vocab = new Dictionary<string, int> { ["a"] = 0, ["b"] = 1, ["c"] = 2, ["ab"] = 3, ["abc"] = 4 };
        int[] huggingFace = [4];   // "abc" whole; without ignore_merges it would be ab c
        var ours = new List<int>();
        new BpeModel(new Vocabulary(vocab), [("a", "b")], "test", ignoreMerges: true).Encode("abc", ours);
        var library = BpeTokenizer.Create(new BpeOptions(vocab) { Merges = ["a b"] });

        Assert.That(ours, Is.EqualTo(huggingFace));
        Assert.That(typeof(BpeOptions).GetProperty("IgnoreMerges"), Is.Null, "the library now has ignore_merges (see docs/tokenizers.md)");
        Assert.That(library.EncodeToIds("abc", considerPreTokenization: false, considerNormalization: false), Is.Not.EqualTo(huggingFace));
    }
}
