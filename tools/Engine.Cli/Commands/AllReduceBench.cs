using System.CommandLine;
using System.Diagnostics;
using Engine.Distributed;

namespace Engine.Cli.Commands;

/// <summary>
/// `mpirun -np N engine bench allreduce [--mb S] [--device cpu|cuda]`: times the gradient
/// reduction of data-parallel training (<see cref="DataParallel.ReduceGradients"/>: presence flags,
/// then 25 MiB buckets) on S MB of float32 "gradients" split into tensors of 4 MiB, and prints
/// the time per step with the algorithm bandwidth S/T and the bus bandwidth 2(N−1)/N·S/T, the
/// figure docs/scaling.md's formula takes as B. Rank 0 prints.
/// </summary>
public static class AllReduceBench
{
    public static Command Create()
    {
        var mb = new Option<double>("--mb") { Description = "megabytes of float32 gradients (bert-base: 438, Llama-3.2-1B: 4943)", DefaultValueFactory = _ => 438 };
        var iters = new Option<int>("--iters") { Description = "timed repetitions", DefaultValueFactory = _ => 5 };
        var device = Cli.DeviceOption();
        var cmd = new Command("allreduce", "Time the data-parallel gradient all-reduce (run under mpirun)") { mb, iters, device };
        cmd.SetAction(Cli.Action(p =>
        {
            var world = Ranks.Open();
            if (world.Size == 1) throw new EngineException("bench allreduce: one rank has nothing to reduce; run it under mpirun -np N (N ≥ 2)");
            var on = Cli.OpenDevice(p.GetValue(device));
            long total = (long)(p.GetValue(mb) * 1e6 / 4);
            if (total < 1) throw new EngineException("bench allreduce: --mb must be positive");
            const int piece = 1 << 20;   // 4 MiB tensors
            var grads = new List<Tensor>();
            for (long at = 0; at < total; at += piece)
            {
                var parameter = Tensor.Parameter(Tensor.Zeros([(int)Math.Min(piece, total - at)], DType.F32, on));
                Autograd.Tape.GradOf(parameter).Backend.Fill(parameter.Grad!, 1);
                grads.Add(parameter);
            }
            var ranks = DataParallel.For(on);
            ranks.ReduceGradients(grads);   // warm-up (connections, buffers)
            var times = new List<double>();
            for (int i = 0; i < Math.Max(1, p.GetValue(iters)); i++)
            {
                ranks.Collectives.Barrier();
                var clock = Stopwatch.StartNew();
                ranks.ReduceGradients(grads);
                times.Add(clock.Elapsed.TotalSeconds);
            }
            times.Sort();
            double t = times[times.Count / 2], bytes = total * 4.0;
            int n = world.Size;
            Console.WriteLine($"all-reduce of {bytes / 1e6:F1} MB over {n} rank(s) ({ranks.Collectives.Name}, {on}): median {t * 1e3:F1} ms of {times.Count}; " +
                              $"algorithm bandwidth {bytes / t / 1e9:F2} GB/s, bus bandwidth 2(N-1)/N·S/T {2.0 * (n - 1) / n * bytes / t / 1e9:F2} GB/s");
            return 0;
        }));
        return cmd;
    }
}
