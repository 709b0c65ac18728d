using System.CommandLine;
using Engine.Models;
using Engine.Models.Tokenization;

namespace Engine.Cli.Commands;

/// <summary>
/// `engine tokenize --model DIR --text "..." [--text-pair "..."] [--max-length N]`: encodes with the
/// folder's tokenizer (as `engine forward --text` does) and prints one line per token: position,
/// id, token type and vocabulary string.
/// </summary>
public static class TokenizeCommand
{
    public static Command Create()
    {
        var model = new Option<string>("--model") { Description = "Hugging Face model folder", Required = true };
        var text = new Option<string>("--text") { Description = "the text to tokenize", Required = true };
        var pair = new Option<string?>("--text-pair") { Description = "the second text of a pair" };
        var maxLength = new Option<int?>("--max-length") { Description = "truncate to this many tokens in all (longest-first for pairs)" };
        var cmd = new Command("tokenize", "Show the token ids the folder's tokenizer gives a text (or a pair)") { model, text, pair, maxLength };
        cmd.SetAction(Cli.Action(parse =>
        {
            var folder = HfModelFolder.Open(parse.GetValue(model)!);
            var tokenizer = TextTokenizer.FromFolder(folder);
            var encoding = tokenizer.Encode(parse.GetValue(text)!, parse.GetValue(pair), parse.GetValue(maxLength));
            Console.WriteLine($"{tokenizer.Source}: {encoding.Ids.Count} tokens, vocabulary {tokenizer.VocabSize}, pad id {tokenizer.PadId}{(tokenizer.HasPadToken ? "" : " (fallback: no pad token)")}");
            for (int i = 0; i < encoding.Ids.Count; i++)
                Console.WriteLine($"{i,5} {encoding.Ids[i],8} {encoding.TypeIds[i]} {tokenizer.IdToToken(encoding.Ids[i]) ?? "?"}");
            Console.WriteLine("ids: " + string.Join(" ", encoding.Ids));
            return 0;
        }));
        return cmd;
    }
}
