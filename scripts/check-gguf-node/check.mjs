// Loads Lopper's GGUF exports in llama.cpp (node-llama-cpp's prebuilt CPU binary, no compiler) and compares with
// Lopper's own results written by dev.lopper.export.GgufSamples:
//   - prompt token ids: llama.cpp's tokenizer (BOS prepended when the GGUF says add_bos_token) = Lopper's;
//   - greedy continuation (f32 files): the same token ids as `lopper generate`;
//   - test-split perplexity (Lopper's protocol: non-overlapping windows, tokens 1..L-1 of each scored), relative
//     difference within the bound given for the file's dtype in reference.json.
// usage: node check.mjs OUT_DIR      (OUT_DIR/<model>/reference.json and OUT_DIR/<model>/<dtype>/model.gguf)
//        GGUF_DTYPES=f32,q8_0 to check only those files; GGUF_THREADS=n for llama.cpp's threads (default 1)
import { getLlama } from "node-llama-cpp";
import fs from "node:fs";
import path from "node:path";

const out = process.argv[2];
if (!out) {
    console.error("usage: node check.mjs OUT_DIR");
    process.exit(2);
}
const info = JSON.parse(fs.readFileSync(new URL("./node_modules/node-llama-cpp/llama/llama.cpp.info.json", import.meta.url)));
const llama = await getLlama({ gpu: false, build: "never", logLevel: "error" });
console.log(`node-llama-cpp ${JSON.parse(fs.readFileSync(new URL("./node_modules/node-llama-cpp/package.json", import.meta.url))).version}, llama.cpp ${info.tag} (${llama.buildType} build, gpu: ${llama.gpu})`);
let passed = 0, failed = 0;
const verdict = (ok) => { ok ? passed++ : failed++; return ok ? "OK" : "FAIL"; };
const same = (a, b) => a.length === b.length && a.every((x, i) => x === b[i]);

for (const name of fs.readdirSync(out).sort()) {
    const refFile = path.join(out, name, "reference.json");
    if (!fs.existsSync(refFile)) continue;
    const ref = JSON.parse(fs.readFileSync(refFile, "utf8"));
    for (const [dtype, bound] of Object.entries(ref.ppl_bounds)) {
        if (process.env.GGUF_DTYPES && !process.env.GGUF_DTYPES.split(",").includes(dtype)) continue;
        const file = path.join(out, name, dtype, "model.gguf");
        if (!fs.existsSync(file)) continue;
        const model = await llama.loadModel({ modelPath: file });
        // threads: 1 by default: on a shared or small machine llama.cpp's spinning worker threads slow down ~20x when
        // the cores are oversubscribed (GGUF_THREADS=n to change)
        const ctx = await model.createContext({ contextSize: ref.seq_len, batchSize: ref.seq_len, sequences: 1,
            threads: Number(process.env.GGUF_THREADS ?? 1) });
        const seq = ctx.getSequence();
        const tag = `${name}/${dtype}`;
        // prompt ids
        const ids = model.tokenize(ref.prompt);
        const prompt = (model.tokens.shouldPrependBosToken && model.tokens.bos != null) ? [model.tokens.bos, ...ids] : ids;
        console.log(`${tag}: prompt ids ${JSON.stringify(prompt)} vs Lopper ${JSON.stringify(ref.prompt_ids)} -> ${verdict(same(prompt, ref.prompt_ids))}`);
        // greedy continuation
        const gen = [];
        for await (const t of seq.evaluate(prompt, { temperature: 0 })) {
            gen.push(t);
            if (gen.length >= ref.greedy_ids.length) break;
        }
        const genOk = same(gen, ref.greedy_ids);
        const text = JSON.stringify(model.detokenize(gen));
        if (dtype === "f32") {
            console.log(`${tag}: greedy ${gen.length} tokens ${genOk ? "= Lopper's" : JSON.stringify(gen) + " vs Lopper " + JSON.stringify(ref.greedy_ids)} ${text} -> ${verdict(genOk)}`);
        } else {
            const n = gen.findIndex((t, i) => t !== ref.greedy_ids[i]);
            console.log(`${tag}: greedy ${genOk ? "= Lopper's" : "first differs at token " + n} ${text} (informational)`);
        }
        // perplexity
        await seq.clearHistory();
        const L = ref.seq_len;
        const windows = Math.floor(ref.ppl_ids.length / L);
        let nll = 0, count = 0;
        const t0 = Date.now();
        for (let w = 0; w < windows; w++) {
            const win = ref.ppl_ids.slice(w * L, (w + 1) * L);
            await seq.clearHistory();
            // log p(next) = logit(next) - max - log(sum exp(logit - max)), all over the full vocabulary, from llama.cpp's
            // raw logits: the default sampler here is greedy, which keeps every candidate, so totalLogitWeight is the
            // sum over the vocabulary; includeTop: 1 returns the max. Computed in C++, 2x faster than returning all
            // logits to JS (checked equal to the full log-softmax to 2e-6 relative on two windows).
            const res = await seq.controlledEvaluate(win.slice(0, L - 1).map((t, i) =>
                [t, { generateNext: { logits: { filter: { tokens: [win[i + 1]], includeTop: 1 } }, totalLogitWeight: true } }]));
            for (let i = 0; i < L - 1; i++) {
                const { logits, totalLogitWeight } = res[i].next;
                let max = -Infinity;
                for (const x of logits.values()) max = Math.max(max, x);
                nll -= logits.get(win[i + 1]) - max - Math.log(totalLogitWeight);
                count++;
            }
        }
        const ppl = Math.exp(nll / count);
        const rel = Math.abs(ppl - ref.ppl) / ref.ppl;
        console.log(`${tag}: perplexity ${ppl.toFixed(4)} vs Lopper ${ref.ppl.toFixed(4)} (${count} tokens, ${windows} windows of ${L}, ${((Date.now() - t0) / 1000).toFixed(1)} s): rel diff ${(100 * rel).toFixed(3)}% <= ${(100 * bound).toFixed(1)}% -> ${verdict(rel <= bound && count === ref.ppl_predicted)}`);
        await ctx.dispose();
        await model.dispose();
    }
}
console.log(`gguf: ${passed} passed, ${failed} failed`);
process.exit(failed === 0 && passed > 0 ? 0 : 1);
