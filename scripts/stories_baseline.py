"""Baseline reward of the pretrained stories260K model on the `stories` environment.

Offline analysis only (never in the job's path). It dumps problems with build/env_probe, samples
continuations with its own small numpy implementation of the llama2.c model and tokenizer
(temperature 1, like inference.temperature's default), scores them with the C verifier through
env_probe, and prints the mean reward, the share of problems whose group of samples has reward
variance (what GRPO learns from), and the per-target rates.

    make && <build env_probe as in scripts/env_probe.c>
    python3 scripts/stories_baseline.py --problems 100 --samples 8 --max-tokens 64
"""
import argparse
import json
import struct
import subprocess

import numpy as np


def load_model(path):
    with open(path, "rb") as f:
        dim, hidden, n_layers, n_heads, n_kv, vocab, seq_len = struct.unpack("7i", f.read(28))
        data = np.frombuffer(f.read(), dtype=np.float32)
    shared = vocab > 0
    vocab = abs(vocab)
    hs = dim // n_heads
    kv_dim = n_kv * hs
    shapes = [("emb", (vocab, dim)), ("rms_att", (n_layers, dim)), ("wq", (n_layers, dim, dim)),
              ("wk", (n_layers, kv_dim, dim)), ("wv", (n_layers, kv_dim, dim)), ("wo", (n_layers, dim, dim)),
              ("rms_ffn", (n_layers, dim)), ("w1", (n_layers, hidden, dim)), ("w2", (n_layers, dim, hidden)),
              ("w3", (n_layers, hidden, dim)), ("rms_final", (dim,)), ("freq_re", (seq_len, hs // 2)),
              ("freq_im", (seq_len, hs // 2))]
    if not shared:
        shapes.append(("wcls", (vocab, dim)))
    w, at = {}, 0
    for name, shape in shapes:
        n = int(np.prod(shape))
        w[name] = data[at:at + n].reshape(shape)
        at += n
    if shared:
        w["wcls"] = w["emb"]
    cfg = dict(dim=dim, hidden=hidden, n_layers=n_layers, n_heads=n_heads, n_kv=n_kv, vocab=vocab, seq_len=seq_len)
    return cfg, w


def load_tokenizer(path, vocab):
    pieces, scores = [], []
    with open(path, "rb") as f:
        f.read(4)
        for _ in range(vocab):
            score, n = struct.unpack("fi", f.read(8))
            pieces.append(f.read(n))
            scores.append(score)
    return pieces, scores


def encode(text, pieces, scores):
    index = {p: i for i, p in enumerate(pieces)}
    ids = [index[b" "]]  # sentencepiece's dummy prefix
    for ch in text:
        b = ch.encode("utf-8")
        if b in index:
            ids.append(index[b])
        else:
            ids.extend(x + 3 for x in b)  # byte fallback
    while True:
        best, best_i = None, -1
        for i in range(len(ids) - 1):
            merged = pieces[ids[i]] + pieces[ids[i + 1]]
            j = index.get(merged)
            if j is not None and (best is None or scores[j] > scores[best]):
                best, best_i = j, i
        if best is None:
            return [1] + ids  # BOS
        ids[best_i:best_i + 2] = [best]


def decode(ids, pieces):
    out = b""
    for t in ids:
        p = pieces[t]
        if p.startswith(b"<0x") and p.endswith(b">") and len(p) == 6:
            p = bytes([int(p[3:5], 16)])
        out += p
    return out.decode("utf-8", errors="replace")


def rmsnorm(x, g):
    return x / np.sqrt((x * x).mean(-1, keepdims=True) + 1e-5) * g


def rope(x, pos, hs):  # x: (B, heads, hs), llama2.c's interleaved pairs
    i = np.arange(0, hs, 2)
    freq = 1.0 / (10000.0 ** (i / hs))
    c, s = np.cos(pos * freq), np.sin(pos * freq)
    x0, x1 = x[..., 0::2].copy(), x[..., 1::2].copy()
    out = np.empty_like(x)
    out[..., 0::2] = x0 * c - x1 * s
    out[..., 1::2] = x0 * s + x1 * c
    return out


def generate(cfg, w, prompt_ids, n, max_tokens, rng):
    """Samples n continuations of one prompt in a batch; returns lists of token ids."""
    D, H, KV, L = cfg["dim"], cfg["n_heads"], cfg["n_kv"], cfg["n_layers"]
    hs = D // H
    T = len(prompt_ids) + max_tokens
    kc = np.zeros((L, n, T, KV, hs), np.float32)
    vc = np.zeros((L, n, T, KV, hs), np.float32)
    out = [[] for _ in range(n)]
    done = np.zeros(n, bool)
    tok = np.full(n, prompt_ids[0])
    for pos in range(T - 1):
        x = w["emb"][tok]  # (n, D)
        for l in range(L):
            xb = rmsnorm(x, w["rms_att"][l])
            q = rope((xb @ w["wq"][l].T).reshape(n, H, hs), pos, hs)
            k = rope((xb @ w["wk"][l].T).reshape(n, KV, hs), pos, hs)
            kc[l, :, pos], vc[l, :, pos] = k, (xb @ w["wv"][l].T).reshape(n, KV, hs)
            keys = np.repeat(kc[l, :, :pos + 1], H // KV, axis=2)  # (n, t, H, hs)
            vals = np.repeat(vc[l, :, :pos + 1], H // KV, axis=2)
            att = np.einsum("nhd,nthd->nht", q, keys) / np.sqrt(hs)
            att = np.exp(att - att.max(-1, keepdims=True))
            att /= att.sum(-1, keepdims=True)
            x = x + np.einsum("nht,nthd->nhd", att, vals).reshape(n, D) @ w["wo"][l].T
            xb = rmsnorm(x, w["rms_ffn"][l])
            a, b = xb @ w["w1"][l].T, xb @ w["w3"][l].T
            x = x + (a / (1 + np.exp(-a)) * b) @ w["w2"][l].T
        if pos + 1 < len(prompt_ids):
            tok = np.full(n, prompt_ids[pos + 1])
            continue
        logits = rmsnorm(x, w["rms_final"]) @ w["wcls"].T
        p = np.exp(logits - logits.max(-1, keepdims=True))
        p /= p.sum(-1, keepdims=True)
        tok = np.array([rng.choice(len(pi), p=pi) for pi in p])
        for i in range(n):
            if not done[i]:
                if tok[i] in (1, 2):  # BOS starts the next story, EOS ends this one
                    done[i] = True
                else:
                    out[i].append(int(tok[i]))
        if done.all() or len(out[0]) >= max_tokens and all(len(o) >= max_tokens or d for o, d in zip(out, done)):
            break
    return out


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default="../shared/models/stories260K.bin")
    ap.add_argument("--tokenizer", default="../shared/models/tok512.bin")
    ap.add_argument("--probe", default="build/env_probe")
    ap.add_argument("--problems", type=int, default=100)
    ap.add_argument("--samples", type=int, default=8)
    ap.add_argument("--max-tokens", type=int, default=64)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--show", type=int, default=3)
    args = ap.parse_args()
    cfg, w = load_model(args.model)
    pieces, scores = load_tokenizer(args.tokenizer, cfg["vocab"])
    dump = subprocess.run([args.probe, "dump", "stories", "train", str(args.problems)], check=True,
                          capture_output=True, text=True).stdout
    problems = [json.loads(line) for line in dump.splitlines()]
    rng = np.random.default_rng(args.seed)
    lines = []
    for prob in problems:
        ids = encode(prob["prompt"], pieces, scores)
        for toks in generate(cfg, w, ids, args.samples, args.max_tokens, rng):
            lines.append(json.dumps({"index": prob["index"], "output": decode(toks, pieces)}))
    scored = subprocess.run([args.probe, "score", "stories", "train"], input="\n".join(lines) + "\n", check=True,
                            capture_output=True, text=True).stdout
    res = [json.loads(line) for line in scored.splitlines()]
    r = np.array([x["reward"] for x in res]).reshape(len(problems), args.samples)
    print(f"problems {len(problems)} x samples {args.samples}, max_tokens {args.max_tokens}")
    print(f"mean reward {r.mean():.3f}  (std over problems of group means {r.mean(1).std():.3f})")
    print(f"groups with reward variance (GRPO signal) {np.mean(r.std(1) > 0):.2f}")
    for key in ("name", "object", "format_ok", "words"):
        print(f"mean {key} {np.mean([x[key] for x in res]):.3f}")
    print(f"reward 1 share {np.mean(r == 1):.3f}, reward 0 share {np.mean(r == 0):.3f}")
    for i in range(min(args.show, len(lines))):
        ex = json.loads(lines[i * args.samples])
        print("---", problems[i]["prompt"], "|", ex["output"].replace("\n", " "), "|", res[i * args.samples]["reward"])


if __name__ == "__main__":
    main()
