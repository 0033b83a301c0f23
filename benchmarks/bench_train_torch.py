#!/usr/bin/env python3
"""The PyTorch twin of bench_train.c: one training step of transformers' LlamaForCausalLM
(fp32, CPU, default attention implementation) on rows of one sample each, with the same work
as asyncrl's step: logits, log_softmax at temperature 1, the logp of the targets and the
entropy (no_grad, as a logged metric), loss = -mean logp, backward, clip_grad_norm_(1.0),
AdamW (weight decay on matrices only), zero_grad.

    bench_train_torch.py SHAPE [rows] [seq_len] [steps] [threads]

Each step is timed alone and the median step counts, as in bench_train. Prints
"torch SHAPE TOKENS_PER_STEP TOKENS_PER_S MS_PER_STEP" like bench_train.
"""
import sys
import time

import torch
from transformers import LlamaConfig, LlamaForCausalLM

SHAPES = {
    "stories260K": dict(hidden_size=64, num_hidden_layers=5, num_attention_heads=8, num_key_value_heads=4,
                        intermediate_size=172, vocab_size=512, max_position_embeddings=512),
    "stories15M": dict(hidden_size=288, num_hidden_layers=6, num_attention_heads=6, num_key_value_heads=6,
                       intermediate_size=768, vocab_size=32000, max_position_embeddings=256),
}


def main():
    name = sys.argv[1]
    shape = SHAPES[name]
    rows = int(sys.argv[2]) if len(sys.argv) > 2 else 4
    seq = int(sys.argv[3]) if len(sys.argv) > 3 else shape["max_position_embeddings"]
    steps = int(sys.argv[4]) if len(sys.argv) > 4 else 5
    threads = int(sys.argv[5]) if len(sys.argv) > 5 else 2
    torch.set_num_threads(threads)
    torch.manual_seed(1)
    config = LlamaConfig(**shape, rms_norm_eps=1e-5, rope_theta=10000.0, tie_word_embeddings=True)
    model = LlamaForCausalLM(config).float()
    model.train()
    params = list(model.parameters())
    opt = torch.optim.AdamW([{"params": [p for p in params if p.ndim >= 2], "weight_decay": 0.01},
                             {"params": [p for p in params if p.ndim < 2], "weight_decay": 0.0}],
                            lr=1e-4, betas=(0.9, 0.999), eps=1e-8)
    gen = torch.Generator().manual_seed(7)
    tokens = torch.randint(0, shape["vocab_size"], (rows, seq), generator=gen)
    targets = torch.cat([tokens[:, 1:], torch.full((rows, 1), -1)], dim=1)
    mask = (targets >= 0).float()
    n = rows * seq
    warmup = 2
    times = []
    for step in range(warmup + steps):
        t0 = time.perf_counter()
        logits = model(input_ids=tokens).logits
        logprobs = torch.log_softmax(logits.float() / 1.0, dim=-1)
        logp = logprobs.gather(-1, targets.clamp(min=0)[..., None])[..., 0] * mask
        with torch.no_grad():
            entropy = -(logprobs.exp() * logprobs).sum(-1)
        loss = -logp.sum() / n
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        opt.zero_grad(set_to_none=False)
        del entropy
        if step >= warmup:
            times.append(time.perf_counter() - t0)
    median = sorted(times)[len(times) // 2]
    print(f"torch {name} {n} {n / median:.1f} {1e3 * median:.2f}")
    print(f"torch {name}: {rows} x {seq} tokens, {threads} threads, {torch.__version__}, attention "
          f"{model.config._attn_implementation}", file=sys.stderr)


if __name__ == "__main__":
    main()
