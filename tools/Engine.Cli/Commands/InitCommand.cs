using System.CommandLine;
using Engine.Models.Bert;
using Engine.Models.Pretraining;

namespace Engine.Cli.Commands;

/// <summary>`engine init --vocab FILE --out DIR` (BERT) or `engine init --arch llama --tokenizer
/// tokenizer.model --out DIR`: a randomly initialised model folder to train from scratch.</summary>
public static class InitCommand
{
    public static Command Create()
    {
        var arch = new Option<string>("--arch") { Description = "bert (a BertForSequenceClassification folder) or llama (a LlamaForCausalLM folder)", DefaultValueFactory = _ => "bert" };
        var vocab = new Option<string?>("--vocab") { Description = "BERT: WordPiece vocab.txt (e.g. bert-base-uncased's)" };
        var tokenizer = new Option<string?>("--tokenizer") { Description = "Llama: tokenizer.model (SentencePiece) or tokenizer.json; BERT: same as --vocab" };
        var output = new Option<string>("--out") { Description = "the model folder to write", Required = true };
        var layers = new Option<int>("--layers") { Description = "encoder/decoder layers", DefaultValueFactory = _ => 4 };
        var hidden = new Option<int>("--hidden") { Description = "hidden size", DefaultValueFactory = _ => 256 };
        var heads = new Option<int>("--heads") { Description = "attention heads", DefaultValueFactory = _ => 4 };
        var kvHeads = new Option<int?>("--kv-heads") { Description = "Llama: key/value heads (grouped-query attention; default: --heads)" };
        var intermediate = new Option<int?>("--intermediate") { Description = "feed-forward width (default: 4 x hidden for BERT, 8/3 x hidden rounded up to 64 for Llama)" };
        var untied = new Option<bool>("--untied") { Description = "Llama: a separate lm_head instead of the embeddings" };
        var positions = new Option<int>("--max-positions") { Description = "position embeddings (longest input)", DefaultValueFactory = _ => 512 };
        var seed = new Option<int>("--seed") { Description = "initialisation seed", DefaultValueFactory = _ => 0 };
        var cmd = new Command("init", "Write a randomly initialised BERT or Llama as a Hugging Face folder (no pretrained weights needed)")
            { arch, vocab, tokenizer, output, layers, hidden, heads, kvHeads, intermediate, untied, positions, seed };
        cmd.SetAction(Cli.Action(p =>
        {
            var archName = p.GetValue(arch)!;
            int h = p.GetValue(hidden);
            if (archName == "llama")
            {
                var tokenizerPath = p.GetValue(tokenizer) ?? throw new EngineException("--tokenizer: required for --arch llama (tokenizer.model or tokenizer.json)");
                var shape = new LmShape("llama", p.GetValue(layers), h, p.GetValue(heads), p.GetValue(intermediate) ?? (8 * h / 3 + 63) / 64 * 64,
                    KeyValueHeads: p.GetValue(kvHeads) ?? 0, MaxPositions: p.GetValue(positions), TieEmbeddings: !p.GetValue(untied), Dropout: 0);
                var llama = LanguageModelFolder.Create(p.GetValue(output)!, shape, tokenizerPath, p.GetValue(seed));
                var lm = LanguageModel.Load(llama);
                Console.WriteLine($"wrote {llama.Path}: Llama (LlamaForCausalLM), {shape.Layers} layers, hidden {h}, {shape.Heads} heads / {llama.LlamaConfig.NumKeyValueHeads} kv heads, " +
                                  $"vocab {llama.VocabSize:N0}, {lm.ParameterCount():N0} parameters");
                return 0;
            }
            if (archName != "bert") throw new EngineException($"--arch: unknown architecture '{archName}' (bert, llama)");
            var vocabPath = p.GetValue(vocab) ?? p.GetValue(tokenizer) ?? throw new EngineException("--vocab: required for --arch bert (a WordPiece vocab.txt)");
            if (!File.Exists(vocabPath)) throw new EngineException($"{vocabPath}: no such file");
            var words = File.ReadAllLines(vocabPath);
            var folder = RandomBert.Create(p.GetValue(output)!, words, p.GetValue(seed), h, p.GetValue(layers), p.GetValue(heads), p.GetValue(positions), intermediate: p.GetValue(intermediate));
            var model = Engine.Models.SequenceClassifier.FromFolder(folder);
            Console.WriteLine($"wrote {folder.Path}: BERT, {p.GetValue(layers)} layers, hidden {h}, {p.GetValue(heads)} heads, vocab {words.Length:N0}, {model.ParameterCount():N0} parameters");
            return 0;
        }));
        return cmd;
    }
}
