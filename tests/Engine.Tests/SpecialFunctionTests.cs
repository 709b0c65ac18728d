using NUnit.Framework;

namespace Engine.Tests;

public class SpecialFunctionTests
{
    // Expected values: Python's math.erf (correctly rounded C library erf).
    [TestCase(1e-8, 1.1283791670955126e-08)]
    [TestCase(-0.3, -0.3286267594591274)]
    [TestCase(0.5, 0.5204998778130465)]
    [TestCase(1.0, 0.8427007929497149)]
    [TestCase(1.4999, 0.9660932516622953)]
    [TestCase(1.5, 0.9661051464753108)]
    [TestCase(2.0, 0.9953222650189527)]
    [TestCase(3.0, 0.9999779095030014)]
    [TestCase(4.5, 0.9999999998033839)]
    public void ErfIsAccurateToDoubleRounding(double x, double expected)
    {
        Assert.That(SpecialFunctions.Erf(x), Is.EqualTo(expected).Within(2e-16 + 2e-15 * Math.Abs(expected)));
        Assert.That(SpecialFunctions.Erf(-x), Is.EqualTo(-expected).Within(2e-16 + 2e-15 * Math.Abs(expected)));
        Assert.That(SpecialFunctions.ErfSingle((float)x), Is.EqualTo(expected).Within(2e-7 + 1e-7 * Math.Abs(x)));
    }
}
