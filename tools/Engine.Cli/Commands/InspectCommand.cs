using System.CommandLine;
using Engine.Models;

namespace Engine.Cli.Commands;

/// <summary>`engine inspect PATH`: a safetensors file, a sharded model's index, or a Hugging Face
/// model folder → a table of tensor name, dtype and shape with totals (and, for a folder, the
/// config summary). A malformed file exits 2 with one line saying what is wrong.</summary>
public static class InspectCommand
{
    public static Command Create()
    {
        var path = new Argument<string>("path") { Description = "a .safetensors file, a model.safetensors.index.json, or a model folder" };
        var cmd = new Command("inspect", "List the tensors of a safetensors file or model folder (name, dtype, shape, totals)") { path };
        cmd.SetAction(Cli.Action(parse =>
        {
            ModelInspector.Inspect(parse.GetValue(path)!, Console.Out);
            return 0;
        }));
        return cmd;
    }
}
