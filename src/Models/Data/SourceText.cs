using System.Text;

namespace Engine.Models.Data;

/// <summary>One line of a data file: its 1-based number and its text, or null when the line
/// is not valid UTF-8.</summary>
internal readonly record struct SourceLine(int Number, string? Text)
{
    public bool IsBlank => Text is not null && string.IsNullOrWhiteSpace(Text);
}

/// <summary>
/// Splits a file into lines. Conventions: UTF-8, with or without a byte-order mark; lines end
/// with LF or CRLF (the CR is dropped); a last line without a newline is a line; each line is
/// decoded on its own, so an invalid byte sequence marks exactly its line.
/// </summary>
internal static class SourceText
{
    private static readonly UTF8Encoding StrictUtf8 = new(encoderShouldEmitUTF8Identifier: false, throwOnInvalidBytes: true);

    public static List<SourceLine> ReadLines(string path)
    {
        byte[] bytes;
        try { bytes = File.ReadAllBytes(path); }
        catch (IOException e) { throw new EngineException($"{path}: cannot read ({e.Message})", e); }
        catch (UnauthorizedAccessException e) { throw new EngineException($"{path}: cannot read ({e.Message})", e); }
        return SplitLines(bytes);
    }

    public static List<SourceLine> SplitLines(ReadOnlySpan<byte> bytes)
    {
        if (bytes.StartsWith((ReadOnlySpan<byte>)[0xEF, 0xBB, 0xBF])) bytes = bytes[3..];
        var lines = new List<SourceLine>();
        int number = 0;
        while (bytes.Length > 0)
        {
            int end = bytes.IndexOf((byte)'\n');
            var line = end < 0 ? bytes : bytes[..end];
            bytes = end < 0 ? [] : bytes[(end + 1)..];
            if (line.Length > 0 && line[^1] == (byte)'\r') line = line[..^1];
            number++;
            string? text;
            try { text = StrictUtf8.GetString(line); }
            catch (DecoderFallbackException) { text = null; }
            lines.Add(new SourceLine(number, text));
        }
        return lines;
    }
}
