// Loads Lopper's ONNX exports in onnxruntime-node and compares their logits with the reference logits of
// Lopper's Java forward pass (written by dev.lopper.export.ExportSamples, see docs/EXPORT.md).
//
// usage: node check.mjs SAMPLES_DIR   (each SAMPLES_DIR/<name>/ holds onnx/, onnx-kv/ and reference.*)
// Checks: onnx (full sequence) and onnx-kv (prefill of all but the last 3 tokens with an empty cache, then 3
// single-token steps feeding present.* back as past_key_values.*). Exits 1 if any max abs diff > tolerance.
import fs from 'node:fs';
import path from 'node:path';
import ort from 'onnxruntime-node';

function readReference(dir) {
  const ref = JSON.parse(fs.readFileSync(path.join(dir, 'reference.json'), 'utf8'));
  const buf = fs.readFileSync(path.join(dir, ref.logits_file));
  const logits = new Float32Array(buf.buffer, buf.byteOffset, buf.byteLength / 4);
  return { ...ref, logits };
}

function int64Tensor(rows) {
  const b = rows.length;
  const t = rows[0].length;
  return new ort.Tensor('int64', BigInt64Array.from(rows.flat().map(BigInt)), [b, t]);
}

function ones(b, t) {
  return Array.from({ length: b }, () => Array(t).fill(1));
}

/** max |got[b, t, :] - want[b, start + t, :]| over a chunk of `len` tokens. */
function maxDiff(got, ref, start, len) {
  const [B, T, V] = ref.shape;
  let max = 0;
  for (let b = 0; b < B; b++) {
    for (let t = 0; t < len; t++) {
      for (let v = 0; v < V; v++) {
        const d = Math.abs(got[(b * len + t) * V + v] - ref.logits[(b * T + start + t) * V + v]);
        if (!(d <= max)) max = d; // NaN propagates
      }
    }
  }
  return max;
}

async function checkLogits(dir, ref) {
  const file = path.join(dir, 'onnx', 'model.onnx');
  const session = await ort.InferenceSession.create(file);
  const [B, T] = ref.shape;
  const out = await session.run({ input_ids: int64Tensor(ref.ids), attention_mask: int64Tensor(ones(B, T)) });
  const diff = maxDiff(out.logits.data, ref, 0, T);
  const ok = diff <= ref.tolerance;
  console.log(`${path.basename(dir)}: onnxruntime-node ${file}: logits [${out.logits.dims}], max abs diff vs Java forward pass ${diff.toExponential(2)} -> ${ok ? 'OK' : 'FAIL'}`);
  return ok;
}

async function checkKv(dir, ref) {
  const file = path.join(dir, 'onnx-kv', 'model.onnx');
  const session = await ort.InferenceSession.create(file);
  const [B, T] = ref.shape;
  // the KV heads and head_dim of each cache input come from the exported config (lopper_layers when pruned)
  const config = JSON.parse(fs.readFileSync(path.join(dir, 'onnx-kv', 'config.json'), 'utf8'));
  const layers = config.lopper_layers ?? Array(config.num_hidden_layers).fill({ num_key_value_heads: config.num_key_value_heads });
  const headDim = config.head_dim ?? config.hidden_size / config.num_attention_heads;
  const cache = {};
  layers.forEach((l, i) => {
    if (l.num_key_value_heads > 0) {
      for (const kind of ['key', 'value']) {
        cache[`past_key_values.${i}.${kind}`] = new ort.Tensor('float32', new Float32Array(0), [B, l.num_key_value_heads, 0, headDim]);
      }
    }
  });
  let done = 0;
  let ok = true;
  for (const step of [T - 3, 1, 1, 1]) {
    const chunk = ref.ids.map((row) => row.slice(done, done + step));
    const out = await session.run({ input_ids: int64Tensor(chunk), attention_mask: int64Tensor(ones(B, done + step)), ...cache });
    const diff = maxDiff(out.logits.data, ref, done, step);
    const good = diff <= ref.tolerance;
    ok &&= good;
    console.log(`${path.basename(dir)}: onnx-kv tokens ${done}..${done + step - 1} (cache of ${done}): max abs diff ${diff.toExponential(2)} -> ${good ? 'OK' : 'FAIL'}`);
    done += step;
    for (const name of Object.keys(cache)) {
      cache[name] = out[name.replace('past_key_values.', 'present.')];
    }
  }
  return ok;
}

async function main() {
  const root = process.argv[2];
  if (!root) {
    console.error('usage: node check.mjs SAMPLES_DIR');
    process.exit(2);
  }
  const samples = fs.readdirSync(root).map((n) => path.join(root, n)).filter((d) => fs.existsSync(path.join(d, 'reference.json'))).sort();
  if (samples.length === 0) {
    console.error(`no samples (*/reference.json) under ${root}`);
    process.exit(2);
  }
  let passed = 0;
  let failed = 0;
  for (const dir of samples) {
    const ref = readReference(dir);
    for (const check of [checkLogits, checkKv]) {
      if (await check(dir, ref)) passed++; else failed++;
    }
  }
  console.log(`onnx: ${passed} passed, ${failed} failed`);
  process.exit(failed === 0 ? 0 : 1);
}

await main();
