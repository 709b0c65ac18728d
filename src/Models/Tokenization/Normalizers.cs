using System.Globalization;
using System.Text;
using System.Text.RegularExpressions;

namespace Engine.Models.Tokenization;

/// <summary>
/// Text normalizers, each a function from text to text, as the tokenizers library's normalizers
/// (the names are theirs). All work on Unicode code points (<see cref="Rune"/>), not UTF-16 units,
/// so characters outside the Basic Multilingual Plane (emoji, rare CJK) count as one character.
/// </summary>
public static class Normalizers
{
    /// <summary>
    /// BERT's normalizer (tokenizers' BertNormalizer; transformers' BasicTokenizer does the same steps):
    /// clean text (drop NUL, U+FFFD and control characters other than tab/newline/return; every
    /// whitespace character becomes a space), put spaces around CJK ideographs, strip accents
    /// (NFD, then drop non-spacing marks, category Mn), lower-case. Transformers' slow tokenizer
    /// lower-cases before stripping accents; the fast one strips first; the results differ only for
    /// characters whose lower case brings a combining mark (U+0130 'İ').
    /// </summary>
    public static string Bert(string text, bool cleanText, bool handleChineseChars, bool stripAccents, bool lowercase)
    {
        var sb = new StringBuilder(text.Length + 8);
        foreach (var rune in text.EnumerateRunes())
        {
            if (cleanText)
            {
                if (rune.Value == 0 || rune.Value == 0xFFFD || IsControl(rune)) continue;
                if (IsWhitespace(rune)) { sb.Append(' '); continue; }
            }
            if (handleChineseChars && IsChineseCharacter(rune.Value)) { sb.Append(' ').AppendRune(rune).Append(' '); continue; }
            sb.AppendRune(rune);
        }
        var result = sb.ToString();
        if (stripAccents) result = StripAccents(result);
        if (lowercase) result = result.ToLowerInvariant();
        return result;
    }

    /// <summary>NFD (<see cref="CanonicalDecomposition"/>, not the platform's, which invariant globalization
    /// disables), then drop non-spacing marks (Unicode category Mn).</summary>
    public static string StripAccents(string text)
    {
        var decomposed = CanonicalDecomposition.Decompose(text);
        var sb = new StringBuilder(decomposed.Length);
        foreach (var rune in decomposed.EnumerateRunes())
            if (Rune.GetUnicodeCategory(rune) != UnicodeCategory.NonSpacingMark) sb.AppendRune(rune);
        return sb.ToString();
    }

    /// <summary>Control characters as BERT defines them: category C* except tab, newline and return.</summary>
    public static bool IsControl(Rune rune)
    {
        if (rune.Value is '\t' or '\n' or '\r') return false;
        return Rune.GetUnicodeCategory(rune) is UnicodeCategory.Control or UnicodeCategory.Format or UnicodeCategory.OtherNotAssigned
            or UnicodeCategory.PrivateUse or UnicodeCategory.Surrogate;
    }

    /// <summary>Whitespace as BERT defines it: tab, newline, return, space, or category Zs.</summary>
    public static bool IsWhitespace(Rune rune) =>
        rune.Value is ' ' or '\t' or '\n' or '\r' || Rune.GetUnicodeCategory(rune) == UnicodeCategory.SpaceSeparator;

    /// <summary>Punctuation as BERT defines it: every non-letter, non-digit printable ASCII character
    /// (so $ + &lt; = &gt; ^ ` | ~ count) and every Unicode category P* character.</summary>
    public static bool IsPunctuation(Rune rune)
    {
        int c = rune.Value;
        if (c is >= 33 and <= 47 or >= 58 and <= 64 or >= 91 and <= 96 or >= 123 and <= 126) return true;
        return Rune.GetUnicodeCategory(rune) is UnicodeCategory.ConnectorPunctuation or UnicodeCategory.DashPunctuation
            or UnicodeCategory.OpenPunctuation or UnicodeCategory.ClosePunctuation or UnicodeCategory.InitialQuotePunctuation
            or UnicodeCategory.FinalQuotePunctuation or UnicodeCategory.OtherPunctuation;
    }

    /// <summary>The CJK Unified Ideographs blocks BERT treats as single-character words (not Hangul or kana).</summary>
    public static bool IsChineseCharacter(int c) =>
        c is >= 0x4E00 and <= 0x9FFF or >= 0x3400 and <= 0x4DBF or >= 0x20000 and <= 0x2A6DF or >= 0x2A700 and <= 0x2B73F
            or >= 0x2B740 and <= 0x2B81F or >= 0x2B820 and <= 0x2CEAF or >= 0xF900 and <= 0xFAFF or >= 0x2F800 and <= 0x2FA1F;

    /// <summary>tokenizers' Replace: every occurrence of a literal string or a regex.</summary>
    public static Func<string, string> Replace(string? literal, string? regex, string content)
    {
        if (literal is not null) return s => s.Replace(literal, content, StringComparison.Ordinal);
        var re = new Regex(regex!, RegexOptions.CultureInvariant);
        return s => re.Replace(s, content.Replace("$", "$$", StringComparison.Ordinal));
    }
}

internal static class RuneAppending
{
    /// <summary>Appends one code point (one or two UTF-16 units) without making a string of it.</summary>
    public static StringBuilder AppendRune(this StringBuilder sb, Rune rune)
    {
        if (rune.IsBmp) return sb.Append((char)rune.Value);
        Span<char> units = stackalloc char[2];
        rune.EncodeToUtf16(units);
        return sb.Append(units);
    }
}
