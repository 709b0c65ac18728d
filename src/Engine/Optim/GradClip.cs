namespace Engine.Optim;

/// <summary>Gradient clipping, with torch.nn.utils.clip_grad_norm_ semantics.</summary>
public static class GradClip
{
    /// <summary>The Euclidean norm of all the gradients together, √(Σ over parameters of Σ g²),
    /// computed in float64; parameters without a gradient count for nothing.</summary>
    public static double GlobalNorm(IEnumerable<Tensor> parameters)
    {
        // Runs of consecutive gradients on one device go to their backend as one list (one device
        // round trip per run instead of one per parameter); totals add in parameter order.
        double sum = 0;
        var run = new List<Tensor>();
        foreach (var p in parameters)
        {
            if (p.Grad is not { } g) continue;
            if (run.Count > 0 && run[0].Device != g.Device) { sum += run[0].Backend.SumSquares(run); run.Clear(); }
            run.Add(g);
        }
        if (run.Count > 0) sum += run[0].Backend.SumSquares(run);
        return Math.Sqrt(sum);
    }

    /// <summary>
    /// Scales all gradients by coef = maxNorm / (total + 1e-6) when coef &lt; 1, where total is
    /// <see cref="GlobalNorm"/>; returns the total norm before clipping (log it).
    ///
    /// A non-finite total (a NaN or infinite gradient) is returned as it is and the gradients are
    /// left untouched, so the caller can report the step and stop (PyTorch, with
    /// error_if_nonfinite off, would multiply every gradient by NaN or 0 instead).
    /// </summary>
    public static double ClipByGlobalNorm(IEnumerable<Tensor> parameters, double maxNorm)
    {
        if (!(maxNorm > 0) || double.IsInfinity(maxNorm)) throw new EngineException($"gradient clipping: max norm {maxNorm} must be finite and > 0");
        var list = parameters as IReadOnlyCollection<Tensor> ?? parameters.ToList();
        double total = GlobalNorm(list);
        if (!double.IsFinite(total)) return total;
        double coef = maxNorm / (total + 1e-6);
        if (coef < 1)
            foreach (var p in list)
                if (p.Grad is { } g) g.Backend.Scale(g, g, coef);
        return total;
    }
}
