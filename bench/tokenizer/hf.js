// Encodes JSON Lines {"text": ...} from a file with the Hugging Face
// tokenizers library (Rust, through its Node binding) and writes
// {"ids": [...]} lines, the same contract as `prism tokenize`.
// Usage: node hf.js TOKENIZER_JSON INPUT OUTPUT ADD_SPECIAL
const fs = require('fs');
const { Tokenizer } = require('tokenizers');

async function main() {
  const [tokPath, input, output, addSpecial] = process.argv.slice(2);
  const tok = Tokenizer.fromFile(tokPath);
  const lines = fs.readFileSync(input, 'utf8').split('\n').filter((l) => l.length > 0);
  const out = [];
  for (const l of lines) {
    const enc = await tok.encode(JSON.parse(l).text, null, { addSpecialTokens: addSpecial === 'true' });
    out.push(JSON.stringify({ ids: Array.from(enc.getIds()) }));
  }
  fs.writeFileSync(output, out.join('\n') + '\n');
}

main().catch((e) => {
  console.error(e);
  process.exit(1);
});
