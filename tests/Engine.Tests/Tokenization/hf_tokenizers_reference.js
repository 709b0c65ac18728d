// Hugging Face tokenizers (the Rust library behind transformers' fast tokenizers, npm package
// "tokenizers", 0.23.2 when the figures in docs/tokenizers.md were made) as the reference for
// HuggingFaceComparisonTests: ids for the fixture's strings, 10,000 SST-2 train sentences and every
// MRPC train sentence, for BERT uncased and cased (bert-base-uncased's vocab.txt) and for a byte-level
// BPE (RoBERTa's pipeline) that the library trains on WikiText-2 (valid + test) and reads back from
// vocab.json + merges.txt.
//
//   npm install --prefix /tmp/hftok tokenizers@0.23.2
//   NODE_PATH=/tmp/hftok/node_modules node tests/Engine.Tests/Tokenization/hf_tokenizers_reference.js \
//       tests/Engine.Tests/Fixtures/tokenizer_reference.json /work/shared /tmp/tokenizer-reference
//   ENGINE_TOKENIZER_REFERENCE=/tmp/tokenizer-reference dotnet run --project tests/Engine.Tests -- \
//       --filter "FullyQualifiedName~HuggingFaceComparison"
const fs = require('fs');
const path = require('path');
const t = require('tokenizers');
const [fixturePath, shared, out] = process.argv.slice(2);
if (!out) { console.error('usage: hf_tokenizers_reference.js FIXTURE_JSON SHARED_DIR OUT_DIR'); process.exit(2); }
fs.mkdirSync(path.join(out, 'bpe'), { recursive: true });

const fixture = JSON.parse(fs.readFileSync(fixturePath, 'utf8'));
const texts = [];
for (const family of ['bert_uncased', 'llama2']) for (const c of fixture[family]) texts.push(c.text);
const fixtureCount = texts.length;
const tsv = file => fs.readFileSync(path.join(shared, 'data', 'glue', file), 'utf8').split('\n').slice(1).filter(l => l.length).map(l => l.split('\t'));
texts.push(...tsv('SST-2/train.tsv').slice(0, 10000).map(p => p[0]));
texts.push(...tsv('MRPC/train.tsv').flatMap(p => [p[3], p[4]]));
fs.writeFileSync(path.join(out, 'texts.json'), JSON.stringify({ fixtureCount, texts }));

async function write(name, tokenizer) {
  const ids = [];
  for (const s of texts) ids.push((await tokenizer.encode(s)).getIds());
  fs.writeFileSync(path.join(out, name + '.json'), JSON.stringify(ids));
  console.log(name, ids.length, 'texts');
}

(async () => {
  const bertVocab = path.join(shared, 'tokenizers', 'bert-base-uncased', 'vocab.txt');
  for (const lowercase of [true, false]) {   // BertTokenizerFast with do_lower_case true / false
    const tokenizer = new t.Tokenizer(await t.WordPiece.fromFile(bertVocab, { unkToken: '[UNK]' }));
    tokenizer.setNormalizer(t.bertNormalizer({ cleanText: true, handleChineseChars: true, stripAccents: lowercase, lowercase }));
    tokenizer.setPreTokenizer(t.bertPreTokenizer());
    tokenizer.setPostProcessor(t.bertProcessing(['[SEP]', 102], ['[CLS]', 101]));
    tokenizer.addSpecialTokens(['[PAD]', '[UNK]', '[CLS]', '[SEP]', '[MASK]']);
    await write(lowercase ? 'bert_uncased' : 'bert_cased', tokenizer);
  }

  const trainer = new t.Tokenizer(t.BPE.empty());
  trainer.setPreTokenizer(t.byteLevelPreTokenizer(false, true));
  trainer.train(['wiki.valid.raw', 'wiki.test.raw'].map(f => path.join(shared, 'corpus', 'wikitext-2-raw', f)));
  trainer.save(path.join(out, 'bpe', 'trained.json'));
  const trained = JSON.parse(fs.readFileSync(path.join(out, 'bpe', 'trained.json'), 'utf8'));
  const vocab = {};
  const add = token => { if (!(token in vocab)) vocab[token] = Object.keys(vocab).length; };
  ['<s>', '<pad>', '</s>', '<unk>'].forEach(add);
  t.byteLevelAlphabet().sort().forEach(add);
  Object.entries(trained.model.vocab).sort((a, b) => a[1] - b[1]).forEach(([token]) => add(token));
  add('<mask>');
  const merges = trained.model.merges.map(m => Array.isArray(m) ? m.join(' ') : m);
  fs.writeFileSync(path.join(out, 'bpe', 'vocab.json'), JSON.stringify(vocab));
  fs.writeFileSync(path.join(out, 'bpe', 'merges.txt'), '#version: 0.2\n' + merges.join('\n') + '\n');
  // RobertaTokenizerFast's pipeline on those two files.
  const bpe = new t.Tokenizer(await t.BPE.fromFile(path.join(out, 'bpe', 'vocab.json'), path.join(out, 'bpe', 'merges.txt'), {}));
  bpe.setPreTokenizer(t.byteLevelPreTokenizer(false, true));
  bpe.setPostProcessor(t.robertaProcessing(['</s>', vocab['</s>']], ['<s>', vocab['<s>']]));
  bpe.addSpecialTokens(['<s>', '<pad>', '</s>', '<unk>', '<mask>']);
  console.log('byte-level BPE:', Object.keys(vocab).length, 'tokens,', merges.length, 'merges');
  await write('bpe', bpe);
})();
