namespace Engine.Models.Analysis;

/// <summary>
/// Eigenvalues and eigenvectors of a small real symmetric matrix in float64, by the cyclic
/// Jacobi method: sweeps of plane rotations, each zeroing one off-diagonal pair, until the
/// off-diagonal part is zero to rounding. Accurate to a few units of rounding relative to the
/// matrix's norm, simple, and fast enough for the sizes it serves (the |Y|×|Y| Gram matrix of
/// class means in <see cref="Variability"/>; a d×d matrix of a small test).
/// </summary>
public static class SymmetricEigen
{
    /// <summary>
    /// A = V · diag(values) · Vᵀ for a symmetric n×n <paramref name="a"/> (row-major, length n²;
    /// only its values are read, it is not changed). Returns the eigenvalues in ascending order and
    /// V row-major (column k is the unit eigenvector of values[k]).
    /// </summary>
    public static (double[] Values, double[] Vectors) Decompose(ReadOnlySpan<double> a, int n)
    {
        if (a.Length != n * n) throw new ArgumentException($"expected {n}×{n} = {n * n} values, got {a.Length}");
        var m = a.ToArray();
        for (int i = 0; i < n; i++)
            for (int j = 0; j < i; j++)
                if (m[i * n + j] != m[j * n + i])
                {
                    // Symmetrise exactly: rounding in the caller's products may differ in the last bit.
                    double s = 0.5 * (m[i * n + j] + m[j * n + i]);
                    m[i * n + j] = m[j * n + i] = s;
                }
        var v = new double[n * n];
        for (int i = 0; i < n; i++) v[i * n + i] = 1;
        double norm = 0;
        foreach (var x in m) norm += x * x;
        for (int sweep = 0; sweep < 100; sweep++)
        {
            double off = 0;
            for (int p = 0; p < n; p++)
                for (int q = p + 1; q < n; q++) off += m[p * n + q] * m[p * n + q];
            if (off <= 1e-32 * norm || off == 0) break;
            for (int p = 0; p < n; p++)
                for (int q = p + 1; q < n; q++)
                {
                    double apq = m[p * n + q];
                    if (apq == 0) continue;
                    // The rotation [[c, s], [−s, c]] in the (p, q) plane with t = tan φ the smaller
                    // root of t² + 2θt − 1 = 0, θ = (a_qq − a_pp) / (2 a_pq): makes a'_pq = 0.
                    double theta = (m[q * n + q] - m[p * n + p]) / (2 * apq);
                    double t = (theta >= 0 ? 1 : -1) / (Math.Abs(theta) + Math.Sqrt(theta * theta + 1));
                    double c = 1 / Math.Sqrt(t * t + 1), s = t * c;
                    for (int k = 0; k < n; k++) // A ← A·J (columns p, q)
                    {
                        double kp = m[k * n + p], kq = m[k * n + q];
                        m[k * n + p] = c * kp - s * kq;
                        m[k * n + q] = s * kp + c * kq;
                    }
                    for (int k = 0; k < n; k++) // A ← Jᵀ·A (rows p, q)
                    {
                        double pk = m[p * n + k], qk = m[q * n + k];
                        m[p * n + k] = c * pk - s * qk;
                        m[q * n + k] = s * pk + c * qk;
                    }
                    m[p * n + q] = m[q * n + p] = 0;
                    for (int k = 0; k < n; k++) // V ← V·J
                    {
                        double kp = v[k * n + p], kq = v[k * n + q];
                        v[k * n + p] = c * kp - s * kq;
                        v[k * n + q] = s * kp + c * kq;
                    }
                }
        }
        var order = Enumerable.Range(0, n).OrderBy(i => m[i * n + i]).ToArray();
        var values = order.Select(i => m[i * n + i]).ToArray();
        var vectors = new double[n * n];
        for (int r = 0; r < n; r++)
            for (int k = 0; k < n; k++) vectors[r * n + k] = v[r * n + order[k]];
        return (values, vectors);
    }
}
