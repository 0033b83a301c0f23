# `asyncrl generate` as a single process: greedy text of stories260K equals the continuation
# transformers wrote (tests/fixtures/infer/stories260K_generate.json, first case), it reports
# tok/s on stderr, an fp16 KV cache gives the same greedy opening, sampling with a seed is
# reproducible, and bad arguments are clear errors.
. tests/integration/lib.sh
out=$TMP_ROOT/out; err=$TMP_ROOT/err

expect_usage_error() {  # name, fragment, args...
    name=$1; frag=$2; shift 2
    "$BIN" generate "$@" >"$out" 2>"$err"
    rc=$?
    if [ "$rc" = 2 ] && grep -qF -- "$frag" "$err"; then ok "$name"; else not_ok "$name" "exit $rc" "$(cat "$err")"; fi
}
expect_usage_error "generate without --model" "--model is required"
expect_usage_error "generate with an unknown option" "unknown option '--bogus'" --model x --bogus 1
expect_usage_error "generate with an unknown option last" "unknown option '--bogus'" --model x --bogus
expect_usage_error "generate with an option lacking its value" "--top-p needs a value" --model x --top-p
expect_usage_error "generate with a bad temperature" "--temperature '-1' is not 0 (greedy) or a number" --model x --temperature -1
expect_usage_error "generate with a temperature too small to divide by" "--temperature '2e-38' is not 0 (greedy) or a number in [1e-06, 100]" --model x --temperature 2e-38
expect_usage_error "generate with a bad KV cache type" "--kv-cache 'bf16' is not a KV cache type: use fp32 or fp16" --model x --kv-cache bf16
expect_usage_error "generate with a missing model file" "/nonexistent.bin" --model /nonexistent.bin

if ! have_models; then
    skip "generate greedy text of stories260K" "no $MODELS/stories260K.bin"
    skip "generate with an fp16 KV cache" "no models"
    skip "generate with a seed is reproducible" "no models"
    exit 0
fi
M="$MODELS/stories260K.bin"; Z="$MODELS/tok512.bin"
expect_usage_error "generate a llama2.c model without a tokenizer beside it" "give --tokenizer" --model "$M"
expect_usage_error "generate with a tokenizer of another vocabulary" "the tokenizer has 259 tokens" --model "$M" --tokenizer byte

# The reference: the opening of the continuation transformers wrote (the fixture's first case).
want="Once upon a time, there was a little girl named Lily. She loved to play outside in the park."
if "$BIN" generate --model "$M" --tokenizer "$Z" --prompt "Once upon a time" --greedy -n 200 --threads 2 >"$out" 2>"$err" &&
    head -c ${#want} "$out" | grep -qxF "$want" && grep -q "achieved tok/s: [0-9]" "$err"; then
    ok "generate greedy text of stories260K"
else
    not_ok "generate greedy text of stories260K" "$(head -c 300 "$out")" "$(cat "$err")"
fi
# With an fp16 KV cache the greedy text of this prompt is the same (its logits move by ~1e-3).
if "$BIN" generate --model "$M" --tokenizer "$Z" --prompt "Once upon a time" --greedy -n 40 --kv-cache fp16 >"$out" 2>"$err" &&
    head -c ${#want} "$out" | grep -qxF "$want"; then
    ok "generate with an fp16 KV cache"
else
    not_ok "generate with an fp16 KV cache" "$(head -c 300 "$out")" "$(cat "$err")"
fi
"$BIN" generate --model "$M" --tokenizer "$Z" --seed 42 --temperature 0.8 --top-p 0.9 -n 60 >"$out" 2>/dev/null
"$BIN" generate --model "$M" --tokenizer "$Z" --seed 42 --temperature 0.8 --top-p 0.9 -n 60 >"$out.2" 2>/dev/null
"$BIN" generate --model "$M" --tokenizer "$Z" --seed 43 --temperature 0.8 --top-p 0.9 -n 60 >"$out.3" 2>/dev/null
if cmp -s "$out" "$out.2" && ! cmp -s "$out" "$out.3" && [ -s "$out" ]; then
    ok "generate with a seed is reproducible"
else
    not_ok "generate with a seed is reproducible" "$(cat "$out")" "$(cat "$out.2")" "$(cat "$out.3")"
fi
