"""Damaged model files never crash `asyncrl generate`: each variant exits 2 with an "error:" line.

  bad_model_files.py BIN MODELS_DIR FIXTURES_DIR WORK_DIR

Variants (one TAP line per family): the llama2.c .bin truncated anywhere or with every header
field set to 0, -1, odd or huge values, or a NaN / infinite weight; the tokenizer truncated or with bad lengths; config.json
that is not JSON or has fields missing, of the wrong type or out of range; model.safetensors
truncated, with a bad header length or header, and with each kind of bad tensor entry. A
variant fails if the process dies of a signal, exits 0, or exits without saying "error".
"""
import json
import os
import struct
import subprocess
import sys

import tap

BIN, MODELS, FIXTURES, WORK = sys.argv[1:5]


def failure(args):
    """None if the run failed cleanly, else what went wrong."""
    env = dict(os.environ, OMP_NUM_THREADS="1")
    try:
        p = subprocess.run([BIN] + args, capture_output=True, text=True, errors="replace", timeout=60, env=env)
    except subprocess.TimeoutExpired:
        return "no answer in 60 s"
    if p.returncode < 0:
        return "killed by signal %d: %s" % (-p.returncode, p.stderr[-300:])
    if p.returncode == 0:
        return "exit 0"
    if "error" not in p.stderr:
        return "exit %d without an error message: %s" % (p.returncode, p.stderr[-300:])
    return None


def family(name, cases):
    """cases: (label, args) pairs; one TAP line for all of them."""
    bad = [(label, why) for label, args in cases for why in [failure(args)] if why]
    tap.report(not bad, "%s (%d damaged files)" % (name, len(cases)),
               "; ".join("%s: %s" % b for b in bad[:5]))


def put(path, data):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "wb") as f:
        f.write(data)
    return path


def generate(model, tokenizer):
    return ["generate", "--model", model, "--tokenizer", tokenizer, "-n", "4", "--seed", "1"]


def llama2c_cases(model, tok):
    cases = []
    for n in [0, 1, 27, 28, 100, len(model) // 2, len(model) - 1]:
        cases.append(("truncated to %d" % n, generate(put("%s/trunc%d.bin" % (WORK, n), model[:n]), tok)))
    cases.append(("7 trailing bytes", generate(put(WORK + "/long.bin", model + b"\0" * 7), tok)))
    header = list(struct.unpack("7i", model[:28]))
    for i, field in enumerate(["dim", "hidden", "layers", "heads", "kv_heads", "vocab", "seq_len"]):
        for v in [0, -1, 3, 1 << 30, 2**31 - 1, -2**31]:
            h = header.copy()
            h[i] = v
            f = put("%s/h_%s_%d.bin" % (WORK, field, v), struct.pack("7i", *h) + model[28:])
            cases.append(("%s = %d" % (field, v), generate(f, tok)))
    # Non-finite weights: a NaN in the first embedding row, an infinity in the first layer's
    # norm weights (just after the embedding table, vocab x dim floats).
    nan, inf = struct.pack("<f", float("nan")), struct.pack("<f", float("inf"))
    at = 28 + 4 * (header[5] * header[0] + 3)
    cases.append(("a NaN weight", generate(put(WORK + "/nan.bin", model[:28] + nan + model[32:]), tok)))
    cases.append(("an infinite weight", generate(put(WORK + "/inf.bin", model[:at] + inf + model[at + 4:]), tok)))
    return cases


def tokenizer_cases(model_path, tok):
    cases = []
    for n in [0, 3, 4, 5, 13, 100, len(tok) - 1]:
        cases.append(("truncated to %d" % n, generate(model_path, put("%s/tok%d.bin" % (WORK, n), tok[:n]))))
    for v in [-1, 0, 1 << 30]:
        f = put("%s/tokmax%d.bin" % (WORK, v), struct.pack("i", v) + tok[4:])
        cases.append(("max_token_length %d" % v, generate(model_path, f)))
    for v in [-1, 1 << 30]:
        f = put("%s/toklen%d.bin" % (WORK, v), tok[:8] + struct.pack("i", v) + tok[12:])
        cases.append(("first length %d" % v, generate(model_path, f)))
    return cases


def hf_dir(name, config_text, st):
    d = "%s/%s" % (WORK, name)
    put(d + "/config.json", config_text.encode())
    put(d + "/model.safetensors", st)
    return d


def config_cases(cfg, st):
    cases = []
    for i, text in enumerate(["", "{", "[]", "null", '{"hidden_size": }', json.dumps(cfg)[:-1]]):
        cases.append(("text %r" % text[:16], generate(hf_dir("cj%d" % i, text, st), "byte")))
    n = 0
    for key in ["hidden_size", "num_attention_heads", "num_hidden_layers", "vocab_size", "intermediate_size",
                "num_key_value_heads", "max_position_embeddings", "head_dim", "rms_norm_eps"]:
        for v in [0, -1, "x", 1.5, 1 << 40, [1]]:
            c = dict(cfg)
            c[key] = v
            n += 1
            cases.append(("%s = %r" % (key, v), generate(hf_dir("cv%d" % n, json.dumps(c), st), "byte")))
    for key in ["hidden_size", "num_attention_heads", "num_hidden_layers", "intermediate_size"]:
        c = dict(cfg)
        c.pop(key)
        cases.append(("no %s" % key, generate(hf_dir("cm_" + key, json.dumps(c), st), "byte")))
    return cases


def safetensors_cases(cfg, st):
    text = json.dumps(cfg)
    hlen = struct.unpack("<Q", st[:8])[0]
    header = json.loads(st[8:8 + hlen])
    cases = []
    for n in [0, 7, 8, 9, 8 + hlen // 2, 8 + hlen, len(st) - 1]:
        cases.append(("truncated to %d" % n, generate(hf_dir("st%d" % n, text, st[:n]), "byte")))
    for v in [0, 1 << 62, len(st), hlen + 1]:
        d = hf_dir("sth%d" % v, text, struct.pack("<Q", v) + st[8:])
        cases.append(("header length %d" % v, generate(d, "byte")))

    def with_header(h):
        body = json.dumps(h).encode()
        body += b" " * ((8 - len(body) % 8) % 8)
        return struct.pack("<Q", len(body)) + body + st[8 + hlen:]

    k0 = [k for k in header if k != "__metadata__"][0]
    edits = {
        "dtype F64": lambda h: h[k0].update(dtype="F64"),
        "unknown dtype": lambda h: h[k0].update(dtype="Q7"),
        "shape off by one": lambda h: h[k0].update(shape=[h[k0]["shape"][0] + 1] + h[k0]["shape"][1:]),
        "negative shape": lambda h: h[k0].update(shape=[-1] + h[k0]["shape"][1:]),
        "huge shape": lambda h: h[k0].update(shape=[1 << 31, 1 << 31]),
        "offsets reversed": lambda h: h[k0].update(data_offsets=h[k0]["data_offsets"][::-1]),
        "offsets past the end": lambda h: h[k0].update(data_offsets=[h[k0]["data_offsets"][0], 1 << 40]),
        "three offsets": lambda h: h[k0].update(data_offsets=[0, 1, 2]),
        "tensor missing": lambda h: h.pop(k0),
        "entry not an object": lambda h: h.update({k0: 5}),
    }
    for i, (label, edit) in enumerate(edits.items()):
        h = json.loads(json.dumps(header))
        edit(h)
        cases.append((label, generate(hf_dir("stm%d" % i, text, with_header(h)), "byte")))
    d = hf_dir("stj", text, struct.pack("<Q", 16) + b"{not json}      " + st[8 + hlen:])
    cases.append(("header not JSON", generate(d, "byte")))
    return cases


def main():
    base = FIXTURES + "/llama"
    with open(base + "/config.json") as f:
        cfg = json.load(f)
    with open(base + "/model.safetensors", "rb") as f:
        st = f.read()
    family("damaged config.json is a clear error", config_cases(cfg, st))
    family("damaged model.safetensors is a clear error", safetensors_cases(cfg, st))
    model_path, tok_path = MODELS + "/stories260K.bin", MODELS + "/tok512.bin"
    if not (os.access(model_path, os.R_OK) and os.access(tok_path, os.R_OK)):
        print("ok - damaged llama2.c model files # SKIP no %s" % model_path)
        print("ok - damaged tokenizer files # SKIP no %s" % tok_path)
        tap.finish()
    with open(model_path, "rb") as f:
        model = f.read()
    with open(tok_path, "rb") as f:
        tok = f.read()
    family("damaged llama2.c model files are a clear error", llama2c_cases(model, tok_path))
    family("damaged tokenizer files are a clear error", tokenizer_cases(model_path, tok))
    tap.finish()


main()
