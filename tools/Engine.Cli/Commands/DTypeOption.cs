using System.CommandLine;

namespace Engine.Cli.Commands;

/// <summary>`--dtype f32|bf16` (train, bench): the GEMM precision of forward and backward
/// (<see cref="MixedPrecision"/>). Checked by <see cref="Read"/> (or TrainOptions.Validate) with a
/// one-line error, so an unknown name exits 2 like every other user mistake.</summary>
public static class DTypeOption
{
    public static Option<string> Create() => new("--dtype")
    {
        Description = "f32, or bf16: GEMM inputs rounded to bfloat16 with float32 accumulation; weights, gradients, optimizer state and activations stay float32",
        DefaultValueFactory = _ => "f32",
    };

    public static GemmPrecision Read(ParseResult parse, Option<string> option) => MixedPrecision.Parse(parse.GetValue(option), "--dtype");
}
