namespace Engine;

public enum DeviceKind { Cpu, Cuda }

/// <summary>Where a tensor's storage lives.</summary>
public readonly record struct Device(DeviceKind Kind, int Index = 0)
{
    public static readonly Device Cpu = new(DeviceKind.Cpu);
    public static Device Cuda(int index = 0) => new(DeviceKind.Cuda, index);

    public override string ToString() => Kind == DeviceKind.Cpu ? "cpu" : $"cuda:{Index}";

    /// <summary>Parses "cpu", "cuda" or "cuda:N".</summary>
    public static Device Parse(string text)
    {
        var s = text.Trim().ToLowerInvariant();
        if (s == "cpu") return Cpu;
        if (s == "cuda" || s == "gpu") return Cuda();
        if (s.StartsWith("cuda:") && int.TryParse(s[5..], out var i) && i >= 0) return Cuda(i);
        throw new EngineException($"unknown device '{text}': expected cpu, cuda or cuda:N");
    }
}
