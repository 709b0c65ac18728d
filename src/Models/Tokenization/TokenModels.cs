using System.Collections.Concurrent;

namespace Engine.Models.Tokenization;

/// <summary>The last stage of a tokenizer: turns one pre-tokenized piece into vocabulary ids.</summary>
public abstract class TokenModel
{
    public abstract void Encode(string piece, List<int> ids);
    public abstract int? TokenToId(string token);
    public abstract string? IdToToken(int id);
    /// <summary>One more than the largest id of the vocabulary.</summary>
    public abstract int VocabSize { get; }
}

/// <summary>A vocabulary: token → id and back.</summary>
public sealed class Vocabulary
{
    private readonly Dictionary<string, int> ids;
    private readonly Dictionary<string, int>.AlternateLookup<ReadOnlySpan<char>> spans;
    private readonly string?[] tokens;

    public Vocabulary(Dictionary<string, int> ids)
    {
        this.ids = new Dictionary<string, int>(ids, StringComparer.Ordinal);
        spans = this.ids.GetAlternateLookup<ReadOnlySpan<char>>();
        tokens = new string?[ids.Count == 0 ? 0 : ids.Values.Max() + 1];
        foreach (var (token, id) in ids) tokens[id] = token;
    }

    public int Size => tokens.Length;
    public int? this[string token] => ids.TryGetValue(token, out var id) ? id : null;
    public bool TryGet(string token, out int id) => ids.TryGetValue(token, out id);
    /// <summary>Looks a token up without making a string of it.</summary>
    public bool TryGet(ReadOnlySpan<char> token, out int id) => spans.TryGetValue(token, out id);
    public string? Token(int id) => id >= 0 && id < tokens.Length ? tokens[id] : null;
}

/// <summary>
/// WordPiece (BERT): each word is split greedily into the longest vocabulary entries from the left,
/// every entry after the first written with the continuing prefix ("##"). A word longer than
/// <c>maxCharacters</c> code points (100 in BERT), or one that cannot be split, becomes the unknown token.
/// Not Microsoft.ML.Tokenizers' WordPieceTokenizer: it counts the limit in UTF-16 units (docs/tokenizers.md).
/// </summary>
public sealed class WordPieceModel(Vocabulary vocabulary, int unknownId, string continuingPrefix = "##", int maxCharacters = 100) : TokenModel
{
    public override int VocabSize => vocabulary.Size;
    public override int? TokenToId(string token) => vocabulary[token];
    public override string? IdToToken(int id) => vocabulary.Token(id);

    public override void Encode(string piece, List<int> ids)
    {
        // starts[k] is the UTF-16 offset of the k-th code point; starts[count] is the end of the piece.
        var starts = new List<int>(piece.Length + 1);
        for (int i = 0; i < piece.Length; i += char.IsSurrogatePair(piece, i) ? 2 : 1) starts.Add(i);
        int count = starts.Count;
        starts.Add(piece.Length);
        if (count > maxCharacters) { ids.Add(unknownId); return; }
        // A candidate after the first is the prefix followed by the piece's text, assembled in one buffer.
        var buffer = new char[continuingPrefix.Length + piece.Length];
        continuingPrefix.CopyTo(buffer);
        int mark = ids.Count, start = 0;
        while (start < count)
        {
            int end = count, found = -1;
            while (end > start)
            {
                var text = piece.AsSpan(starts[start], starts[end] - starts[start]);
                ReadOnlySpan<char> candidate = text;
                if (start > 0)
                {
                    text.CopyTo(buffer.AsSpan(continuingPrefix.Length));
                    candidate = buffer.AsSpan(0, continuingPrefix.Length + text.Length);
                }
                if (vocabulary.TryGet(candidate, out var id)) { found = id; break; }
                end--;
            }
            if (found < 0)
            {
                ids.RemoveRange(mark, ids.Count - mark);
                ids.Add(unknownId);
                return;
            }
            ids.Add(found);
            start = end;
        }
    }
}

/// <summary>
/// Byte-pair encoding as the tokenizers library's BPE model does it. A piece starts as one symbol per
/// character (a character missing from the vocabulary becomes its UTF-8 bytes as &lt;0xXX&gt; tokens
/// with byte_fallback, else the unknown token, consecutive unknowns fused into one with fuse_unk);
/// then the adjacent pair with the lowest merge rank (leftmost on ties) is merged, again and again,
/// until no pair has a merge. With ignore_merges a piece that is itself in the vocabulary is taken whole.
/// Not Microsoft.ML.Tokenizers' BpeTokenizer: it has neither byte_fallback nor ignore_merges (docs/tokenizers.md).
/// </summary>
public sealed class BpeModel : TokenModel
{
    private readonly Vocabulary vocabulary;
    private readonly Dictionary<(int Left, int Right), (int Rank, int Merged)> merges;
    private readonly int? unknownId;
    private readonly bool fuseUnknown, byteFallback, ignoreMerges;
    private readonly string source;
    private readonly ConcurrentDictionary<string, int[]> cache = new();
    private const int CacheLimit = 50_000;

    public BpeModel(Vocabulary vocabulary, IReadOnlyList<(string Left, string Right)> mergeList, string source,
        int? unknownId = null, bool fuseUnknown = false, bool byteFallback = false, bool ignoreMerges = false)
    {
        this.vocabulary = vocabulary;
        this.unknownId = unknownId;
        this.fuseUnknown = fuseUnknown;
        this.byteFallback = byteFallback;
        this.ignoreMerges = ignoreMerges;
        this.source = source;
        merges = new Dictionary<(int, int), (int, int)>(mergeList.Count);
        for (int rank = 0; rank < mergeList.Count; rank++)
        {
            var (left, right) = mergeList[rank];
            int l = vocabulary[left] ?? throw MergeError(rank, left);
            int r = vocabulary[right] ?? throw MergeError(rank, right);
            int m = vocabulary[left + right] ?? throw MergeError(rank, left + right);
            merges.TryAdd((l, r), (rank, m));
        }
    }

    private EngineException MergeError(int rank, string token) =>
        new($"{source}: merge {rank + 1} uses '{token}', which is not in the vocabulary");

    public override int VocabSize => vocabulary.Size;
    public override int? TokenToId(string token) => vocabulary[token];
    public override string? IdToToken(int id) => vocabulary.Token(id);

    public override void Encode(string piece, List<int> ids)
    {
        if (piece.Length == 0) return;
        if (ignoreMerges && vocabulary.TryGet(piece, out var whole)) { ids.Add(whole); return; }
        if (cache.TryGetValue(piece, out var cached)) { ids.AddRange(cached); return; }
        var result = Merge(InitialSymbols(piece));
        if (cache.Count < CacheLimit) cache.TryAdd(piece, result);
        ids.AddRange(result);
    }

    private List<int> InitialSymbols(string piece)
    {
        var symbols = new List<int>(piece.Length);
        bool lastWasUnknown = false;
        foreach (var rune in piece.EnumerateRunes())
        {
            var text = rune.ToString();
            if (vocabulary.TryGet(text, out var id)) { symbols.Add(id); lastWasUnknown = false; continue; }
            if (byteFallback)
            {
                var bytes = System.Text.Encoding.UTF8.GetBytes(text);
                var byteIds = bytes.Select(b => vocabulary[$"<0x{b:X2}>"]).ToArray();
                if (byteIds.All(b => b is not null)) { foreach (var b in byteIds) symbols.Add(b!.Value); lastWasUnknown = false; continue; }
            }
            if (unknownId is not int unk)
                throw new EngineException($"{source}: the character U+{rune.Value:X4} is not in the vocabulary and the model has no unk_token");
            if (!(fuseUnknown && lastWasUnknown)) symbols.Add(unk);
            lastWasUnknown = true;
        }
        return symbols;
    }

    /// <summary>Merges with a priority queue of candidate pairs ordered by (rank, position); a popped
    /// candidate is skipped when either symbol has changed since it was queued.</summary>
    private int[] Merge(List<int> symbols)
    {
        int n = symbols.Count;
        var id = symbols.ToArray();
        var next = new int[n];
        var prev = new int[n];
        var alive = new bool[n];
        for (int i = 0; i < n; i++) { next[i] = i + 1 < n ? i + 1 : -1; prev[i] = i - 1; alive[i] = true; }
        var queue = new PriorityQueue<(int Left, int LeftId, int RightId, int Merged), (int Rank, int Position)>();
        void Consider(int left)
        {
            if (left < 0 || next[left] < 0) return;
            int right = next[left];
            if (merges.TryGetValue((id[left], id[right]), out var merge))
                queue.Enqueue((left, id[left], id[right], merge.Merged), (merge.Rank, left));
        }
        for (int i = 0; i + 1 < n; i++) Consider(i);
        while (queue.TryDequeue(out var c, out _))
        {
            if (!alive[c.Left] || id[c.Left] != c.LeftId) continue;
            int right = next[c.Left];
            if (right < 0 || id[right] != c.RightId) continue;
            id[c.Left] = c.Merged;
            alive[right] = false;
            next[c.Left] = next[right];
            if (next[right] >= 0) prev[next[right]] = c.Left;
            Consider(prev[c.Left]);
            Consider(c.Left);
        }
        var result = new List<int>(n);
        for (int i = 0; i < n; i++) if (alive[i]) result.Add(id[i]);
        return result.ToArray();
    }
}
