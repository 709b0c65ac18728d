using System.CommandLine;
using Engine.Models.Reliability;

namespace Engine.Cli.Commands;

/// <summary>`engine fuzz`: the readers' mutation fuzzing (the test suite's, for longer). One row
/// per target; every failing input saved under --save; exit 1 when any input failed.</summary>
public static class FuzzCommand
{
    public static Command Create()
    {
        var target = new Option<string?>("--target") { Description = "one target (default: all; see the table for names)" };
        var seconds = new Option<double>("--seconds") { Description = "time per target", DefaultValueFactory = _ => 60 };
        var trials = new Option<int>("--trials") { Description = "most trials per target", DefaultValueFactory = _ => int.MaxValue };
        var seed = new Option<int>("--seed") { Description = "the run's seed (trial i's input is a function of seed and i)", DefaultValueFactory = _ => 1 };
        var save = new Option<string?>("--save") { Description = "folder to write failing inputs into (TARGET/trial-N.bin)" };
        var cmd = new Command("fuzz", "Mutation-fuzz the file readers: every input must read or fail with one clear line") { target, seconds, trials, seed, save };
        cmd.SetAction(Cli.Action(p =>
        {
            var all = FuzzTargets.All();
            var name = p.GetValue(target);
            var chosen = name is null ? all : all.Where(t => t.Name == name).ToList();
            if (chosen.Count == 0) throw new EngineException($"--target: unknown target '{name}' (known: {string.Join(", ", all.Select(t => t.Name))})");
            Console.WriteLine($"{"target",-22} {"trials",8} {"reads",8} {"errors",8} {"failures",8} {"seconds",8}");
            int failed = 0;
            foreach (var t in chosen)
            {
                var r = Fuzzer.Run(t, p.GetValue(seed), p.GetValue(trials), TimeSpan.FromSeconds(p.GetValue(seconds)), Path.GetTempPath());
                Console.WriteLine($"{t.Name,-22} {r.Trials,8} {r.Reads,8} {r.CleanErrors,8} {r.Failures.Count,8} {r.Time.TotalSeconds,8:F1}");
                foreach (var f in r.Failures)
                {
                    Console.WriteLine($"  trial {f.Trial}: {f.Kind}: {f.Detail}");
                    if (p.GetValue(save) is { } dir)
                    {
                        Directory.CreateDirectory(Path.Combine(dir, t.Name));
                        File.WriteAllBytes(Path.Combine(dir, t.Name, $"trial-{f.Trial}.bin"), f.Input);
                    }
                }
                failed += r.Failures.Count;
            }
            return failed > 0 ? 1 : 0;
        }));
        return cmd;
    }
}
