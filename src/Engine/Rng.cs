namespace Engine;

/// <summary>
/// Counter-based random numbers: the value at (seed, index) is a pure function of both, so
/// every backend (CPU, CUDA) draws the same dropout mask for the same seed, in any order.
/// The mixer is SplitMix64's finaliser.
/// </summary>
public static class Rng
{
    public static ulong Mix(ulong seed, ulong index) => Finalise(Basis(seed) + index);

    /// <summary>The seed's part of <see cref="Mix"/>: Mix(seed, i) = Finalise(Basis(seed) + i), so a
    /// loop over i computes it once.</summary>
    public static ulong Basis(ulong seed) => seed * 0x9E3779B97F4A7C15UL + 0x632BE59BD9B4E019UL;

    /// <summary>SplitMix64's finaliser.</summary>
    [System.Runtime.CompilerServices.MethodImpl(System.Runtime.CompilerServices.MethodImplOptions.AggressiveInlining)]
    public static ulong Finalise(ulong z)
    {
        z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9UL;
        z = (z ^ (z >> 27)) * 0x94D049BB133111EBUL;
        return z ^ (z >> 31);
    }

    /// <summary>A uniform value in [0, 1) with 24 random bits (exact in float32 and float64).</summary>
    public static float Uniform(ulong seed, ulong index) => ToUniform(Mix(seed, index));

    /// <summary>The top 24 bits of a mixed value as a uniform float in [0, 1).</summary>
    [System.Runtime.CompilerServices.MethodImpl(System.Runtime.CompilerServices.MethodImplOptions.AggressiveInlining)]
    public static float ToUniform(ulong mixed) => (mixed >> 40) * (1.0f / 16777216.0f);
}
