using Engine.Models.Tiny;
using NUnit.Framework;

namespace Engine.Tests;

/// <summary>End to end: the tiny transformer learns the synthetic task, and a run is a pure
/// function of its seed on the CPU.</summary>
public class DemoTests
{
    [Test]
    public void TheTinyTransformerLearnsTheMajorityTask()
    {
        var r = TinyDemo.Run(new DemoOptions(Steps: 120, TrainExamples: 2000, TestExamples: 300, LogEvery: 1000), _ => { });
        Assert.That(r.FirstLoss, Is.GreaterThan(0.5), "starts near chance (ln 2 ≈ 0.69)");
        Assert.That(r.FinalLoss, Is.LessThan(0.2));
        Assert.That(r.TestAccuracy, Is.GreaterThanOrEqualTo(0.9), "held-out sequences");
    }

    [Test]
    public void TheSameSeedGivesTheSameRunBitForBit()
    {
        var o = new DemoOptions(Steps: 20, TrainExamples: 400, TestExamples: 100, LogEvery: 1000);
        var a = TinyDemo.Run(o, _ => { });
        var b = TinyDemo.Run(o, _ => { });
        Assert.That(b.Losses, Is.EqualTo(a.Losses), "every step's float32 loss, exactly");
        var c = TinyDemo.Run(o with { Seed = 2 }, _ => { });
        Assert.That(c.Losses, Is.Not.EqualTo(a.Losses));
    }
}
