using Engine.Models.Demo;

namespace Engine.Tests;

/// <summary>A temporary folder with what a CLI training test needs: the demo's small BERT
/// (hidden 32) as a Hugging Face folder, and the demo task as TSV files (sentence, label).</summary>
public sealed class DemoRunFolder : IDisposable
{
    public TempFolder Temp { get; } = new();
    public string Model { get; }

    public DemoRunFolder() => Model = DemoModel.CreateFolder(Path.Combine(Temp.Path, "model"), seed: 1, hidden: 32).Path;

    public string File(string name) => Temp.File(name);

    /// <summary>Writes <paramref name="count"/> demo examples drawn from <paramref name="seed"/> as NAME (a TSV with a header).</summary>
    public string Tsv(string name, int count, int seed)
    {
        System.IO.File.WriteAllLines(Temp.File(name), new[] { "sentence\tlabel" }.Concat(NegationTask.Make(count, seed).Select(e => $"{e.Text}\t{e.Label}")));
        return Temp.File(name);
    }

    public void Dispose() => Temp.Dispose();
}
