using System.CommandLine;
using System.Diagnostics;
using Engine.IO;
using Engine.Models;

namespace Engine.Cli.Commands;

/// <summary>`engine inspect PATH [--read] [--dtype f32]`: a safetensors file, a sharded model's
/// index, or a Hugging Face model folder → a table of tensor name, dtype and shape with totals
/// (and, for a folder, the config summary). With --read it also reads every tensor through the
/// memory-mapped reader (optionally converting to --dtype), which checks the file end to end,
/// and prints the read throughput. A malformed file exits 2 with one line saying what is wrong.</summary>
public static class InspectCommand
{
    public static Command Create()
    {
        var path = new Argument<string>("path") { Description = "a .safetensors file, a model.safetensors.index.json, or a model folder" };
        var read = new Option<bool>("--read") { Description = "also read every tensor and report the read speed" };
        var dtype = new Option<string?>("--dtype") { Description = "with --read: convert each tensor to this type (f32, f64)" };
        var mapped = new Option<bool>("--mmap") { Description = "with --read on a single file: copy out of a memory mapping instead of positional reads" };
        var cmd = new Command("inspect", "List the tensors of a safetensors file or model folder (name, dtype, shape, totals)") { path, read, dtype, mapped };
        cmd.SetAction(Cli.Action(parse =>
        {
            var p = parse.GetValue(path)!;
            ModelInspector.Inspect(p, Console.Out);
            if (parse.GetValue(read))
            {
                DType? target = parse.GetValue(dtype) is { } name
                    ? DTypes.Parse(name) ?? throw new EngineException($"unknown dtype '{name}'")
                    : null;
                ReadAll(p, target, parse.GetValue(mapped));
            }
            return 0;
        }));
        return cmd;
    }

    private static void ReadAll(string path, DType? target, bool mapped)
    {
        using var weights = mapped ? SafeTensorsFile.Open(path, SafeTensorsReadMode.MemoryMapped)
            : Directory.Exists(path) ? HfModelFolder.Open(path).OpenWeights() : SafeTensors.Open(path);
        long bytes = 0;
        var clock = Stopwatch.StartNew();
        foreach (var name in weights.Names)
        {
            var t = target is { } d ? weights.ReadAs(name, d) : weights.Read(name);
            bytes += weights.Info(name).ByteLength;
            GC.KeepAlive(t);
        }
        double seconds = clock.Elapsed.TotalSeconds;
        Console.WriteLine($"read {weights.Names.Count} tensors, {ModelInspector.FormatBytes(bytes)} in {seconds:F3} s: " +
            $"{bytes / seconds / (1 << 30):F2} GiB/s{(mapped ? " (memory-mapped)" : "")}{(target is { } t2 ? $" (converted to {t2.SafetensorsName()})" : "")}");
    }
}
