namespace Engine.Models;

/// <summary>
/// Writes a whole folder (a checkpoint, a saved model) so that readers see either the previous
/// folder or the complete new one, even when the process is killed at any moment:
/// <list type="number">
/// <item>the contents are written into a sibling DIR.tmp-ID (a failure there removes it and leaves DIR as it was);</item>
/// <item>the complete folder is renamed to DIR.ready-ID;</item>
/// <item>DIR (if any) is renamed to DIR.old-ID, DIR.ready-ID to DIR, and DIR.old-ID is deleted.</item>
/// </list>
/// A kill between the renames of step 3 leaves no DIR but a complete DIR.ready-ID;
/// <see cref="Recover"/> (called before each write and by readers such as --resume) finishes the
/// swap, and removes what an interrupted write left behind (DIR.tmp-*, DIR.old-*).
/// </summary>
public static class AtomicFolder
{
    public static void Write(string dir, Action<string> fill)
    {
        var full = Path.GetFullPath(dir).TrimEnd(Path.DirectorySeparatorChar);
        var parent = Path.GetDirectoryName(full) ?? throw new EngineException($"{dir}: cannot write a folder at the root");
        Directory.CreateDirectory(parent);
        Recover(full);
        var id = Guid.NewGuid().ToString("N");
        var tmp = $"{full}.tmp-{id}";
        Directory.CreateDirectory(tmp);
        try
        {
            fill(tmp);
        }
        catch
        {
            TryDelete(tmp);
            throw;
        }
        var ready = $"{full}.ready-{id}";
        Directory.Move(tmp, ready);
        string? old = null;
        if (Directory.Exists(full))
        {
            old = $"{full}.old-{id}";
            Directory.Move(full, old);
        }
        Directory.Move(ready, full);
        if (old is not null) TryDelete(old);
    }

    /// <summary>Finishes or undoes a write of <paramref name="dir"/> that a killed process left
    /// half done: with DIR missing, the newest complete DIR.ready-* becomes DIR (else the newest
    /// DIR.old-* is put back); leftover temporary and old copies are removed.</summary>
    public static void Recover(string dir)
    {
        var full = Path.GetFullPath(dir).TrimEnd(Path.DirectorySeparatorChar);
        var parent = Path.GetDirectoryName(full);
        if (parent is null || !Directory.Exists(parent)) return;
        var name = Path.GetFileName(full);
        string[] Siblings(string kind) => Directory.GetDirectories(parent, $"{name}.{kind}-*")
            .OrderByDescending(d => Directory.GetLastWriteTimeUtc(d)).ToArray();
        if (!Directory.Exists(full))
        {
            var restore = Siblings("ready").FirstOrDefault() ?? Siblings("old").FirstOrDefault();
            if (restore is not null) Directory.Move(restore, full);
        }
        foreach (var leftover in Siblings("tmp").Concat(Siblings("old")).Concat(Siblings("ready"))) TryDelete(leftover);
    }

    private static void TryDelete(string dir)
    {
        try { Directory.Delete(dir, recursive: true); }
        catch (IOException) { }
        catch (UnauthorizedAccessException) { }
    }
}
