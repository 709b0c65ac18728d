using System.Text;

namespace Engine.Models.Tokenization;

/// <summary>
/// Unicode canonical decomposition (the "D" of NFD) without the platform: the engine runs with
/// invariant globalization, where .NET's string.Normalize leaves non-ASCII text unchanged, so
/// "é" would never lose its accent. The table (CanonicalDecompositionTable.cs) is generated from
/// Python's unicodedata; Hangul syllables are decomposed by the Unicode formula. Combining marks
/// are not put in canonical order, which does not matter for the one use here: dropping them.
/// </summary>
public static class CanonicalDecomposition
{
    private static readonly Lazy<Dictionary<int, int[]>> Table = new(Parse);

    private static Dictionary<int, int[]> Parse()
    {
        var table = new Dictionary<int, int[]>(2100);
        foreach (var entry in CanonicalDecompositionTable.Entries.Split(';', StringSplitOptions.RemoveEmptyEntries))
        {
            int colon = entry.IndexOf(':');
            table[Convert.ToInt32(entry[..colon], 16)] = entry[(colon + 1)..].Split(' ').Select(h => Convert.ToInt32(h, 16)).ToArray();
        }
        return table;
    }

    /// <summary>The text with every character replaced by its full canonical decomposition.</summary>
    public static string Decompose(string text)
    {
        bool ascii = true;
        foreach (var c in text) if (c > 0x7F) { ascii = false; break; }
        if (ascii) return text;
        var sb = new StringBuilder(text.Length + 8);
        var table = Table.Value;
        foreach (var rune in text.EnumerateRunes())
        {
            int c = rune.Value;
            if (c is >= 0xAC00 and <= 0xD7A3)
            {
                int s = c - 0xAC00;
                sb.Append((char)(0x1100 + s / 588)).Append((char)(0x1161 + s % 588 / 28));
                if (s % 28 != 0) sb.Append((char)(0x11A7 + s % 28));
            }
            else if (table.TryGetValue(c, out var parts)) foreach (var p in parts) sb.AppendRune(new Rune(p));
            else sb.AppendRune(rune);
        }
        return sb.ToString();
    }
}
