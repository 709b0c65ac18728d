using System.Diagnostics;
using NUnit.Framework;

namespace Engine.Tests;

/// <summary>Runs the built `engine` program (the solution build puts it under tools/Engine.Cli/bin;
/// in the self-contained GPU bundle it sits next to the test executable), for tests of exit codes,
/// one-line errors and whole-command behaviour.</summary>
public static class EngineProcess
{
    public static string? Dll()
    {
        var dir = new DirectoryInfo(AppContext.BaseDirectory);
        while (dir is not null && !File.Exists(Path.Combine(dir.FullName, "Engine.sln"))) dir = dir.Parent;
        if (dir is null) return null;
        return new[] { "Debug", "Release" }
            .Select(c => Path.Combine(dir.FullName, "tools", "Engine.Cli", "bin", c, "net10.0", "engine.dll"))
            .Where(File.Exists).OrderByDescending(File.GetLastWriteTimeUtc).FirstOrDefault();
    }

    /// <summary>The bundle's self-contained `engine` executable next to the tests, when there is no solution build.</summary>
    private static string? BundledExecutable()
    {
        var exe = Path.Combine(AppContext.BaseDirectory, "engine");
        return File.Exists(exe) ? exe : null;
    }

    public static (int Exit, string Out, string Err) Run(params string[] args) => Run(null, args);

    /// <summary>Runs engine with extra environment variables (e.g. ENGINE_CUDA_EMULATOR=1).</summary>
    public static (int Exit, string Out, string Err) Run(IReadOnlyDictionary<string, string>? environment, params string[] args)
    {
        var dll = Dll();
        var exe = dll is null ? BundledExecutable() : null;
        if (dll is null && exe is null) Assert.Ignore("the engine program is not built (run `dotnet build` on the solution)");
        var psi = new ProcessStartInfo(exe ?? "dotnet") { RedirectStandardOutput = true, RedirectStandardError = true };
        foreach (var (name, value) in environment ?? new Dictionary<string, string>()) psi.Environment[name] = value;
        if (exe is null) psi.ArgumentList.Add(dll!);
        foreach (var a in args) psi.ArgumentList.Add(a);
        using var p = Process.Start(psi)!;
        var stdout = p.StandardOutput.ReadToEndAsync();
        var stderr = p.StandardError.ReadToEndAsync();
        Assert.That(p.WaitForExit(120_000), "engine finished within two minutes");
        return (p.ExitCode, stdout.Result, stderr.Result);
    }

    /// <summary>Asserts exit code 2 and a single "engine: …" line on stderr without a stack trace.</summary>
    public static string AssertUserError((int Exit, string Out, string Err) r)
    {
        Assert.That(r.Exit, Is.EqualTo(2), r.Err);
        var lines = r.Err.Split('\n', StringSplitOptions.RemoveEmptyEntries);
        Assert.That(lines, Has.Length.EqualTo(1), r.Err);
        Assert.That(lines[0], Does.StartWith("engine: "));
        Assert.That(r.Err, Does.Not.Contain("   at "), "no stack trace");
        return lines[0];
    }
}
