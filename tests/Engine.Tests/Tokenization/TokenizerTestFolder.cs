using System.Text.Json;
using Engine.Models;
using Engine.Models.Tokenization;
using NUnit.Framework;

namespace Engine.Tests.Tokenization;

/// <summary>
/// A temporary Hugging Face model folder for tokenizer tests: the tiny BERT fixture's config.json and
/// model.safetensors (so <see cref="HfModelFolder.Open"/> accepts it) plus the tokenizer files a
/// test writes. Deleted on dispose.
/// </summary>
internal sealed class TokenizerTestFolder : IDisposable
{
    public string Path { get; } = Directory.CreateTempSubdirectory("engine-tok-").FullName;

    public TokenizerTestFolder(int? padTokenId = 0)
    {
        var fixture = System.IO.Path.Combine(TestContext.CurrentContext.TestDirectory, "Fixtures", "bert_tiny", "bert");
        System.IO.File.Copy(System.IO.Path.Combine(fixture, "model.safetensors"), File("model.safetensors"));
        var config = System.Text.Json.Nodes.JsonNode.Parse(System.IO.File.ReadAllText(System.IO.Path.Combine(fixture, "config.json")))!.AsObject();
        config["pad_token_id"] = padTokenId;
        System.IO.File.WriteAllText(File("config.json"), config.ToJsonString());
    }

    public string File(string name) => System.IO.Path.Combine(Path, name);

    public TokenizerTestFolder Write(string name, string text)
    {
        System.IO.File.WriteAllText(File(name), text);
        return this;
    }

    public TokenizerTestFolder WriteLines(string name, IEnumerable<string> lines) => Write(name, string.Join("\n", lines) + "\n");

    public TokenizerTestFolder WriteJson(string name, object value) => Write(name, JsonSerializer.Serialize(value));

    public HfModelFolder Open() => HfModelFolder.Open(Path);

    public TextTokenizer Tokenizer() => TextTokenizer.FromFolder(Open());

    public void Dispose()
    {
        try { Directory.Delete(Path, recursive: true); } catch (IOException) { }
    }

    /// <summary>The ids of vocabulary strings, for readable expectations.</summary>
    public static int[] Ids(TextTokenizer tokenizer, params string[] tokens) =>
        tokens.Select(t => tokenizer.TokenToId(t) ?? throw new AssertionException($"'{t}' is not in the test vocabulary")).ToArray();

    /// <summary>The vocabulary strings of ids, for readable failure messages.</summary>
    public static string Tokens(TextTokenizer tokenizer, IEnumerable<int> ids) => string.Join(" ", ids.Select(i => tokenizer.IdToToken(i) ?? $"#{i}"));
}
