# Datasets read from files (env.jsonl, sft.data): a prompt or warm-up example too long for a
# sample (sft.data = env's reference answers too) is found at start-up and named by FILE:LINE,
# not when it is first drawn, hours in; sft.data is read like env.jsonl (byte-order mark, blank
# and CRLF lines, aliases, a directory refused); an evaluation asking for more problems than the
# eval file holds scores each of them once.
. tests/integration/lib.sh
CFG=inputs/test_reverse.cfg
data=$TMP_ROOT/data.jsonl
# 40 short questions (about 4 held out by the hash split), one of them (line 18) too long for
# model.max_seq_len = 64.
/usr/bin/python3 - "$data" <<'PYEOF'
import json, sys
with open(sys.argv[1], "w") as f:
    for i in range(40):
        p = "What is %d plus %d?" % (i, i + 1)
        if i == 17:
            p = "word " * 40 + p
        f.write(json.dumps({"prompt": p, "answer": str(2 * i + 1)}) + "\n")
PYEOF
JSONL="--set env.tasks=[jsonl] --set env.jsonl.path=$data --set env.jsonl.match=numeric --set sft.steps=0"

# 1. A prompt too long: the job stops before any rollout, naming the line.
run=$TMP_ROOT/long
job 3 rl $CFG $JSONL --set run.output_dir="$run" >"$run.log" 2>&1
rc=$?
if [ $rc != 0 ] && grep -q "environment jsonl: 1 of its [0-9]* [a-z]* prompts leave no room for a completion" "$run.log" &&
    grep -qF "$data:18 (" "$run.log" && grep -q "set by the model's max_seq_len" "$run.log" &&
    ! grep -q "^step " "$run.log"; then
    ok "a jsonl prompt too long is an error at start-up naming FILE:LINE"
else
    not_ok "a jsonl prompt too long is an error at start-up naming FILE:LINE" "exit $rc" "$(grep -A1 error "$run.log" | head -3)"
fi

# 2. Without it: more eval problems asked for than the eval split holds are each scored once.
grep -v '"word word' "$data" >"$data.ok"
run=$TMP_ROOT/eval
job 3 rl $CFG --set env.tasks=[jsonl] --set env.jsonl.path="$data.ok" --set env.jsonl.match=numeric \
    --set sft.steps=0 --set run.output_dir="$run" --set run.max_steps=0 --set eval.problems=16 \
    --set eval.samples=1 >"$run.log" 2>&1
rc=$?
n_eval=$(sed -n 's/^eval (final.*| \([0-9]*\) problems$/\1/p' "$run.log")
if [ $rc = 0 ] && [ -n "$n_eval" ] && [ "$n_eval" -lt 16 ] && [ "$n_eval" -ge 1 ] &&
    grep -q "eval.problems = 16 picks environment jsonl 16 times, but its eval split holds $n_eval problems" "$run.log"; then
    ok "an evaluation scores each of the $n_eval eval problems once (16 asked for) and says so"
else
    not_ok "an evaluation scores each eval problem once" "exit $rc, eval problems '$n_eval'" "$(grep -iE 'warn|error|^eval' "$run.log" | head -3)"
fi

# 2b. A job that only evaluates (run.max_steps = 0) does not draw train prompts: the long one
# of line 18 does not stop it when the eval split is a file of its own.
head -n 5 "$data.ok" >"$data.eval"
run=$TMP_ROOT/eval_only
job 3 rl $CFG $JSONL --set env.jsonl.eval_path="$data.eval" --set run.output_dir="$run" --set run.max_steps=0 \
    --set eval.problems=4 --set eval.samples=0 >"$run.log" 2>&1
rc=$?
[ $rc = 0 ] && grep -q "^eval (final.*| 4 problems$" "$run.log" &&
    ok "an evaluation alone is not stopped by a train prompt too long" ||
    not_ok "an evaluation alone is not stopped by a train prompt too long" "exit $rc" "$(grep -A1 error "$run.log" | head -3)"

# 3. sft.data: an example too long is found before the warm-up, named by FILE:LINE.
sft=$TMP_ROOT/sft.jsonl
printf '\357\273\277{"prompt": "a b", "completion": "b a"}\n   \n{"question": "c d", "answer": "d c"}\r\n' >"$sft"
/usr/bin/python3 -c 'import json; print(json.dumps({"prompt": "x " * 60, "completion": "y"}))' >>"$sft"
run=$TMP_ROOT/sft_long
job 3 sft $CFG --set sft.data="$sft" --set sft.steps=2 --set run.output_dir="$run" >"$run.log" 2>&1
rc=$?
if [ $rc != 0 ] && grep -q "sft.data: 1 of 3 warm-up examples do not fit in a sample of at most" "$run.log" &&
    grep -qF "$sft:4 (" "$run.log" && ! grep -q "^sft step" "$run.log"; then
    ok "an sft.data example too long is an error before the warm-up, naming FILE:LINE"
else
    not_ok "an sft.data example too long is an error before the warm-up" "exit $rc" "$(grep -A1 error "$run.log" | head -3)"
fi

# 4. Without it, the byte-order mark, the blank line, CRLF and the aliases are all read.
head -n 3 "$sft" >"$sft.ok"
run=$TMP_ROOT/sft_ok
if job 3 sft $CFG --set sft.data="$sft.ok" --set sft.steps=2 --set run.output_dir="$run" >"$run.log" 2>&1 &&
    grep -q "SFT warm-up: 2 steps of [0-9]* samples from .* (2 examples)" "$run.log"; then
    ok "sft.data reads a byte-order mark, blank and CRLF lines, and question/answer aliases"
else
    not_ok "sft.data reads a byte-order mark, blank and CRLF lines and aliases" "$(grep -A1 error "$run.log" | head -3)"
fi

# 5. Bad sft.data files: a directory, an empty prompt, a NUL, a file of blank lines.
bad_sft() {  # name, file, fragment
    run=$TMP_ROOT/sft_bad
    rm -rf "$run"
    job 3 sft $CFG --set sft.data="$2" --set sft.steps=2 --set run.output_dir="$run" >"$run.log" 2>&1
    rc=$?
    if [ $rc != 0 ] && grep -qF -- "$3" "$run.log"; then ok "sft.data: $1"; else
        not_ok "sft.data: $1" "exit $rc" "$(grep -A1 error "$run.log" | head -3)"; fi
}
mkdir -p "$TMP_ROOT/dir"
bad_sft "a directory is refused" "$TMP_ROOT/dir" "is a directory, not a file"
printf '{"prompt": "a", "completion": "b"}\n{"prompt": "", "completion": "b"}\n' >"$TMP_ROOT/empty.jsonl"
bad_sft "an empty prompt is refused with its line" "$TMP_ROOT/empty.jsonl" "empty.jsonl:2: \"prompt\" must be a non-empty string"
printf '{"prompt": "a\\u0000b", "completion": "b"}\n' >"$TMP_ROOT/nul.jsonl"
bad_sft "a NUL character is refused" "$TMP_ROOT/nul.jsonl" "nul.jsonl:1: \"prompt\" must be a non-empty string without NUL"
printf '\n  \n\r\n' >"$TMP_ROOT/blank.jsonl"
bad_sft "a file of blank lines holds no examples" "$TMP_ROOT/blank.jsonl" "blank.jsonl holds no examples"

# 6. sft.data = env: a reference answer of a file environment too long for a sample is found
# before the warm-up too, named by FILE:LINE (here line 3 of a jsonl file).
ans=$TMP_ROOT/answers.jsonl
/usr/bin/python3 - "$ans" <<'PYEOF'
import json, sys
with open(sys.argv[1], "w") as f:
    for i in range(30):
        f.write(json.dumps({"prompt": "say %d" % i, "answer": ("x " * 50 if i == 2 else str(i))}) + "\n")
PYEOF
run=$TMP_ROOT/sft_env
job 3 sft $CFG --set env.tasks=[jsonl] --set env.jsonl.path="$ans" --set sft.steps=2 --set run.output_dir="$run" \
    >"$run.log" 2>&1
rc=$?
if [ $rc != 0 ] && grep -q "environment jsonl: 1 of [0-9]* warm-up examples do not fit" "$run.log" &&
    grep -qF "$ans:3 (" "$run.log" && ! grep -q "^sft step" "$run.log"; then
    ok "sft.data = env: a reference answer too long is an error before the warm-up, naming FILE:LINE"
else
    not_ok "sft.data = env: a reference answer too long is an error before the warm-up" "exit $rc" \
        "$(grep -A1 error "$run.log" | head -3)"
fi
