using System.CommandLine;

namespace Engine.Cli.Commands;

/// <summary>`engine demo`: placeholder until the demo model lands.</summary>
public static class DemoCommand
{
    public static Command Create()
    {
        var cmd = new Command("demo", "Train a tiny transformer classifier on a synthetic task, on the CPU");
        cmd.SetAction(Cli.Action(_ => Cli.Fail("demo: not built yet")));
        return cmd;
    }
}
