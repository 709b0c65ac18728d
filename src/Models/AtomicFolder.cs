namespace Engine.Models;

/// <summary>
/// Writes a whole folder (a checkpoint, a saved model) so that readers see either the previous
/// folder or the complete new one: the contents are written into a sibling temporary folder,
/// which then replaces the target by renames. A failure while writing leaves the previous
/// folder as it was and removes the temporary one.
/// </summary>
public static class AtomicFolder
{
    public static void Write(string dir, Action<string> fill)
    {
        var full = Path.GetFullPath(dir).TrimEnd(Path.DirectorySeparatorChar);
        var parent = Path.GetDirectoryName(full) ?? throw new EngineException($"{dir}: cannot write a folder at the root");
        Directory.CreateDirectory(parent);
        var tmp = $"{full}.tmp-{Guid.NewGuid():N}";
        Directory.CreateDirectory(tmp);
        try
        {
            fill(tmp);
        }
        catch
        {
            Directory.Delete(tmp, recursive: true);
            throw;
        }
        string? old = null;
        if (Directory.Exists(full))
        {
            old = $"{full}.old-{Guid.NewGuid():N}";
            Directory.Move(full, old);
        }
        Directory.Move(tmp, full);
        if (old is not null) Directory.Delete(old, recursive: true);
    }
}
