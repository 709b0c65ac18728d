using Engine.Autograd;
using NUnit.Framework;

namespace Engine.Tests;

public class GradCheckTests
{
    public static IEnumerable<string> OpNames => OpCatalog.All.Select(e => e.Name);

    [TestCaseSource(nameof(OpNames))]
    public void EveryOpPassesTheFiniteDifferenceCheck(string name)
    {
        var entry = OpCatalog.Find(name)!;
        foreach (var seed in new[] { 1, 2, 3, 4, 5 })
        {
            var r = GradCheck.Check(entry, seed);
            Assert.That(r.Error, Is.Null, $"{name} seed {seed}: {r.Case}");
            Assert.That(r.ShapeOk, Is.True, $"{name} seed {seed}: wrong output shape for {r.Case}");
            Assert.That(r.MaxRelError, Is.LessThanOrEqualTo(GradCheck.DefaultTolerance), $"{name} seed {seed}: {r.Case}");
        }
    }

    [Test]
    public void AWrongBackwardIsCaught()
    {
        // tanh with the backward of the identity: dx += dy instead of dy · (1 − y²).
        static Tensor BrokenTanh(Tensor x)
        {
            var y = Tensor.FromDoubles(x.ToDoubleArray().Select(Math.Tanh).ToArray(), x.ShapeArray, x.DType);
            return Tape.Record("broken_tanh", y, [x], dy => x.Backend.Axpy(dy, Tape.GradOf(x), 1.0));
        }
        var c = new OpCase("x [3, 4]", [Tensor.Randn([3, 4], new Random(7), DType.F64)], [true], i => BrokenTanh(i[0]), [3, 4]);
        var r = GradCheck.Check("broken_tanh", c, 7);
        Assert.That(r.Passed, Is.False);
        Assert.That(r.MaxRelError, Is.GreaterThan(1e-2));
    }
}
