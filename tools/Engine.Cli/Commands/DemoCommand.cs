using Engine.Models;
using System.CommandLine;
using Engine.Models.Demo;
using Engine.Models.Training;

namespace Engine.Cli.Commands;

/// <summary>
/// `engine demo [--out DIR]`: the embedded default job, no downloads. Builds a small random
/// BERT as a Hugging Face folder and a synthetic task that only word order solves
/// (<see cref="NegationTask"/>), then trains it through the same path as `engine train` and
/// writes the same outputs.
/// </summary>
public static class DemoCommand
{
    public static Command Create()
    {
        var output = new Option<string>("--out") { Description = "output folder", DefaultValueFactory = _ => "engine-demo" };
        var steps = new Option<int>("--steps") { Description = "optimizer steps", DefaultValueFactory = _ => 400 };
        var seed = new Option<int>("--seed") { Description = "seed for data, initialisation and order", DefaultValueFactory = _ => 1 };
        var lr = new Option<double>("--lr") { Description = "peak learning rate", DefaultValueFactory = _ => 1e-3 };
        var device = Cli.DeviceOption();
        var cmd = new Command("demo", "Train a small BERT on a synthetic word-order task (under a minute on the CPU)") { output, steps, seed, lr, device };
        cmd.SetAction(Cli.Action(parse =>
        {
            Ranks.Open();   // `mpirun -np N engine demo`: data-parallel, rank 0 writes
            var dir = parse.GetValue(output)!;
            int s = parse.GetValue(seed);
            var result = Run(dir, parse.GetValue(steps), s, learningRate: parse.GetValue(lr), device: Cli.OpenDevice(parse.GetValue(device)));
            return result.FinalEval.TryGetValue("accuracy", out var acc) && acc > 0.5 ? 0 : 1;
        }));
        return cmd;
    }

    public static TrainResult Run(string dir, int steps, int seed, int trainCount = 6000, int evalCount = 600, double learningRate = 1e-3, Device? device = null)
    {
        if (steps < 1) throw new EngineException($"demo: --steps must be at least 1, got {steps}");
        Console.WriteLine("demo: a small BERT learns a sentiment task where only word order decides the label:");
        Console.WriteLine("      'the food was good but the service was not great .' → negative (the last clause counts, 'not' flips it)");
        var world = Engine.Distributed.Collectives.World;
        var init = Path.Combine(dir, "model-init");
        if (world.Rank == 0) DemoModel.CreateFolder(init, seed);
        world.Barrier();   // the other ranks of a job read rank 0's folder
        var folder = HfModelFolder.Open(init);
        var train = DemoModel.Data(trainCount, seed, "synthetic negation task (train)");
        var eval = DemoModel.Data(evalCount, seed + 1, "synthetic negation task (held out)");
        var options = new TrainOptions
        {
            MaxSteps = steps, BatchSize = 32, LearningRate = learningRate, WarmupRatio = 0.1, MaxLength = 48, Seed = seed,
            EvalEvery = Math.Max(1, steps / 4), OutDir = dir, LogEvery = Math.Max(1, steps / 20), Device = device,
        };
        var result = TrainCommands.Run(folder, train, eval, Ranks.ForThisRank(options));
        int majority = eval.Examples.GroupBy(e => e.Label).Max(g => g.Count());
        Console.WriteLine($"held-out accuracy {result.FinalEval.GetValueOrDefault("accuracy"):P1}; the majority class alone scores {(double)majority / eval.Count:P1}");
        return result;
    }
}
