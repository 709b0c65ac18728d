using System.Diagnostics;
using NUnit.Framework;

namespace Engine.Tests.Training;

/// <summary>tools/experiments/glue.py's bookkeeping (the committed ledger of finished cells, resuming on a
/// fresh machine, the report's per-table sections, pre-ledger tables kept): its own Python tests, with a
/// fake engine, run here so CI runs them (.ci/run installs python3 when it is missing).</summary>
public class GlueScriptTests
{
    [Test]
    public void GlueScriptSelfTestsPass()
    {
        var dir = new DirectoryInfo(AppContext.BaseDirectory);
        while (dir is not null && !File.Exists(Path.Combine(dir.FullName, "Engine.sln"))) dir = dir.Parent;
        if (dir is null) Assert.Ignore("not in a repository checkout (the GPU bundle has no tools/experiments)");
        var python = File.Exists("/usr/bin/python3") ? "/usr/bin/python3" : "python3";
        var psi = new ProcessStartInfo(python) { RedirectStandardOutput = true, RedirectStandardError = true };
        psi.ArgumentList.Add(Path.Combine(dir.FullName, "tools", "experiments", "test_glue.py"));
        using var p = Process.Start(psi)!;
        var stdout = p.StandardOutput.ReadToEndAsync();
        var stderr = p.StandardError.ReadToEndAsync();
        Assert.That(p.WaitForExit(180_000), "test_glue.py finished within three minutes");
        Assert.That(p.ExitCode, Is.EqualTo(0), stdout.Result + stderr.Result);
        StringAssert.Contains("OK", stderr.Result);
    }
}
