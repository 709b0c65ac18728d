using System.CommandLine;
using Engine.Models.Bert;

namespace Engine.Cli.Commands;

/// <summary>`engine init --vocab FILE --out DIR`: a randomly initialised BERT folder to fine-tune from scratch.</summary>
public static class InitCommand
{
    public static Command Create()
    {
        var vocab = new Option<string>("--vocab") { Description = "WordPiece vocab.txt (e.g. bert-base-uncased's)", Required = true };
        var output = new Option<string>("--out") { Description = "the model folder to write", Required = true };
        var layers = new Option<int>("--layers") { Description = "encoder layers", DefaultValueFactory = _ => 4 };
        var hidden = new Option<int>("--hidden") { Description = "hidden size", DefaultValueFactory = _ => 256 };
        var heads = new Option<int>("--heads") { Description = "attention heads", DefaultValueFactory = _ => 4 };
        var positions = new Option<int>("--max-positions") { Description = "position embeddings (longest input)", DefaultValueFactory = _ => 512 };
        var seed = new Option<int>("--seed") { Description = "initialisation seed", DefaultValueFactory = _ => 0 };
        var cmd = new Command("init", "Write a randomly initialised BERT as a Hugging Face folder (no pretrained weights needed)")
            { vocab, output, layers, hidden, heads, positions, seed };
        cmd.SetAction(Cli.Action(p =>
        {
            var vocabPath = p.GetValue(vocab)!;
            if (!File.Exists(vocabPath)) throw new EngineException($"{vocabPath}: no such file");
            var words = File.ReadAllLines(vocabPath);
            var folder = RandomBert.Create(p.GetValue(output)!, words, p.GetValue(seed), p.GetValue(hidden), p.GetValue(layers), p.GetValue(heads), p.GetValue(positions));
            var model = Engine.Models.SequenceClassifier.FromFolder(folder);
            Console.WriteLine($"wrote {folder.Path}: BERT, {p.GetValue(layers)} layers, hidden {p.GetValue(hidden)}, {p.GetValue(heads)} heads, vocab {words.Length:N0}, {model.ParameterCount():N0} parameters");
            return 0;
        }));
        return cmd;
    }
}
