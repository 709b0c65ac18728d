using System.Text.Json;

namespace Engine.IO;

/// <summary>
/// Parsing a JSON file or line for a reader that must fail with one clear line. System.Text.Json
/// checks a string's UTF-8 and its escapes only when the string is read (GetString throws
/// InvalidOperationException on invalid UTF-8 or an unpaired surrogate escape such as "\ud800",
/// wherever in a reader that happens); <see cref="Parse(byte[], string)"/> reads every string and
/// property name once up front, so a parsed document is safe to read anywhere.
/// </summary>
public static class JsonText
{
    /// <summary>The root of <paramref name="utf8"/>; a parse error or a bad string becomes
    /// "<paramref name="where"/>: not valid JSON (…)".</summary>
    public static JsonElement Parse(byte[] utf8, string where)
    {
        try
        {
            using var doc = JsonDocument.Parse(utf8);
            Check(doc.RootElement, where);
            return doc.RootElement.Clone();
        }
        catch (JsonException e) { throw Invalid(where, e.Message); }
    }

    /// <summary>As <see cref="Parse(byte[], string)"/>, for text already decoded.</summary>
    public static JsonElement Parse(string text, string where)
    {
        try
        {
            using var doc = JsonDocument.Parse(text);
            Check(doc.RootElement, where);
            return doc.RootElement.Clone();
        }
        catch (JsonException e) { throw Invalid(where, e.Message); }
    }

    /// <summary>For a reader that collects bad lines: the parsed root, or false with why it is not valid JSON.</summary>
    public static bool TryParse(string text, out JsonElement root, out string? problem)
    {
        try
        {
            root = Parse(text, "");
            problem = null;
            return true;
        }
        catch (EngineException e)
        {
            root = default;
            problem = e.Message[2..];
            return false;
        }
    }

    public static EngineException Invalid(string where, string why) => new($"{where}: not valid JSON ({why.Split('\n')[0].TrimEnd('\r')})");

    /// <summary>Reads every string and property name (depth is bounded by the parser's MaxDepth, 64).</summary>
    private static void Check(JsonElement e, string where)
    {
        try
        {
            switch (e.ValueKind)
            {
                case JsonValueKind.String: e.GetString(); break;
                case JsonValueKind.Array: foreach (var x in e.EnumerateArray()) Check(x, where); break;
                case JsonValueKind.Object:
                    foreach (var p in e.EnumerateObject()) { _ = p.Name; Check(p.Value, where); }
                    break;
            }
        }
        catch (InvalidOperationException) { throw Invalid(where, "a string is not valid UTF-8 or has an unpaired surrogate escape"); }
    }
}
