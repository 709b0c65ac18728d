using System.CommandLine;
using Engine.Backend;

namespace Engine.Cli.Commands;

/// <summary>`engine gradcheck [--device cpu|cuda] [--op NAME] [--seed N] [--tolerance X]`.</summary>
public static class GradCheckCommand
{
    public static Command Create()
    {
        var device = new Option<string>("--device") { Description = "cpu or cuda", DefaultValueFactory = _ => "cpu" };
        var op = new Option<string?>("--op") { Description = "check one op (see `engine ops`)" };
        var seed = new Option<int>("--seed") { Description = "seed for shapes and values", DefaultValueFactory = _ => 1 };
        var tolerance = new Option<double>("--tolerance") { Description = "the largest relative error that passes (CPU)", DefaultValueFactory = _ => GradCheck.DefaultTolerance };
        var cmd = new Command("gradcheck", "Finite-difference (float64) check of every op's hand-written backward") { device, op, seed, tolerance };
        cmd.SetAction(Cli.Action(parse =>
        {
            var dev = Device.Parse(parse.GetValue(device)!);
            if (dev.Kind != DeviceKind.Cpu) Backends.For(dev); // throws "CUDA not available: ..." without a GPU
            var name = parse.GetValue(op);
            var entries = name is null ? OpCatalog.All : [OpCatalog.Find(name) ?? throw new EngineException($"unknown op '{name}' (see `engine ops`)")];
            int s = parse.GetValue(seed), failed = 0;
            double tol = parse.GetValue(tolerance);
            if (!(tol > 0)) throw new EngineException($"--tolerance must be positive, got {tol}");
            if (dev.Kind == DeviceKind.Cuda) return CudaParity(entries, dev, s);
            Console.WriteLine($"{"op",-16} {"max rel error",14}  result  case");
            foreach (var e in entries)
            {
                var r = GradCheck.Check(e, s, tol);
                if (!r.Passed) failed++;
                var verdict = r.Passed ? "pass" : "FAIL";
                var note = r.Error ?? (r.ShapeOk ? r.Case : r.Case + " (wrong output shape)");
                Console.WriteLine($"{r.Op,-16} {r.MaxRelError,14:E2}  {verdict,-6}  {note}");
            }
            Console.WriteLine($"{entries.Count - failed} passed, {failed} failed (device {dev}, seed {s})");
            return failed == 0 ? 0 : 1;
        }));
        return cmd;
    }

    /// <summary>On CUDA: every op forward and backward in F32 on the GPU against the CPU in F64
    /// (the CPU path is the one gradient-checked by finite differences).</summary>
    private static int CudaParity(IReadOnlyList<OpEntry> entries, Device dev, int seed)
    {
        int failed = 0;
        Console.WriteLine($"{Backends.For(dev).Name}: F32 on the GPU vs F64 on the CPU, tolerance {Engine.Kernels.CudaParity.F32Tolerance:E0} (scaled max error)");
        Console.WriteLine($"{"op",-16} {"forward",10} {"gradients",10}  result  case");
        foreach (var e in entries)
        {
            var r = Engine.Kernels.CudaParity.Check(e, seed, dev);
            if (!r.Passed) failed++;
            Console.WriteLine($"{r.Op,-16} {r.ForwardError,10:E2} {r.GradientError,10:E2}  {(r.Passed ? "pass" : "FAIL"),-6}  {r.Error ?? r.Case}");
        }
        Console.WriteLine($"{entries.Count - failed} passed, {failed} failed (device {dev}, seed {seed})");
        return failed == 0 ? 0 : 1;
    }
}
