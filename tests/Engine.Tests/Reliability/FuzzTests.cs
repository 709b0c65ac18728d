using Engine.Models.Reliability;
using NUnit.Framework;

namespace Engine.Tests.Reliability;

/// <summary>
/// Seeded mutation fuzzing of every file reader (<see cref="FuzzTargets"/>): each target gets
/// <see cref="Trials"/> mutated inputs (at most <see cref="Budget"/> of wall time) and every one
/// must read or fail with a one-line EngineException naming the file, within the time and
/// allocation limits of <see cref="Fuzzer"/>. `engine fuzz` runs the same targets for longer.
/// The inputs that once found bugs are replayed from Fixtures/fuzz/TARGET/.
/// </summary>
public class FuzzTests
{
    public const int Trials = 500, Seed = 18;
    /// <summary>A guard, not the bound that counts: 500 trials take about a second per target on a quiet machine.</summary>
    private static readonly TimeSpan Budget = TimeSpan.FromSeconds(90);

    private static readonly Lazy<IReadOnlyList<FuzzTarget>> Targets = new(FuzzTargets.All);

    public static IEnumerable<string> TargetNames() => Targets.Value.Select(t => t.Name);

    private static FuzzTarget Target(string name) => Targets.Value.Single(t => t.Name == name);

    [TestCaseSource(nameof(TargetNames))]
    public void MutatedInputsReadOrFailCleanly(string name)
    {
        var report = Fuzzer.Run(Target(name), Seed, Trials, Budget, Path.GetTempPath());
        TestContext.Out.WriteLine($"{name}: {report.Trials} trials in {report.Time.TotalSeconds:F1} s, {report.Reads} reads, {report.CleanErrors} clean errors");
        Assert.That(report.Failures.Select(f => $"trial {f.Trial}: {f.Kind}: {f.Detail}"), Is.Empty);
        Assert.That(report.Trials, Is.EqualTo(Trials), $"only {report.Trials} trials ran in {Budget.TotalSeconds} s");
        Assert.That(report.CleanErrors, Is.GreaterThan(0), "no mutation was rejected: the target does not read its input");
    }

    public static IEnumerable<TestCaseData> RegressionInputs()
    {
        var root = Path.Combine(AppContext.BaseDirectory, "Fixtures", "fuzz");
        if (!Directory.Exists(root)) yield break;
        foreach (var dir in Directory.GetDirectories(root).Order())
            foreach (var file in Directory.GetFiles(dir).Order())
                yield return new TestCaseData(Path.GetFileName(dir), file).SetName($"Regression({Path.GetFileName(dir)}/{Path.GetFileName(file)})");
    }

    [TestCaseSource(nameof(RegressionInputs))]
    public void InputsThatFoundBugsFailCleanly(string target, string file)
    {
        var failure = Fuzzer.Replay(Target(target), File.ReadAllBytes(file), Path.GetTempPath());
        Assert.That(failure, Is.Null, () => $"{failure!.Kind}: {failure.Detail}");
    }

    /// <summary>The checker itself: planted crashes, multi-line errors, anonymous errors,
    /// hangs and over-allocation are each reported.</summary>
    [Test]
    public void PlantedBugsAreCaught()
    {
        byte[][] seeds = ["0123456789"u8.ToArray()];
        FuzzFailure? Planted(Action<byte[]> read)
        {
            var t = new FuzzTarget("planted", "input.bin", seeds, dir => read(File.ReadAllBytes(Path.Combine(dir, "input.bin"))));
            return Fuzzer.Replay(t, "12345"u8.ToArray(), Path.GetTempPath());
        }
        Assert.That(Planted(b => _ = b[b.Length + 1])?.Kind, Is.EqualTo("crash"));
        Assert.That(Planted(b => throw new EngineException("input.bin: two\nlines"))?.Kind, Is.EqualTo("multi-line error"));
        Assert.That(Planted(b => throw new EngineException("something is wrong"))?.Kind, Is.EqualTo("error names no file"));
        Assert.That(Planted(b => _ = new byte[Fuzzer.AllocationFloor + 4096])?.Kind, Is.EqualTo("allocation"));
        var timeout = Fuzzer.TrialTimeout;
        Fuzzer.TrialTimeout = TimeSpan.FromMilliseconds(300);
        try { Assert.That(Planted(b => Thread.Sleep(3000))?.Kind, Is.EqualTo("hang")); }
        finally { Fuzzer.TrialTimeout = timeout; }
        Assert.That(Planted(b => throw new EngineException("input.bin: bad")), Is.Null);
    }

    [Test]
    public void MutationsAreAFunctionOfTheSeed()
    {
        var seeds = FuzzTargets.All().Single(t => t.Name == "vocab.txt").Seeds;
        for (int trial = 0; trial < 20; trial++)
            Assert.That(Fuzzer.Mutate(seeds, new Random(Fuzzer.TrialSeed(7, trial))), Is.EqualTo(Fuzzer.Mutate(seeds, new Random(Fuzzer.TrialSeed(7, trial)))));
    }
}
