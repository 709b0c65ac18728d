using Engine.Models.Bert;
using Engine.Models.Data;

namespace Engine.Models.Demo;

/// <summary>
/// What `engine demo` trains, made by code with no downloads: a small BERT (2 layers, width 64,
/// 4 heads) with random weights, saved as an ordinary Hugging Face folder (config.json,
/// vocab.txt, tokenizer_config.json, model.safetensors) so the demo runs the same path as
/// training on a real folder; and the <see cref="NegationTask"/> data.
/// </summary>
public static class DemoModel
{
    public static readonly string[] LabelNames = ["negative", "positive"];

    private const double Dropout = 0.1;

    /// <summary>Writes the demo's random-initialised model folder into <paramref name="dir"/> (atomically) and opens it.</summary>
    public static HfModelFolder CreateFolder(string dir, int seed, int hidden = 64, int layers = 2) =>
        RandomBert.Create(dir, NegationTask.Vocabulary(), seed, hidden, layers, heads: 4, maxPositions: 64, LabelNames, Dropout, intermediate: 2 * hidden);

    public static Dataset Data(int count, int seed, string name) =>
        new(name, NegationTask.Make(count, seed), new LabelMap(LabelNames), IsRegression: false, SkippedLines: 0);
}
