using System.CommandLine;
using Engine.Models.Tiny;

namespace Engine.Cli.Commands;

/// <summary>`engine demo`: trains a tiny transformer on a synthetic task (see TinyDemo).</summary>
public static class DemoCommand
{
    public static Command Create()
    {
        var steps = new Option<int>("--steps") { Description = "training steps", DefaultValueFactory = _ => 300 };
        var seed = new Option<int>("--seed") { Description = "seed for data, initialisation and order", DefaultValueFactory = _ => 1 };
        var lr = new Option<double>("--lr") { Description = "peak learning rate (AdamW)", DefaultValueFactory = _ => 3e-3 };
        var cmd = new Command("demo", "Train a tiny transformer classifier on a synthetic task, on the CPU") { steps, seed, lr };
        cmd.SetAction(Cli.Action(parse =>
        {
            int n = parse.GetValue(steps);
            if (n < 1) throw new EngineException($"demo: --steps must be at least 1, got {n}");
            TinyDemo.Run(new DemoOptions(Steps: n, Seed: parse.GetValue(seed), LearningRate: parse.GetValue(lr)), Console.WriteLine);
            return 0;
        }));
        return cmd;
    }
}
