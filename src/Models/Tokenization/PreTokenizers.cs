using System.Text;
using System.Text.RegularExpressions;

namespace Engine.Models.Tokenization;

/// <summary>
/// A pre-tokenizer splits normalized text into pieces ("words") that the model encodes one by one,
/// as the tokenizers library's pre-tokenizers do. <c>isFirst</c> tells whether the piece starts the
/// input (Metaspace's prepend_scheme "first" uses it).
/// </summary>
public abstract class PreTokenizer
{
    public abstract void Split(string piece, bool isFirst, List<string> output);

    public List<string> Split(string text, bool isFirst)
    {
        var output = new List<string>();
        Split(text, isFirst, output);
        return output;
    }
}

/// <summary>Several pre-tokenizers, each applied to every piece the previous one made.</summary>
public sealed class SequencePreTokenizer(IReadOnlyList<PreTokenizer> steps) : PreTokenizer
{
    public override void Split(string piece, bool isFirst, List<string> output)
    {
        var pieces = new List<string> { piece };
        foreach (var step in steps)
        {
            var next = new List<string>();
            for (int i = 0; i < pieces.Count; i++) step.Split(pieces[i], isFirst && i == 0, next);
            pieces = next;
        }
        output.AddRange(pieces);
    }
}

/// <summary>BERT's pre-tokenizer: split on whitespace (dropped) and around every punctuation
/// character (kept as a piece of its own); see <see cref="Normalizers.IsPunctuation"/>.</summary>
public sealed class BertPreTokenizer : PreTokenizer
{
    public override void Split(string piece, bool isFirst, List<string> output)
    {
        var word = new StringBuilder();
        void Flush() { if (word.Length > 0) { output.Add(word.ToString()); word.Clear(); } }
        foreach (var rune in piece.EnumerateRunes())
        {
            if (Rune.IsWhiteSpace(rune)) Flush();
            else if (Normalizers.IsPunctuation(rune)) { Flush(); output.Add(rune.ToString()); }
            else word.AppendRune(rune);
        }
        Flush();
    }
}

/// <summary>tokenizers' WhitespaceSplit (split on whitespace) and Whitespace (pieces \w+ or [^\w\s]+).</summary>
public sealed class WhitespacePreTokenizer(bool wordsAndPunctuation) : PreTokenizer
{
    private static readonly Regex Words = new(@"\w+|[^\w\s]+", RegexOptions.CultureInvariant);

    public override void Split(string piece, bool isFirst, List<string> output)
    {
        if (wordsAndPunctuation) foreach (Match m in Words.Matches(piece)) output.Add(m.Value);
        else output.AddRange(piece.Split((char[]?)null, StringSplitOptions.RemoveEmptyEntries));
    }
}

/// <summary>tokenizers' Split with a regex (or literal) pattern; behaviours "Isolated" (every match
/// and every gap between matches is a piece) and "Removed" (gaps only).</summary>
public sealed class RegexSplitPreTokenizer(Regex pattern, bool removeMatches) : PreTokenizer
{
    public override void Split(string piece, bool isFirst, List<string> output)
    {
        int at = 0;
        foreach (Match m in pattern.Matches(piece))
        {
            if (m.Length == 0) continue;
            if (m.Index > at) output.Add(piece[at..m.Index]);
            if (!removeMatches) output.Add(m.Value);
            at = m.Index + m.Length;
        }
        if (at < piece.Length) output.Add(piece[at..]);
    }
}

/// <summary>
/// GPT-2's byte-level pre-tokenizer (tokenizers' ByteLevel): optionally add a leading space, split
/// with GPT-2's regex (when use_regex), then write every UTF-8 byte of each piece as one printable
/// character of GPT-2's byte alphabet (bytes 33–126, 161–172 and 174–255 stand for themselves; the
/// other 68 bytes map to U+0100 onwards in byte order), so the BPE vocabulary covers every text.
/// </summary>
public sealed class ByteLevelPreTokenizer(bool addPrefixSpace, bool useRegex) : PreTokenizer
{
    /// <summary>GPT-2's split pattern: contractions, letters, digits, other symbols (each with an
    /// optional leading space), then whitespace not followed by a non-space, then whitespace.</summary>
    public static readonly Regex Gpt2Pattern = new(@"'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+", RegexOptions.CultureInvariant);

    public static readonly char[] ByteToChar = BuildByteAlphabet();

    private static char[] BuildByteAlphabet()
    {
        var map = new char[256];
        int next = 256;
        for (int b = 0; b < 256; b++)
            map[b] = b is >= 33 and <= 126 or >= 161 and <= 172 or >= 174 and <= 255 ? (char)b : (char)next++;
        return map;
    }

    public static string ToByteAlphabet(string text)
    {
        var bytes = System.Text.Encoding.UTF8.GetBytes(text);
        var chars = new char[bytes.Length];
        for (int i = 0; i < bytes.Length; i++) chars[i] = ByteToChar[bytes[i]];
        return new string(chars);
    }

    public override void Split(string piece, bool isFirst, List<string> output)
    {
        if (addPrefixSpace && !piece.StartsWith(' ')) piece = " " + piece;
        if (!useRegex) { if (piece.Length > 0) output.Add(ToByteAlphabet(piece)); return; }
        foreach (Match m in Gpt2Pattern.Matches(piece)) output.Add(ToByteAlphabet(m.Value));
    }
}

/// <summary>
/// SentencePiece's whitespace handling (tokenizers' Metaspace): spaces become the replacement
/// character (▁ U+2581), one is put in front as prepend_scheme says ("always", "first": only at the
/// start of the input, "never"), and with split the text is cut before every ▁.
/// </summary>
public sealed class MetaspacePreTokenizer(char replacement, string prependScheme, bool split) : PreTokenizer
{
    public override void Split(string piece, bool isFirst, List<string> output)
    {
        var text = piece.Replace(' ', replacement);
        bool prepend = prependScheme == "always" || (prependScheme == "first" && isFirst);
        if (prepend && !text.StartsWith(replacement)) text = replacement + text;
        if (!split) { if (text.Length > 0) output.Add(text); return; }
        int start = 0;
        for (int i = 1; i < text.Length; i++)
            if (text[i] == replacement) { output.Add(text[start..i]); start = i; }
        if (text.Length > start) output.Add(text[start..]);
    }
}
