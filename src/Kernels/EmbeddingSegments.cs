namespace Engine.Kernels;

/// <summary>
/// The host side of the GPU embedding backward: token indices grouped by id, for a kernel that
/// gives each distinct id its own threads. Packed as one int buffer: order [Tokens] (token
/// indices, sorted by id, ascending token order within an id), starts [Segments + 1] (where each
/// id's tokens begin in order), ids [Segments] (the id of each segment). Ids outside
/// [0, vocab) are left out (the CPU reference rejects them before; the kernel must not write there).
/// </summary>
public sealed record EmbeddingSegments(int[] Packed, int Tokens, int Segments)
{
    public static EmbeddingSegments Plan(ReadOnlySpan<int> ids, int vocab)
    {
        var keys = new long[ids.Length];
        int m = 0;
        for (int r = 0; r < ids.Length; r++)
            if (ids[r] >= 0 && ids[r] < vocab) keys[m++] = ((long)ids[r] << 32) | (uint)r;
        Array.Sort(keys, 0, m); // (id, token) pairs: ascending id, then ascending token: stable by construction
        int segments = 0;
        for (int i = 0; i < m; i++)
            if (i == 0 || keys[i] >> 32 != keys[i - 1] >> 32) segments++;
        var packed = new int[m + segments + 1 + segments];
        int s = 0;
        for (int i = 0; i < m; i++)
        {
            int id = (int)(keys[i] >> 32);
            if (i == 0 || id != (int)(keys[i - 1] >> 32))
            {
                packed[m + s] = i;                     // starts[s]
                packed[m + segments + 1 + s] = id;     // ids[s]
                s++;
            }
            packed[i] = (int)(keys[i] & 0xFFFFFFFF);  // order[i]
        }
        packed[m + segments] = m;                      // starts[segments]
        return new EmbeddingSegments(packed, m, segments);
    }
}
