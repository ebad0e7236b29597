import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { byteLevelTokenizerJson, byteToUnicode, loadTokenizer, saveTokenizer } from '../src/model/tokenizer.js';
import { DEFAULT_CHAT_TEMPLATE, renderChat } from '../src/model/chat.js';

const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'freqkv-tok-'));
after(() => fs.rmSync(tmp, { recursive: true, force: true }));
let dirNo = 0;
const tmpDir = () => path.join(tmp, `t${dirNo++}`);

const SPECIALS = ['<unk>', '<s>', '</s>', '<|start|>', '<|end|>'];
const MERGES: [string, string][] = [['h', 'e'], ['l', 'l'], ['he', 'll'], ['hell', 'o'], [' ', 'w']];

// A Llama-3-style template: BOS, role headers, end-of-turn markers.
const TEMPLATE =
  "{{ bos_token }}{% for m in messages %}{{ '<|start|>' + m['role'] + '\\n' + m['content'] + '<|end|>' }}{% endfor %}" +
  "{% if add_generation_prompt %}{{ '<|start|>assistant\\n' }}{% endif %}";

async function makeTokenizer(config: Record<string, unknown>, extra: Record<string, string> = {}): Promise<string> {
  const dir = tmpDir();
  await saveTokenizer(dir, byteLevelTokenizerJson({ specialTokens: SPECIALS, merges: MERGES }), config);
  for (const [name, text] of Object.entries(extra)) fs.writeFileSync(path.join(dir, name), text);
  return dir;
}

test('byte-level BPE: vocabulary layout, merges, BOS and lossless round trip', async () => {
  const dir = await makeTokenizer({ bos_token: '<s>', eos_token: '</s>', clean_up_tokenization_spaces: false });
  const tok = await loadTokenizer(dir);
  assert.equal(tok.vocabSize, SPECIALS.length + 256 + MERGES.length);
  assert.equal(tok.bosId, 1);
  assert.deepEqual(tok.eosIds, [2]);
  assert.equal(tok.chatTemplate, null);

  const base = SPECIALS.length;
  const hello = base + 256 + 3; // the merge "hell" + "o"
  const byteId = (ch: string) => base + byteToUnicode().indexOf(ch);
  assert.deepEqual(tok.encode('hello'), [1, hello]);
  assert.deepEqual(tok.encode('hello', { addSpecialTokens: false }), [hello]);
  assert.deepEqual(tok.encode(' wow', { addSpecialTokens: false }), [base + 256 + 4, byteId('o'), byteId('w')]);

  for (const text of ['hello world', "it's  two  spaces .\n\ttab", 'héllo wörld 🙂 日本語', '', ' leading and trailing ']) {
    const ids = tok.encode(text, { addSpecialTokens: false });
    assert.ok(ids.every((id) => Number.isInteger(id) && id >= 0 && id < tok.vocabSize));
    assert.equal(tok.decode(ids), text);
  }
});

test('special tokens: split out of text, skipped on request, EOS ids merged from generation_config', async () => {
  const dir = await makeTokenizer({ bos_token: { content: '<s>' }, eos_token: '<|end|>', clean_up_tokenization_spaces: false }, {
    'generation_config.json': JSON.stringify({ eos_token_id: [2, 4] }),
  });
  const tok = await loadTokenizer(dir);
  assert.equal(tok.bosToken, '<s>');
  assert.equal(tok.eosToken, '<|end|>');
  assert.deepEqual(tok.eosIds, [4, 2]);
  const ids = tok.encode('hi<|end|>', { addSpecialTokens: false });
  assert.equal(ids[ids.length - 1], 4);
  assert.equal(tok.decode(ids), 'hi<|end|>');
  assert.equal(tok.decode(ids, { skipSpecialTokens: true }), 'hi');
  assert.equal(tok.decode([]), '');
  assert.throws(() => tok.decode([tok.vocabSize]), /token id 266 is outside the vocabulary/);
});

test('chat template from tokenizer_config.json renders the conversation', async () => {
  const dir = await makeTokenizer({ bos_token: '<s>', eos_token: '<|end|>', chat_template: TEMPLATE, clean_up_tokenization_spaces: false });
  const tok = await loadTokenizer(dir);
  const messages = [{ role: 'system', content: 'Be brief.' }, { role: 'user', content: 'hello' }];
  const text = renderChat(tok.chatTemplate!, messages, { addGenerationPrompt: true, bosToken: tok.bosToken!, eosToken: tok.eosToken! });
  assert.equal(text, '<s><|start|>system\nBe brief.<|end|><|start|>user\nhello<|end|><|start|>assistant\n');
  assert.equal(renderChat(tok.chatTemplate!, messages, { addGenerationPrompt: false }).endsWith('hello<|end|>'), true);
  // The rendered text already holds BOS, so it is encoded without adding another.
  const ids = tok.encode(text, { addSpecialTokens: false });
  assert.equal(ids[0], 1);
  assert.equal(ids.filter((id) => id === 1).length, 1);
  assert.equal(tok.decode(ids), text);
});

test('chat template as a named list or in chat_template.jinja', async () => {
  const listed = await makeTokenizer({ chat_template: [{ name: 'tool_use', template: 'T' }, { name: 'default', template: 'D' }] });
  assert.equal((await loadTokenizer(listed)).chatTemplate, 'D');
  const file = await makeTokenizer({}, { 'chat_template.jinja': TEMPLATE });
  assert.equal((await loadTokenizer(file)).chatTemplate, TEMPLATE);
});

test('default ChatML template and template errors', () => {
  const text = renderChat(DEFAULT_CHAT_TEMPLATE, [{ role: 'user', content: 'Hi' }], { addGenerationPrompt: true });
  assert.equal(text, '<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n');
  assert.throws(() => renderChat('{% for m in messages %}', [], { addGenerationPrompt: false }), /chat template: cannot parse/);
  assert.throws(
    () => renderChat("{{ raise_exception('roles must alternate') }}", [], { addGenerationPrompt: false }),
    /chat template: cannot render .*roles must alternate/,
  );
  assert.throws(() => renderChat(DEFAULT_CHAT_TEMPLATE, [{ role: 'user' } as never], { addGenerationPrompt: false }), /messages\[0\]/);
});

test('tokenizer files: clear errors for a missing file, bad JSON and unknown special tokens', async () => {
  const empty = tmpDir();
  fs.mkdirSync(empty);
  await assert.rejects(loadTokenizer(empty), new RegExp(`${path.join(empty, 'tokenizer.json')}: cannot read`));
  const badJson = await makeTokenizer({});
  fs.writeFileSync(path.join(badJson, 'tokenizer_config.json'), '{oops');
  await assert.rejects(loadTokenizer(badJson), /tokenizer_config\.json: not valid JSON/);
  const badEos = await makeTokenizer({ eos_token: '<eot>' });
  await assert.rejects(loadTokenizer(badEos), /tokenizer_config\.json: field "eos_token" names "<eot>", which is not in/);
  const badModel = await makeTokenizer({});
  fs.writeFileSync(path.join(badModel, 'tokenizer.json'), JSON.stringify({ model: { type: 'Nope' }, decoder: null, post_processor: null, pre_tokenizer: null, normalizer: null }));
  await assert.rejects(loadTokenizer(badModel), /tokenizer\.json: unsupported or invalid tokenizer/);
});
