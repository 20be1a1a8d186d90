// llama.cpp speed of GGUF exports (docs/BENCHMARKS.md, "Export: llama.cpp vs ONNX Runtime"), measured as
// OnnxBenchmark measures ONNX Runtime so the two can be put side by side:
//   - prefill: batch 1 x 128 tokens on an empty cache (llama.cpp computes logits for the last token only);
//   - decode: one token on a cache of 128 (the token is erased from the cache after each step, so every step sees 128);
//   - 1 thread; time = this process's CPU time (llama.cpp computes on one worker thread while JS waits), wall time
//     also printed; rounds interleaved over the models, medians.
// usage: node speed.mjs ROUNDS ORT_REPORT_JSON|- NAME=model.gguf...     (the first model is the baseline)
import { getLlama } from "node-llama-cpp";
import fs from "node:fs";

const [roundsArg, ortFile, ...specs] = process.argv.slice(2);
if (!roundsArg || !ortFile || specs.length === 0) {
    console.error("usage: node speed.mjs ROUNDS ORT_REPORT_JSON|- NAME=model.gguf...");
    process.exit(2);
}
const PREFILL = 128, ROUNDS = Number(roundsArg), PREFILL_CALLS = 3, DECODE_CALLS = 30;
const ort = ortFile === "-" ? null : JSON.parse(fs.readFileSync(ortFile, "utf8"));
const llama = await getLlama({ gpu: false, build: "never", logLevel: "error" });
const info = JSON.parse(fs.readFileSync(new URL("./node_modules/node-llama-cpp/llama/llama.cpp.info.json", import.meta.url)));
const cpuMs = () => { const u = process.cpuUsage(); return (u.user + u.system) / 1000; };

const models = [];
for (const spec of specs) {
    const [name, file] = spec.split("=");
    const model = await llama.loadModel({ modelPath: file });
    const ctx = await model.createContext({ contextSize: 256, batchSize: PREFILL, sequences: 1, threads: 1 });
    // a fixed pseudo-random prompt over the first 4000 ids (the timing does not depend on which tokens)
    const ids = Array.from({ length: PREFILL }, (_, i) => (i * 7919 + 13) % 4000);
    models.push({ name, file, bytes: fs.statSync(file).size, seq: ctx.getSequence(), ids, prefill: [], decode: [], prefillWall: [], decodeWall: [] });
}

/** Mean [cpu ms, wall ms] of n calls of f, with setup (untimed) before each. */
async function timed(n, setup, f) {
    let cpu = 0, wall = 0;
    for (let i = 0; i < n; i++) {
        await setup();
        const c0 = cpuMs(), w0 = performance.now();
        await f();
        cpu += cpuMs() - c0;
        wall += performance.now() - w0;
    }
    return [cpu / n, wall / n];
}

const prefill = (m) => timed(PREFILL_CALLS, () => m.seq.clearHistory(),
    () => m.seq.controlledEvaluate([...m.ids.slice(0, -1), [m.ids[PREFILL - 1], { generateNext: { token: true } }]]));
async function decode(m) {
    await m.seq.clearHistory();
    await m.seq.controlledEvaluate(m.ids);
    return timed(DECODE_CALLS, async () => {
        if (m.seq.nextTokenIndex > PREFILL) await m.seq.eraseContextTokenRanges([{ start: PREFILL, end: m.seq.nextTokenIndex }]);
    }, () => m.seq.controlledEvaluate([[5, { generateNext: { token: true } }]]));
}

for (const m of models) { await prefill(m); await decode(m); } // warm-up
for (let r = 0; r < ROUNDS; r++) {
    for (const m of models) {
        const [pc, pw] = await prefill(m);
        const [dc, dw] = await decode(m);
        m.prefill.push(pc); m.prefillWall.push(pw); m.decode.push(dc); m.decodeWall.push(dw);
    }
}
const median = (a) => { const s = [...a].sort((x, y) => x - y); const h = s.length >> 1; return s.length % 2 ? s[h] : (s[h - 1] + s[h]) / 2; };
const f = (x, d = 1) => x.toFixed(d);
console.log(`llama.cpp ${info.tag} (node-llama-cpp, prebuilt CPU build), 1 thread, ${ROUNDS} interleaved rounds, medians of process CPU time (wall time in brackets); ` +
    `prefill ${PREFILL} tokens, decode 1 token on a cache of ${PREFILL}${ort ? `; ${ort.runtime} from ${ortFile} (${ort.clock} time)` : ""}\n`);
console.log("| model | model.gguf | llama.cpp prefill ms | prefill tok/s | llama.cpp decode ms/token | decode tok/s | prefill speed-up | decode speed-up |" +
    (ort ? " ORT prefill ms | ORT decode ms | llama.cpp / ORT prefill tok/s | llama.cpp / ORT decode tok/s |" : ""));
console.log("|---|---|---|---|---|---|---|---|" + (ort ? "---|---|---|---|" : ""));
const base = models[0];
for (const m of models) {
    const p = median(m.prefill), d = median(m.decode);
    let row = `| ${m.name} | ${f(m.bytes / 1048576)} MiB | ${f(p)} (${f(median(m.prefillWall))}) | ${f(PREFILL / p * 1000, 0)} | ${f(d, 2)} (${f(median(m.decodeWall), 2)}) | ${f(1000 / d, 0)} | ` +
        `${f(median(base.prefill) / p, 2)}x | ${f(median(base.decode) / d, 2)}x |`;
    if (ort && ort[m.name]) {
        const o = ort[m.name];
        row += ` ${f(o.prefill_ms)} | ${f(o.decode_ms, 2)} | ${f(o.prefill_ms / p, 2)}x | ${f(o.decode_ms / d, 2)}x |`;
    }
    console.log(row);
}
console.log("\nPer-round llama.cpp CPU ms, prefill / decode:");
for (const m of models) console.log(`- ${m.name}: ${m.prefill.map((x) => f(x)).join(" ")} / ${m.decode.map((x) => f(x, 2)).join(" ")}`);
process.exit(0);
