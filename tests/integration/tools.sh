# The subcommands around the RL job: sft (warm-up alone, checkpointed), eval (of a checkpoint),
# convert (checkpoint -> Hugging Face directory and llama2.c .bin, which then generate the same
# text as the checkpoint itself), and the errors a user meets with them.
. tests/integration/lib.sh
CFG=inputs/test_reverse.cfg
run=$TMP_ROOT/new/sft  # run.output_dir with a missing parent: created like mkdir -p

if job 3 sft $CFG --set run.output_dir="$run" --set sft.steps=120 >"$TMP_ROOT/sft.log" 2>&1 &&
    grep -q "^eval reward: " "$TMP_ROOT/sft.log" && [ -f "$run/checkpoints/step_000000.h5" ] && [ -f "$run/metrics.h5" ]; then
    ok "sft: the warm-up runs alone, is evaluated and checkpointed (output directory made with its parents)"
else
    not_ok "sft: the warm-up runs alone, is evaluated and checkpointed" "$(tail -3 "$TMP_ROOT/sft.log")"
fi
sft_reward=$(sed -n 's/^eval reward: //p' "$TMP_ROOT/sft.log")

if job 3 eval $CFG --set run.output_dir="$run" --set checkpoint.resume=latest >"$run.eval.log" 2>&1; then
    eval_reward=$(sed -n 's/^eval reward: //p' "$run.eval.log")
    [ -n "$eval_reward" ] && [ "$eval_reward" = "$sft_reward" ] && ok "eval of the checkpoint gives the same reward ($eval_reward)" ||
        not_ok "eval of the checkpoint gives the same reward" "sft $sft_reward, eval $eval_reward"
else
    not_ok "eval of the checkpoint" "$(tail -3 "$run.eval.log")"
fi

ck=$run/checkpoints/step_000000.h5
if "$BIN" convert "$ck" "$TMP_ROOT/hf" >/dev/null && "$BIN" convert "$ck" "$TMP_ROOT/m.bin" --format llama2c >/dev/null &&
    [ -f "$TMP_ROOT/hf/config.json" ] && [ -f "$TMP_ROOT/hf/model.safetensors" ]; then
    ok "convert: checkpoint to a Hugging Face directory and to a llama2.c file"
    a=$("$BIN" generate --model "$TMP_ROOT/hf" --tokenizer byte --prompt "rev hello=" --greedy -n 12 2>/dev/null)
    b=$("$BIN" generate --model "$TMP_ROOT/m.bin" --tokenizer byte --prompt "rev hello=" --greedy -n 12 2>/dev/null)
    [ -n "$a" ] && [ "$a" = "$b" ] && ok "both converted models generate the same text ($(echo "$a" | head -1))" ||
        not_ok "both converted models generate the same text" "hf: $a" "bin: $b"
    # generate reads the checkpoint itself, with the tokenizer of the config it was trained with.
    c=$("$BIN" generate --model "$ck" --prompt "rev hello=" --greedy -n 12 2>"$TMP_ROOT/err")
    [ -n "$c" ] && [ "$c" = "$a" ] && ok "generate from the checkpoint itself gives the same text" ||
        not_ok "generate from the checkpoint itself gives the same text" "checkpoint: $c" "hf: $a" "$(cat "$TMP_ROOT/err")"
    # config.json names the tokenizer's BOS and EOS (the byte tokenizer's 256 and 257), so that
    # transformers' generate stops at EOS.
    # (also from the .bin, which does not name its tokenizer: a byte-tokenizer vocabulary says it)
    "$BIN" convert "$TMP_ROOT/m.bin" "$TMP_ROOT/hf_from_bin" >/dev/null
    grep -q '"bos_token_id": 256,' "$TMP_ROOT/hf/config.json" && grep -q '"eos_token_id": 257,' "$TMP_ROOT/hf/config.json" &&
        grep -q '"eos_token_id": 257,' "$TMP_ROOT/hf_from_bin/config.json" && [ -f "$TMP_ROOT/hf/tokenizer.json" ] &&
        [ -f "$TMP_ROOT/hf_from_bin/tokenizer_config.json" ] &&
        ok "convert writes the tokenizer's BOS and EOS ids into config.json, and its tokenizer.json" ||
        not_ok "convert writes the tokenizer's BOS and EOS ids into config.json, and its tokenizer.json" "$(grep token_id "$TMP_ROOT/hf/config.json")" \
            "from the .bin: $(grep token_id "$TMP_ROOT/hf_from_bin/config.json")"
    # An HF input's tokenizer files travel with it; a --tokenizer of another vocabulary is refused.
    "$BIN" convert "$TMP_ROOT/hf" "$TMP_ROOT/hf_again" >/dev/null &&
        cmp -s "$TMP_ROOT/hf/tokenizer.json" "$TMP_ROOT/hf_again/tokenizer.json" &&
        ok "convert of an HF directory copies its tokenizer files" ||
        not_ok "convert of an HF directory copies its tokenizer files" "$(ls "$TMP_ROOT/hf_again")"
    if have_models; then
        "$BIN" convert "$TMP_ROOT/m.bin" "$TMP_ROOT/hf_wrong" --tokenizer "$MODELS/tok512.bin" >/dev/null 2>"$TMP_ROOT/err"
        [ $? = 2 ] && grep -q "tok512.bin has 512 tokens but the model's vocabulary has 259" "$TMP_ROOT/err" &&
            [ ! -e "$TMP_ROOT/hf_wrong" ] && ok "convert --tokenizer of another vocabulary is refused, nothing written" ||
            not_ok "convert --tokenizer of another vocabulary is refused" "$(cat "$TMP_ROOT/err")"
        # An HF directory of before, with only tokenizer.bin, gets its tokenizer.json made.
        mkdir -p "$TMP_ROOT/old_hf"
        "$BIN" convert "$MODELS/stories260K.bin" "$TMP_ROOT/old_hf/m" >/dev/null &&
            cp "$MODELS/tok512.bin" "$TMP_ROOT/old_hf/m/tokenizer.bin" &&
            "$BIN" convert "$TMP_ROOT/old_hf/m" "$TMP_ROOT/old_hf/n" >/dev/null && [ -f "$TMP_ROOT/old_hf/n/tokenizer.json" ] &&
            ok "convert of an HF directory with only tokenizer.bin writes its tokenizer.json" ||
            not_ok "convert of an HF directory with only tokenizer.bin writes its tokenizer.json" "$(ls "$TMP_ROOT/old_hf/n")"
    fi
    # A failure after the model is written leaves nothing behind (a rerun is not refused).
    mkdir -p "$TMP_ROOT/tok_dir_src" && cp "$TMP_ROOT/hf/config.json" "$TMP_ROOT/hf/model.safetensors" "$TMP_ROOT/tok_dir_src/" &&
        mkdir "$TMP_ROOT/tok_dir_src/tokenizer.json"
    "$BIN" convert "$TMP_ROOT/tok_dir_src" "$TMP_ROOT/tok_dir_out" >/dev/null 2>"$TMP_ROOT/err"
    [ $? = 1 ] && [ ! -e "$TMP_ROOT/tok_dir_out" ] && grep -q "tokenizer.json is a directory" "$TMP_ROOT/err" &&
        ok "a convert that fails after writing the model removes what it wrote" ||
        not_ok "a convert that fails after writing the model removes what it wrote" "$(cat "$TMP_ROOT/err")" \
            "$(ls "$TMP_ROOT/tok_dir_out" 2>&1)"
    "$BIN" convert "$TMP_ROOT/hf" "$TMP_ROOT/x.bin" --tokenizer byte >/dev/null 2>"$TMP_ROOT/err"
    [ $? = 2 ] && grep -q -- "--tokenizer is for a Hugging Face OUT" "$TMP_ROOT/err" && [ ! -e "$TMP_ROOT/x.bin" ] &&
        ok "convert --tokenizer with a .bin OUT is a usage error" ||
        not_ok "convert --tokenizer with a .bin OUT is a usage error" "$(cat "$TMP_ROOT/err")"
else
    not_ok "convert: checkpoint to a Hugging Face directory and to a llama2.c file"
fi
# convert never overwrites: a model already at OUT stays as it was (an empty directory is fine).
sum_before=$(cat "$TMP_ROOT/hf/model.safetensors" "$TMP_ROOT/m.bin" 2>/dev/null | cksum)
"$BIN" convert "$ck" "$TMP_ROOT/hf" >/dev/null 2>"$TMP_ROOT/err.hf"; rc_hf=$?
"$BIN" convert "$ck" "$TMP_ROOT/m.bin" --format llama2c >/dev/null 2>"$TMP_ROOT/err.bin"; rc_bin=$?
mkdir -p "$TMP_ROOT/empty_out"
if [ $rc_hf = 2 ] && [ $rc_bin = 2 ] && grep -q "hf already exists (a directory that is not empty).*remove it" "$TMP_ROOT/err.hf" &&
    grep -q "m.bin already exists (a file)" "$TMP_ROOT/err.bin" &&
    [ "$(cat "$TMP_ROOT/hf/model.safetensors" "$TMP_ROOT/m.bin" | cksum)" = "$sum_before" ] &&
    "$BIN" convert "$ck" "$TMP_ROOT/empty_out" >/dev/null 2>&1 && [ -f "$TMP_ROOT/empty_out/model.safetensors" ] &&
    "$BIN" convert "$ck" "$TMP_ROOT/auto.bin" >/dev/null 2>&1 && [ -f "$TMP_ROOT/auto.bin" ] &&
    cmp -s "$TMP_ROOT/auto.bin" "$TMP_ROOT/m.bin"; then
    ok "convert refuses an OUT that holds a model, leaving it as it was; an empty directory is fine; OUT.bin is llama2c"
else
    not_ok "convert refuses an OUT that holds a model" "hf rc $rc_hf: $(cat "$TMP_ROOT/err.hf")" "bin rc $rc_bin: $(cat "$TMP_ROOT/err.bin")"
fi
# Checkpoints are read without a file lock: a process holding one (as on a filesystem without
# locks, where taking one fails) does not make them unreadable.
if command -v flock >/dev/null 2>&1; then
    flock -x "$run/metrics.h5" flock -x "$ck" sleep 3 &
    holder=$!
    sleep 0.5
    "$BIN" convert "$ck" "$TMP_ROOT/locked.bin" --format llama2c >/dev/null 2>"$TMP_ROOT/err" &&
        "$BIN" report "$run" >/dev/null 2>>"$TMP_ROOT/err" &&
        ok "a checkpoint and metrics are readable while another process holds a lock on them" ||
        not_ok "a checkpoint and metrics are readable while another process holds a lock on them" "$(cat "$TMP_ROOT/err")"
    wait $holder  # (the locks go with it, before the next test reads the checkpoint)
else
    skip "a checkpoint and metrics are readable while another process holds a lock on them" "no flock command"
fi
# A new run from the checkpoint's weights (model.source = "checkpoint"): its greedy eval before
# RL is the one the warm-up ended with.
job 3 rl $CFG --set run.output_dir="$TMP_ROOT/from_ck" --set model.source=checkpoint --set model.path="$ck" \
    --set sft.steps=0 --set run.max_steps=1 >"$TMP_ROOT/from_ck.log" 2>&1
before=$(sed -n 's/^eval reward before RL: //p' "$TMP_ROOT/from_ck.log")
[ -n "$before" ] && [ "$before" = "$sft_reward" ] && ok "a new run from a checkpoint's weights starts where it ended ($before)" ||
    not_ok "a new run from a checkpoint's weights starts where it ended" "sft $sft_reward, new run $before" \
        "$(tail -3 "$TMP_ROOT/from_ck.log")"
# A checkpoint named where a llama2.c file belongs (model.source = "llama2c") says what it is.
job 3 rl $CFG --set run.output_dir="$TMP_ROOT/y" --set model.source=llama2c --set model.path="$ck" >"$TMP_ROOT/y.log" 2>&1
[ $? != 0 ] && grep -q "is an HDF5 file (an asyncrl checkpoint?), not a llama2.c .bin" "$TMP_ROOT/y.log" &&
    ok "a checkpoint given as a llama2.c model is named as such" ||
    not_ok "a checkpoint given as a llama2.c model is named as such" "$(tail -2 "$TMP_ROOT/y.log")"
# A checkpoint of a model with a llama2.c tokenizer (stories260K + tok512): generate reads it
# with that tokenizer, and convert copies the tokenizer into the HF directory for generate.
if have_models; then
    st=$TMP_ROOT/stories
    job 3 sft inputs/stories.cfg --set run.output_dir="$st" --set sft.steps=1 --set eval.problems=8 \
        --set model.path="\"$MODELS/stories260K.bin\"" --set model.tokenizer="\"$MODELS/tok512.bin\"" \
        >"$TMP_ROOT/stories.log" 2>&1
    sck=$st/checkpoints/step_000000.h5
    d=$("$BIN" generate --model "$sck" --prompt "Once upon a time" --greedy -n 12 2>"$TMP_ROOT/err")
    "$BIN" convert "$sck" "$TMP_ROOT/stories_hf" >"$TMP_ROOT/convert.log" 2>>"$TMP_ROOT/err"
    e=$("$BIN" generate --model "$TMP_ROOT/stories_hf" --prompt "Once upon a time" --greedy -n 12 2>>"$TMP_ROOT/err")
    case "$d" in "Once upon a time, "*) started=1 ;; *) started=0 ;; esac
    [ $started = 1 ] && [ "$d" = "$e" ] && cmp -s "$TMP_ROOT/stories_hf/tokenizer.bin" "$MODELS/tok512.bin" &&
        grep -q '"eos_token_id": 2,' "$TMP_ROOT/stories_hf/config.json" && [ -f "$TMP_ROOT/stories_hf/tokenizer.json" ] &&
        ok "a checkpoint with a llama2.c tokenizer: generate uses it, convert copies it ($d)" ||
        not_ok "a checkpoint with a llama2.c tokenizer: generate uses it, convert copies it" "checkpoint: $d" \
            "hf: $e" "$(cat "$TMP_ROOT/err" "$TMP_ROOT/convert.log")" "$(tail -3 "$TMP_ROOT/stories.log")"
else
    skip "a checkpoint with a llama2.c tokenizer: generate uses it, convert copies it" "no $MODELS/stories260K.bin"
fi
# A job Slurm requeued (SLURM_RESTART_COUNT > 0) waits for a lock its previous allocation may
# still hold, instead of failing.
rq=$TMP_ROOT/requeued
mkdir -p "$rq"
: >"$rq/.asyncrl.lock"
flock -x "$rq/.asyncrl.lock" sleep 3 &
holder=$!
sleep 0.3
SLURM_RESTART_COUNT=1 job 3 rl $CFG --set run.output_dir="$rq" --set sft.steps=0 --set run.max_steps=1 \
    >"$TMP_ROOT/requeued.log" 2>&1
rc=$?
wait $holder
[ $rc = 0 ] && grep -q "a requeued job: it waits up to" "$TMP_ROOT/requeued.log" &&
    ok "a requeued job waits for the run directory's lock" ||
    not_ok "a requeued job waits for the run directory's lock" "exit $rc" "$(grep -A1 '^error' "$TMP_ROOT/requeued.log")"
# eval of an earlier checkpoint of a run adds its rows to the run's metrics and cuts nothing:
# the run still reads 4 of 4 steps, with its own config.
ev=$TMP_ROOT/evalrun
job 3 rl $CFG --set run.output_dir="$ev" --set sft.steps=0 --set run.max_steps=4 --set checkpoint.interval=2 \
    >"$TMP_ROOT/evalrun.log" 2>&1
job 3 eval $CFG --set run.output_dir="$ev" --set checkpoint.resume=2 >"$TMP_ROOT/evalrun2.log" 2>&1
rc=$?
"$BIN" report "$ev" >"$TMP_ROOT/evalrun.report" 2>&1
[ $rc = 0 ] && grep -q "steps      4 of 4 done" "$TMP_ROOT/evalrun.report" &&
    ok "eval of a run's earlier checkpoint keeps the run's metrics whole" ||
    not_ok "eval of a run's earlier checkpoint keeps the run's metrics whole" "exit $rc" \
        "$(head -4 "$TMP_ROOT/evalrun.report")" "$(tail -3 "$TMP_ROOT/evalrun2.log")"
# metrics.h5 locked by another program (h5py holding it open, say): resuming says what the
# failed lock means instead of only printing HDF5's error stack.
flock -x "$ev/metrics.h5" sleep 3 &
holder=$!
sleep 0.3
job 3 rl $CFG --set run.output_dir="$ev" --set checkpoint.resume=latest --set run.max_steps=6 >"$TMP_ROOT/mlock.log" 2>&1
rc=$?
wait $holder
[ $rc != 0 ] && grep -q "cannot reopen metrics file $ev/metrics.h5" "$TMP_ROOT/mlock.log" &&
    grep -q "HDF5 could not lock the file: another process has it open" "$TMP_ROOT/mlock.log" &&
    ok "a metrics file locked by another program is a clear error" ||
    not_ok "a metrics file locked by another program is a clear error" "exit $rc" "$(grep -A1 '^error' "$TMP_ROOT/mlock.log")"
job 3 eval $CFG --set run.output_dir="$ev" >"$TMP_ROOT/evalrun3.log" 2>&1
rc=$?
[ $rc != 0 ] && grep -q "would replace that run's metrics.h5: evaluate its newest checkpoint" "$TMP_ROOT/evalrun3.log" &&
    ok "eval into a run's directory without naming a checkpoint is refused" ||
    not_ok "eval into a run's directory without naming a checkpoint is refused" "exit $rc" \
        "$(grep -A1 '^error' "$TMP_ROOT/evalrun3.log")"
# A new run (checkpoint.resume = "none") in a directory with an earlier run's checkpoints is
# refused before it writes anything: the two runs' checkpoints would mix.
sum_before=$(cksum <"$run/metrics.h5")
job 3 rl $CFG --set run.output_dir="$run" >"$TMP_ROOT/over.log" 2>&1
rc=$?
[ $rc != 0 ] && [ "$(cksum <"$run/metrics.h5")" = "$sum_before" ] &&
    grep -q "checkpoints holds the checkpoints of an earlier run (the newest: step 0)" "$TMP_ROOT/over.log" &&
    ok "a new run over an earlier run's checkpoints is refused, its metrics untouched" ||
    not_ok "a new run over an earlier run's checkpoints is refused, its metrics untouched" "exit $rc" \
        "$(grep -A1 '^error' "$TMP_ROOT/over.log")"
# Two jobs in one run.output_dir: the second stops at once, naming the first (host and pid),
# and leaves the first one's metrics alone; the first goes on. (The first has written
# checkpoints by then: the second is not told they are an earlier run's.)
busy=$TMP_ROOT/busy
sh scripts/mpirun.sh 3 "$BIN" rl $CFG --set run.output_dir="$busy" --set sft.steps=0 --set run.max_steps=100000 \
    --set checkpoint.interval=5 --set checkpoint.keep=1 >"$TMP_ROOT/busy_a.log" 2>&1 &
first=$!
i=0
while ! ls "$busy"/checkpoints/step_*.h5 >/dev/null 2>&1 && [ $i -lt 600 ]; do sleep 0.1; i=$((i + 1)); done
job 3 rl $CFG --set run.output_dir="$busy" --set run.max_steps=2 >"$TMP_ROOT/busy_b.log" 2>&1
rc=$?
size=$(stat -c %s "$busy/metrics.h5" 2>/dev/null || echo 0)
kill -0 $first 2>/dev/null && alive=1 || alive=0
kill -TERM $first 2>/dev/null
wait $first 2>/dev/null
[ $rc != 0 ] && [ $alive = 1 ] && [ "$size" -gt 0 ] &&
    grep -q "another job is writing to $busy (host .* pid [0-9]* holds $busy/.asyncrl.lock)" "$TMP_ROOT/busy_b.log" &&
    ok "a second job in the same run.output_dir stops at once, naming the first" ||
    not_ok "a second job in the same run.output_dir stops at once, naming the first" \
        "exit $rc, first alive $alive, metrics $size bytes" "$(grep -A1 '^error' "$TMP_ROOT/busy_b.log")"
# A resume from an earlier step (a rollback) moves the checkpoints of later steps aside: left in
# place, checkpoint.keep would prune the new run's own (3, then 2) ahead of them, and a later
# "latest" would resume the abandoned run's step 6.
rb=$TMP_ROOT/rollback
job 3 rl $CFG --set run.output_dir="$rb" --set run.max_steps=6 --set checkpoint.interval=2 --set checkpoint.at_end=true \
    --set checkpoint.keep=0 >"$rb.log" 2>&1
job 3 rl $CFG --set run.output_dir="$rb" --set run.max_steps=4 --set checkpoint.interval=1 --set checkpoint.at_end=true \
    --set checkpoint.keep=2 --set checkpoint.resume=2 >"$rb.resume.log" 2>&1
rc=$?
[ $rc = 0 ] && [ "$(ls "$rb/checkpoints" | tr '\n' ' ')" = "rolled_back_to_000002 step_000003.h5 step_000004.h5 " ] &&
    [ "$(ls "$rb/checkpoints/rolled_back_to_000002" | tr '\n' ' ')" = "step_000004.h5 step_000006.h5 " ] &&
    grep -q "rolling back to step 2: moved the 2 checkpoints of later steps to $rb/checkpoints/rolled_back_to_000002" \
        "$rb.resume.log" && ok "a resume from an earlier step moves the checkpoints of later steps aside" ||
    not_ok "a resume from an earlier step moves the checkpoints of later steps aside" "exit $rc" \
        "$(ls -R "$rb/checkpoints")" "$(grep -iE 'roll|removed|error' "$rb.resume.log")"
# A finished run extended by a resume keeps its evaluation at the checkpoint's step (that of its
# policy) and does not take a periodic one there again: evaluations at 0 2 4 (end), then 6 8.
ext=$TMP_ROOT/extend
job 3 rl $CFG --set run.output_dir="$ext" --set run.max_steps=4 --set eval.interval=2 --set checkpoint.at_end=true \
    >"$ext.log" 2>&1
job 3 rl $CFG --set run.output_dir="$ext" --set run.max_steps=8 --set eval.interval=2 --set checkpoint.resume=latest \
    >"$ext.resume.log" 2>&1
rc=$?
evals=$("$BIN" report "$ext" 2>&1 | awk '/^eval \(/ {on = 1; next} on && /^ *step/ {next} on && NF == 0 {on = 0} on {printf "%s ", $1}')
[ $rc = 0 ] && [ "$evals" = "0 2 4 6 8 " ] && ok "a resumed run keeps the evaluation at its checkpoint's step ($evals)" ||
    not_ok "a resumed run keeps the evaluation at its checkpoint's step" "exit $rc, evaluations at: $evals"
# A KV cache too small for the prompts: the orchestrator names the setting that limits a sample
# (it bounds samples by the engine's context too, so a multi-turn transcript cannot outgrow it).
kv=$TMP_ROOT/small_kv
job 3 rl $CFG --set run.output_dir="$kv" --set inference.max_seqs=8 --set inference.kv_blocks=8 \
    --set inference.kv_block_size=2 --set sft.steps=0 >"$kv.log" 2>&1
rc=$?
[ $rc != 0 ] && grep -q "leaves no room for a completion in a sample of at most 16 tokens (set by the KV cache: inference.kv_blocks = 8 x kv_block_size = 2)" "$kv.log" &&
    ok "a KV cache too small for the prompts is a clear error naming inference.kv_blocks" ||
    not_ok "a KV cache too small for the prompts is a clear error naming inference.kv_blocks" "exit $rc" "$(grep error "$kv.log")"
# Bad command lines of convert and report: exit 2, the mistake named, then the usage.
bad_args=0
while IFS='|' read -r args want; do
    # shellcheck disable=SC2086  # (the arguments are split on purpose)
    "$BIN" $args >/dev/null 2>"$TMP_ROOT/err"
    rc=$?
    if [ $rc != 2 ] || ! grep -qF -- "error: $want" "$TMP_ROOT/err" || ! grep -q "^usage:" "$TMP_ROOT/err"; then
        bad_args=1
        echo "# asyncrl $args: exit $rc, wanted 'error: $want': $(head -1 "$TMP_ROOT/err")"
    fi
done <<EOF
convert a b --format|--format needs a value: hf or llama2c
convert a b --format bin|--format 'bin' is not a format: use hf or llama2c
convert a b --frmat hf|unknown option '--frmat'
convert a|give where to write the model (OUT)
convert|give the model to convert (IN)
convert a b c|unexpected argument 'c'
report --bogus|unknown option '--bogus'
EOF
[ $bad_args = 0 ] && ok "convert and report: bad command lines name the mistake (exit 2)" ||
    not_ok "convert and report: bad command lines name the mistake (exit 2)"
help_bad=""
for c in check defaults rl sft eval convert generate report; do
    out=$("$BIN" $c --help 2>&1) && echo "$out" | grep -q "^usage: asyncrl $c" || help_bad="$help_bad $c"
done
[ -z "$help_bad" ] && ok "every command answers --help with its usage (exit 0)" ||
    not_ok "every command answers --help with its usage (exit 0)" "no usage from:$help_bad"
"$BIN" convert /nonexistent/model.bin "$TMP_ROOT/x" 2>"$TMP_ROOT/err"
[ $? != 0 ] && grep -q "/nonexistent/model.bin" "$TMP_ROOT/err" && ok "convert: a missing input is a clear error" ||
    not_ok "convert: a missing input is a clear error" "$(cat "$TMP_ROOT/err")"
job 3 sft $CFG --set run.output_dir="$TMP_ROOT/x" --set sft.steps=0 >"$TMP_ROOT/x.log" 2>&1
[ $? != 0 ] && grep -q "asyncrl sft needs sft.steps > 0" "$TMP_ROOT/x.log" && ok "sft without steps is a clear error" ||
    not_ok "sft without steps is a clear error" "$(tail -2 "$TMP_ROOT/x.log")"
: >"$TMP_ROOT/afile"
job 3 rl $CFG --set run.output_dir="$TMP_ROOT/afile/run" >"$TMP_ROOT/afile.log" 2>&1
rc=$?
[ "$rc" != 0 ] && grep -q "run.output_dir: cannot create directory $TMP_ROOT/afile/run" "$TMP_ROOT/afile.log" &&
    ok "an output directory that cannot be created is a clear error (exit $rc)" ||
    not_ok "an output directory that cannot be created is a clear error" "exit $rc" "$(grep error "$TMP_ROOT/afile.log")"
job 4 rl $CFG --set run.output_dir="$TMP_ROOT/y" >"$TMP_ROOT/y.log" 2>&1
rc=$?
[ "$rc" = 2 ] && grep -q "the job has 4 ranks but the config asks for 3" "$TMP_ROOT/y.log" && grep -q "mpirun -np 3" "$TMP_ROOT/y.log" &&
    ok "a world size that does not match ranks.* is a clear error before any work (exit 2)" ||
    not_ok "a world size that does not match ranks.* is a clear error" "exit $rc" "$(grep error "$TMP_ROOT/y.log")"

# The code environment inside the RL job: every sampled program is scored in the sandbox pool,
# asynchronously (the orchestrator's loop never waits for it).
if [ -x /usr/bin/python3 ]; then
    code=$TMP_ROOT/code
    if job 3 rl inputs/code.cfg --set run.output_dir="$code" --set model.dim=32 --set model.n_layers=1 \
        --set sft.steps=5 --set run.max_steps=2 --set orchestrator.batch_size=16 --set inference.max_tokens=48 \
        --set orchestrator.drop_zero_advantage=false --set eval.problems=2 --set eval.samples=1 \
        --set checkpoint.at_end=false >"$code.log" 2>&1 && grep -q "^step    1 " "$code.log"; then
        ok "code environment: an RL run scores its programs in the sandbox"
    else
        not_ok "code environment: an RL run scores its programs in the sandbox" "$(grep -iE 'error|warn' "$code.log" | head -3)"
    fi
else
    skip "code environment in the RL job" "/usr/bin/python3 is missing"
fi

# Problem pools: on a small problem space (short sorting lists repeat), solved problems join the
# easy pool and are mostly skipped; the pools survive a checkpoint and resume.
if /usr/bin/python3 -c 'import h5py' 2>/dev/null; then
    pool=$TMP_ROOT/pools
    POOLS="--set env.tasks=[sorting] --set env.sorting.min_len=2 --set env.sorting.max_len=3 --set env.sorting.max_value=5
           --set orchestrator.easy_threshold=1.0 --set orchestrator.easy_keep=0.2 --set orchestrator.batch_size=32
           --set checkpoint.interval=6"
    job 3 rl $CFG $POOLS --set run.output_dir="$pool" --set run.max_steps=12 >"$pool.log" 2>&1 || not_ok "pools run" "$(tail -3 "$pool.log")"
    /usr/bin/python3 - "$pool" <<'PYEOF'
import sys, h5py
run = sys.argv[1]
m = h5py.File(f"{run}/metrics.h5", "r")
easy, skipped = m["steps/pool_easy"][:], m["steps/problems_skipped"][:]
print(("ok" if easy[-1] > 0 and skipped.sum() > 0 else "not ok") +
      f" - pools: solved problems join the easy pool ({int(easy[-1])}) and are skipped ({int(skipped.sum())} times)")
with h5py.File(f"{run}/checkpoints/step_000006.h5", "r") as c:
    n = len(c["orchestrator/easy"])
print(("ok" if n > 0 else "not ok") + f" - pools: the checkpoint keeps the easy pool ({n} problems)")
PYEOF
    job 3 rl $CFG $POOLS --set run.output_dir="$pool" --set run.max_steps=14 --set checkpoint.resume=6 >"$pool.resume.log" 2>&1 &&
        grep -q "pools: [1-9][0-9]* easy" "$pool.resume.log" && ok "pools: a resumed run starts with the checkpoint's pools" ||
        not_ok "pools: a resumed run starts with the checkpoint's pools" "$(grep -i resum "$pool.resume.log" | head -2)"
fi
