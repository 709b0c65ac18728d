using System.CommandLine;

namespace Engine.Cli.Commands;

/// <summary>`engine ops`: the op catalog, one row per op.</summary>
public static class OpsCommand
{
    public static Command Create()
    {
        var cmd = new Command("ops", "List every differentiable op in the catalog");
        cmd.SetAction(Cli.Action(_ =>
        {
            Console.WriteLine($"{"op",-16} {"family",-12} summary");
            foreach (var e in OpCatalog.All) Console.WriteLine($"{e.Name,-16} {e.Family,-12} {e.Summary}");
            Console.WriteLine($"{OpCatalog.All.Count} ops");
            return 0;
        }));
        return cmd;
    }
}
