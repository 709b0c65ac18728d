#!/usr/bin/env python3
"""Reference token ids for the engine's tokenizer tests (tests/Engine.Tests/Fixtures/tokenizer_reference.json).

For a set of awkward strings it writes the ids (with special tokens) that Hugging Face would give for
  - BERT uncased WordPiece (bert-base-uncased vocab.txt), and
  - Llama 2 SentencePiece (tokenizer.model), with bos.

Which implementation produces them:
  * with `transformers` importable: AutoTokenizer-style classes (BertTokenizerFast from vocab.txt,
    LlamaTokenizerFast from tokenizer.model with legacy conversion) - run this on the GPU host;
  * otherwise an independent plain-Python implementation of transformers' BasicTokenizer +
    WordpieceTokenizer for BERT, and the `sentencepiece` package (Debian's python3-sentencepiece:
    run with /usr/bin/python3) for Llama 2.
The fixture's "produced_by" says which one ran.

Usage: /usr/bin/python3 tools/reference/tokenizer_reference.py \
           --bert-vocab /work/shared/tokenizers/bert-base-uncased/vocab.txt \
           --llama-model /work/shared/tokenizers/llama2/tokenizer.model \
           --out tests/Engine.Tests/Fixtures/tokenizer_reference.json
"""
import argparse
import json
import unicodedata

BERT_STRINGS = [
    "Hello, world!",
    "naïve café",
    "Ünïcödé ÀÉÎÕÜ façade résumé",
    "The QUICK brown Fox.",
    "don't stop-believing... (ok?) [yes] {no} $5 #1 @home 50% a+b=c ~x^y `z` a|b <tag>",
    "中文字符测试 mixed 中文 and English",
    "日本語のテキスト、カタカナ。한국어 텍스트",
    "emoji 😀 🎉 👍🏽 and ❤️",
    "supercalifragilisticexpialidocious " + "a" * 120 + " end",
    "",
    "   \t\n  ",
    "numbers 12345 3.14159 1,000,000 2024-01-01",
    "control\u0000chars\u0007here\u200bzero\ufeffwidth",
    "tabs\tand\nnewlines\r\nand\u00a0nbsp\u3000ideographic space",
    "Ωμέγα ελληνικά русский текст עברית العربية",
    "unaffable unbelievably antidisestablishmentarianism",
    "“curly quotes” ‘single’ — em dash – en dash … ellipsis",
]

LLAMA_STRINGS = BERT_STRINGS + [
    " leading space",
    "   three leading spaces",
    "trailing space ",
    "line one\nline two\n\nline four",
    "digits 0123456789 9876543210",
    "byte fallback: 𝔘𝔫𝔦𝔠𝔬𝔡𝔢 ꙮ 𓀀 \U0001F9EC",
    "Hello",
    "hello world",
]


# ---- independent BERT (transformers' BasicTokenizer + WordpieceTokenizer, written out) ----

def _is_whitespace(ch):
    if ch in (" ", "\t", "\n", "\r"):
        return True
    return unicodedata.category(ch) == "Zs"


def _is_control(ch):
    if ch in ("\t", "\n", "\r"):
        return False
    return unicodedata.category(ch).startswith("C")


def _is_punctuation(ch):
    cp = ord(ch)
    if 33 <= cp <= 47 or 58 <= cp <= 64 or 91 <= cp <= 96 or 123 <= cp <= 126:
        return True
    return unicodedata.category(ch).startswith("P")


def _is_chinese(cp):
    return (0x4E00 <= cp <= 0x9FFF or 0x3400 <= cp <= 0x4DBF or 0x20000 <= cp <= 0x2A6DF
            or 0x2A700 <= cp <= 0x2B73F or 0x2B740 <= cp <= 0x2B81F or 0x2B820 <= cp <= 0x2CEAF
            or 0xF900 <= cp <= 0xFAFF or 0x2F800 <= cp <= 0x2FA1F)


def basic_tokenize(text, lower=True, strip_accents=True):
    text = "".join(" " if _is_whitespace(c) else c for c in text
                   if not (ord(c) == 0 or ord(c) == 0xFFFD or _is_control(c)))
    text = "".join(f" {c} " if _is_chinese(ord(c)) else c for c in text)
    text = unicodedata.normalize("NFC", text)
    out = []
    for token in text.strip().split():
        if lower:
            token = token.lower()
        if strip_accents:
            token = "".join(c for c in unicodedata.normalize("NFD", token) if unicodedata.category(c) != "Mn")
        word = []
        for c in token:
            if _is_punctuation(c):
                if word:
                    out.append("".join(word))
                    word = []
                out.append(c)
            else:
                word.append(c)
        if word:
            out.append("".join(word))
    return out


def wordpiece(token, vocab, unk="[UNK]", max_chars=100):
    if len(token) > max_chars:
        return [unk]
    pieces, start = [], 0
    while start < len(token):
        end, found = len(token), None
        while start < end:
            sub = token[start:end]
            if start > 0:
                sub = "##" + sub
            if sub in vocab:
                found = sub
                break
            end -= 1
        if found is None:
            return [unk]
        pieces.append(found)
        start = end
    return pieces


def bert_reference(vocab_path):
    try:
        from transformers import BertTokenizerFast
        tok = BertTokenizerFast(vocab_file=vocab_path, do_lower_case=True)
        return "transformers BertTokenizerFast", [tok(s)["input_ids"] for s in BERT_STRINGS]
    except ImportError:
        pass
    vocab = {}
    with open(vocab_path, encoding="utf-8") as f:
        for i, line in enumerate(f):
            vocab[line.rstrip("\n")] = i
    ids = []
    for s in BERT_STRINGS:
        tokens = [p for w in basic_tokenize(s) for p in wordpiece(w, vocab)]
        ids.append([vocab["[CLS]"]] + [vocab[t] for t in tokens] + [vocab["[SEP]"]])
    return "plain-Python BasicTokenizer+WordpieceTokenizer (transformers' algorithm)", ids


def llama_reference(model_path):
    try:
        from transformers import LlamaTokenizerFast
        tok = LlamaTokenizerFast(vocab_file=model_path, legacy=True, from_slow=True)
        return "transformers LlamaTokenizerFast (from_slow)", [tok(s)["input_ids"] for s in LLAMA_STRINGS]
    except ImportError:
        pass
    import sentencepiece as spm
    sp = spm.SentencePieceProcessor(model_file=model_path)
    return f"sentencepiece {spm.__version__} encode(add_bos=True)", [sp.encode(s, add_bos=True) for s in LLAMA_STRINGS]


def write_decompositions(path):
    """Writes src/Models/Tokenization/CanonicalDecompositions.cs: every code point's full canonical
    decomposition (NFD without reordering) from Python's unicodedata, for the engine's accent stripping,
    which cannot use string.Normalize (the engine runs with invariant globalization, where .NET does
    not normalize non-ASCII text). Hangul syllables are decomposed by formula in C#, not listed."""
    def full(cp):
        d = unicodedata.decomposition(chr(cp))
        if not d or d.startswith("<"):
            return None
        out = []
        for h in d.split():
            c = int(h, 16)
            out.extend(full(c) or [c])
        return out
    entries = []
    for cp in range(0x110000):
        if 0xAC00 <= cp <= 0xD7A3:
            continue
        r = full(cp)
        if r:
            entries.append("%X:%s" % (cp, " ".join("%X" % x for x in r)))
    chunks = [";".join(entries[i:i + 12]) for i in range(0, len(entries), 12)]
    body = " +\n        ".join('"%s;"' % c for c in chunks)
    with open(path, "w", encoding="utf-8") as f:
        f.write("// Generated by tools/reference/tokenizer_reference.py --write-decompositions; do not edit.\n")
        f.write(f"// Unicode {unicodedata.unidata_version} canonical decompositions, fully expanded: \"code point:decomposition;\" in hex.\n")
        f.write("namespace Engine.Models.Tokenization;\n\ninternal static class CanonicalDecompositionTable\n{\n")
        f.write(f"    public const string UnicodeVersion = \"{unicodedata.unidata_version}\";\n\n")
        f.write("    public const string Entries =\n        " + body + ";\n}\n")
    print(f"wrote {path}: {len(entries)} decompositions (Unicode {unicodedata.unidata_version})")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--write-decompositions", metavar="CS_FILE", help="only write the C# decomposition table and exit")
    ap.add_argument("--bert-vocab")
    ap.add_argument("--llama-model")
    ap.add_argument("--out")
    a = ap.parse_args()
    if a.write_decompositions:
        write_decompositions(a.write_decompositions)
        return
    if not (a.bert_vocab and a.llama_model and a.out):
        ap.error("--bert-vocab, --llama-model and --out are required")
    bert_by, bert_ids = bert_reference(a.bert_vocab)
    llama_by, llama_ids = llama_reference(a.llama_model)
    fixture = {
        "produced_by": {"bert_uncased": bert_by, "llama2": llama_by},
        "bert_uncased": [{"text": s, "ids": i} for s, i in zip(BERT_STRINGS, bert_ids)],
        "llama2": [{"text": s, "ids": i} for s, i in zip(LLAMA_STRINGS, llama_ids)],
    }
    # One string per line, so the fixture diffs well.
    lines = ["{", f' "produced_by": {json.dumps(fixture["produced_by"], ensure_ascii=False)},']
    for i, key in enumerate(("bert_uncased", "llama2")):
        lines.append(f' "{key}": [')
        entries = [" " * 2 + json.dumps(e, ensure_ascii=False) for e in fixture[key]]
        lines.append(",\n".join(entries))
        lines.append(" ]" + ("," if i == 0 else ""))
    lines.append("}")
    with open(a.out, "w", encoding="utf-8") as f:
        f.write("\n".join(lines) + "\n")
    print(f"wrote {a.out}: {len(bert_ids)} BERT and {len(llama_ids)} Llama 2 strings ({bert_by}; {llama_by})")


if __name__ == "__main__":
    main()
