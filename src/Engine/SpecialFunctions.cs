namespace Engine;

/// <summary>Functions .NET's Math lacks, accurate to float64 rounding (≈1e-15 relative).</summary>
public static class SpecialFunctions
{
    private const double TwoOverSqrtPi = 1.1283791670955126;

    /// <summary>The error function: a power series below |x| = 3, Laplace's continued fraction for erfc above.</summary>
    public static double Erf(double x)
    {
        if (double.IsNaN(x)) return double.NaN;
        double ax = Math.Abs(x);
        if (ax < 3.0)
        {
            double x2 = x * x, term = x, sum = x;
            for (int n = 1; n < 200; n++)
            {
                term *= -x2 / n;
                double add = term / (2 * n + 1);
                sum += add;
                if (Math.Abs(add) < 1e-17 * Math.Abs(sum)) break;
            }
            return TwoOverSqrtPi * sum;
        }
        double r = 1.0 - Erfc(ax);
        return x < 0 ? -r : r;
    }

    /// <summary>erfc(x) for x ≥ 3 by the continued fraction erfc(x) = e^{−x²}/√π · 1/(x + ½/(x + 1/(x + 3/2/(x + …)))).</summary>
    private static double Erfc(double x)
    {
        if (x > 27) return 0.0;
        double f = x;
        for (int k = 80; k >= 1; k--) f = x + k * 0.5 / f;
        return Math.Exp(-x * x) / (Math.Sqrt(Math.PI) * f);
    }
}
