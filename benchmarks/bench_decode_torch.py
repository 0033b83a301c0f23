#!/usr/bin/env python3
"""The PyTorch baseline of benchmarks/bench_decode.c: transformers' LlamaForCausalLM.generate
with its KV cache on CPU, same model shapes, same thread count, same workload: n sequences
with P-token random prompts, G new tokens each, sampled at temperature 1 (no stop tokens).
Reports decode tokens/s (batch * (G - 1) / (time of the G-token generate minus the time of a
1-token generate, which is the prefill and the first token)) and prefill tokens/s, the best of
R runs (the machine may be shared), one line per measurement like bench_decode:

    decode seqs=8 context=17..144 tok/s=123.4 (best of 2: 120.1 123.4)

Usage: python3 benchmarks/bench_decode_torch.py MODEL [--threads 2] [--seqs 1,8,64,256]
       [--prompt 16] [--new 128] [--prefill-seqs 8] [--repeat 2]
MODEL: a llama2.c .bin (converted to the HF layout by tests/fixtures/make_model_fixtures.py's
loader) or "stories15M-shape" (random weights, llama2.c's stories15M shape).
"""
import argparse
import os
import sys
import time

import torch
from transformers import LlamaConfig, LlamaForCausalLM

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "tests", "fixtures"))


def load(spec):
    if spec == "stories15M-shape":
        config = LlamaConfig(hidden_size=288, intermediate_size=768, num_hidden_layers=6, num_attention_heads=6,
                             num_key_value_heads=6, vocab_size=32000, max_position_embeddings=256,
                             rms_norm_eps=1e-5, rope_theta=10000.0, tie_word_embeddings=True)
        torch.manual_seed(1)
        model = LlamaForCausalLM(config).float()
        model.eval()
        return model
    from make_model_fixtures import load_llama2c
    return load_llama2c(spec)


def generate(model, n, prompt, new):
    ids = torch.randint(3, model.config.vocab_size, (n, prompt), generator=torch.Generator().manual_seed(n))
    with torch.no_grad():
        t0 = time.perf_counter()
        model.generate(ids, attention_mask=torch.ones_like(ids), do_sample=True, temperature=1.0, top_p=1.0,
                       top_k=0, max_new_tokens=new, min_new_tokens=new, use_cache=True, pad_token_id=0,
                       eos_token_id=None)
        return time.perf_counter() - t0


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("model")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--seqs", default="1,8,64,256")
    ap.add_argument("--prompt", type=int, default=16)
    ap.add_argument("--new", type=int, default=128)
    ap.add_argument("--prefill-seqs", type=int, default=8)
    ap.add_argument("--repeat", type=int, default=2)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    model = load(args.model)
    model.generation_config.eos_token_id = None
    ctx = model.config.max_position_embeddings
    new = min(args.new, ctx - args.prompt)
    params = sum(p.numel() for p in model.parameters())
    print(f"model {args.model} (transformers {__import__('transformers').__version__}, torch {torch.__version__}): "
          f"{params} parameters; {torch.get_num_threads()} threads", flush=True)
    generate(model, 1, args.prompt, 4)  # warm-up
    def report(label, runs):
        print(f"{label} tok/s={max(runs):.1f} (best of {len(runs)}: {' '.join(f'{r:.1f}' for r in runs)})",
              flush=True)

    for n in [int(x) for x in args.seqs.split(",")]:
        runs = []
        for _ in range(args.repeat):
            first = generate(model, n, args.prompt, 1)  # prefill + first token
            total = generate(model, n, args.prompt, new)
            runs.append(n * (new - 1) / (total - first))
        report(f"decode seqs={n} context={args.prompt + 1}..{args.prompt + new}", runs)
    if args.prefill_seqs > 0:
        prompt = ctx - 8
        runs = [args.prefill_seqs * prompt / generate(model, args.prefill_seqs, prompt, 1) for _ in range(args.repeat)]
        report(f"prefill seqs={args.prefill_seqs} prompt={prompt}", runs)


if __name__ == "__main__":
    main()
