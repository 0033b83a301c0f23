"""Checks a tokenizer.json written by asyncrl (src/model/hf_tokenizer.c) against our own encoder.

    python3 tests/check_hf_tokenizer.py DIR CASES

DIR holds tokenizer.json (and tokenizer_config.json); CASES is JSON lines {"text": ..., "ids": [...]}
with the ids our encoder gives (BOS first). Every text must encode to the same ids with the
Hugging Face `tokenizers` library and decode back to itself. When transformers is installed,
AutoTokenizer must load DIR and agree too (both ways). Exit status 0 when all agree, 1 when not, 77 when
`tokenizers` is not installed (the unit test then counts as skipped).
"""
import json
import sys


def main():
    try:
        import tokenizers
    except ImportError:
        print("# tokenizers is not installed (pip install tokenizers): skipped")
        return 77
    directory, cases_path = sys.argv[1], sys.argv[2]
    tok = tokenizers.Tokenizer.from_file(directory + "/tokenizer.json")
    tok.encode_special_tokens = True  # "</s>" in text is characters, as for our encoder
    cases = [json.loads(line) for line in open(cases_path, encoding="utf-8")]
    auto = None
    try:
        from transformers import AutoTokenizer
        auto = AutoTokenizer.from_pretrained(directory)
    except ImportError:
        pass
    bad = 0
    for case in cases:
        text, want = case["text"], case["ids"]
        got = tok.encode(text).ids
        back = tok.decode(got, skip_special_tokens=True)
        if got != want or back != text:
            bad += 1
            if bad <= 5:
                print(f"# {text!r}: ids {got[:16]} (ours {want[:16]}), decoded {back!r}")
        if auto is not None:
            ids = auto(text)["input_ids"]
            back = auto.decode(ids, skip_special_tokens=True)
            if ids != want or back != text:
                bad += 1
                if bad <= 5:
                    print(f"# AutoTokenizer: {text!r}: ids {ids[:16]} (ours {want[:16]}), decoded {back!r}")
    print(f"# {len(cases) - bad if bad <= len(cases) else 0} of {len(cases)} texts encode and decode alike")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
