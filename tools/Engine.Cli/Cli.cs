using System.CommandLine;

namespace Engine.Cli;

/// <summary>
/// Running commands with the engine's error contract: a user's mistake (bad option, bad file,
/// bad shape) prints one line "engine: ..." to stderr and exits 2, without a stack trace.
/// </summary>
public static class Cli
{
    public const int UserError = 2;

    public static int Run(RootCommand root, string[] args)
    {
        var parsed = root.Parse(args);
        // One line: an unrecognised word if there is one (it usually causes the others), else the first error.
        if (parsed.Errors.Count > 0)
        {
            var error = parsed.Errors.FirstOrDefault(e => e.Message.StartsWith("Unrecognized", StringComparison.Ordinal)) ?? parsed.Errors[0];
            return Fail(error.Message + " (see --help)");
        }
        return parsed.Invoke(new InvocationConfiguration { EnableDefaultExceptionHandler = false });
    }

    /// <summary>Wraps a command body: EngineException (and I/O errors) → one line on stderr, exit 2.</summary>
    public static Func<ParseResult, int> Action(Func<ParseResult, int> body) => parse =>
    {
        try { return body(parse); }
        catch (EngineException e) { return Fail(e.Message); }
        catch (IOException e) { return Fail(e.Message); }
        catch (UnauthorizedAccessException e) { return Fail(e.Message); }
    };

    /// <summary>The --device option (cpu, cuda, cuda:N; default cpu).</summary>
    public static Option<string?> DeviceOption() => new("--device") { Description = "cpu, cuda or cuda:N (default cpu)" };

    /// <summary>Parses a --device value and opens its backend, so a missing GPU is one line
    /// ("CUDA not available: …") before any work starts.</summary>
    public static Device OpenDevice(string? text)
    {
        var device = Device.Parse(Ranks.LocalDevice(text) ?? "cpu");
        var backend = Engine.Backend.Backends.For(device);
        if (device.Kind != DeviceKind.Cpu) Console.Error.WriteLine($"device: {device} ({backend.Name})");
        return device;
    }

    public static int Fail(string message)
    {
        Console.Error.WriteLine($"engine: {Engine.Distributed.Collectives.RankPrefix}{message}");
        Engine.Distributed.Collectives.AbortIfDistributed(UserError);   // one rank's error stops every rank of an mpirun job
        return UserError;
    }
}
