# Faults a long run meets: non-finite steps (skipped, logged, the run ends after
# trainer.max_bad_steps in a row), a job killed while writing a checkpoint (the previous one
# stays intact and resume takes it), a damaged newest checkpoint, a checkpoint of another model
# shape, a missing checkpoint, and a disk that fills up (a file-size limit).
. tests/integration/lib.sh
PY=/usr/bin/python3
if ! $PY -c 'import h5py' 2>/dev/null; then skip "faults" "python3-h5py is missing (make deps installs it)"; exit 0; fi
CFG=inputs/test_reverse.cfg
BASE="--set sft.steps=20 --set orchestrator.batch_size=32 --set checkpoint.interval=1 --set checkpoint.keep=0 \
      --set checkpoint.at_end=true"

# 1. Non-finite gradients at steps 3, 4, 5 (injected): skipped, logged, the run stops with status 1.
a=$TMP_ROOT/nan
ASYNCRL_FAULT_NAN_STEPS=3,4,5 job 3 rl $CFG $BASE --set run.output_dir="$a" --set trainer.max_bad_steps=3 \
    --set run.max_steps=20 >"$a.log" 2>&1
rc=$?
[ "$rc" != 0 ] && grep -q "stopped the run after 3 steps in a row with a non-finite" "$a.log" &&
    grep -q "step 3: non-finite gradient; update skipped" "$a.log" && ok "non-finite steps are skipped and end the run" ||
    not_ok "non-finite steps are skipped and end the run" "exit $rc" "$(grep -E 'warn|error' "$a.log" | tail -3)"
$PY - "$a" <<'PYEOF'
import sys, h5py, numpy as np
run = sys.argv[1]
m = h5py.File(f"{run}/metrics.h5", "r")
skipped = m["steps/skipped"][:]
print(("ok" if list(np.nonzero(skipped)[0]) == [3, 4, 5] else "not ok") + f" - metrics.h5 marks steps 3, 4, 5 skipped ({skipped[:7]})")
def params(step):
    with h5py.File(f"{run}/checkpoints/step_{step:06d}.h5", "r") as f:
        return np.concatenate([f["model"][k][()].ravel() for k in sorted(f["model"])])
same = np.array_equal(params(3), params(6)) and not np.array_equal(params(2), params(3))
print(("ok" if same else "not ok") + " - skipped updates leave the weights as they were (checkpoints 3 and 6 equal)")
PYEOF

# 2. SIGKILL while writing the checkpoint of step 4: the job dies; resume takes step 3.
b=$TMP_ROOT/kill
ASYNCRL_FAULT_KILL_CHECKPOINT=4 job 3 rl $CFG $BASE --set run.output_dir="$b" --set run.max_steps=8 >"$b.log" 2>&1
rc=$?
[ "$rc" != 0 ] && [ -f "$b/checkpoints/step_000003.h5" ] && [ ! -f "$b/checkpoints/step_000004.h5" ] &&
    [ -f "$b/checkpoints/step_000004.h5.tmp" ] && ok "a job killed while writing a checkpoint leaves a partial temporary file only" ||
    not_ok "a job killed while writing a checkpoint leaves a partial temporary file only" "exit $rc" "$(ls "$b/checkpoints")"
job 3 rl $CFG $BASE --set run.output_dir="$b" --set run.max_steps=8 --set checkpoint.resume=latest >"$b.resume.log" 2>&1 &&
    grep -q "resuming from .*step_000003.h5" "$b.resume.log" && [ -f "$b/checkpoints/step_000008.h5" ] &&
    ok "resume takes the previous checkpoint and finishes the run" ||
    not_ok "resume takes the previous checkpoint and finishes the run" "$(grep -iE 'resum|error' "$b.resume.log" | head -3)"

# 3. The newest checkpoint damaged (truncated): skipped with a warning, the one before is used.
head -c 4000 "$b/checkpoints/step_000008.h5" >"$b/checkpoints/step_000009.h5"
job 3 rl $CFG $BASE --set run.output_dir="$b" --set run.max_steps=10 --set checkpoint.resume=latest >"$b.r2.log" 2>&1 &&
    grep -q "skipping checkpoint .*step_000009.h5" "$b.r2.log" && grep -q "resuming from .*step_000008.h5" "$b.r2.log" &&
    ok "a damaged newest checkpoint is skipped with a warning" ||
    not_ok "a damaged newest checkpoint is skipped with a warning" "$(grep -iE 'skip|resum|error' "$b.r2.log" | head -3)"

# 4. A checkpoint of another model shape: a clear error, non-zero exit, no crash.
job 3 rl $CFG $BASE --set run.output_dir="$b" --set run.max_steps=12 --set checkpoint.resume=latest \
    --set model.dim=32 >"$b.shape.log" 2>&1
rc=$?
[ "$rc" != 0 ] && grep -q "holds a different model" "$b.shape.log" && ! grep -qi "segmentation" "$b.shape.log" &&
    ok "resuming with another model shape is a clear error" ||
    not_ok "resuming with another model shape is a clear error" "exit $rc" "$(grep -i error "$b.shape.log" | head -2)"

# 5. A checkpoint step that does not exist; a run directory without checkpoints.
job 3 rl $CFG $BASE --set run.output_dir="$b" --set checkpoint.resume=77 >"$b.77.log" 2>&1
rc=$?
[ "$rc" = 2 ] && grep -q "step_000077.h5 does not exist" "$b.77.log" && ok "a missing checkpoint step is a clear error (exit 2)" ||
    not_ok "a missing checkpoint step is a clear error (exit 2)" "exit $rc" "$(grep -i error "$b.77.log" | head -2)"
c=$TMP_ROOT/fresh
job 3 rl $CFG $BASE --set run.output_dir="$c" --set run.max_steps=2 --set checkpoint.resume=latest >"$c.log" 2>&1 &&
    grep -q "no checkpoint in .*starting fresh" "$c.log" && ok "resume = latest in an empty directory starts fresh" ||
    not_ok "resume = latest in an empty directory starts fresh" "$(tail -3 "$c.log")"

# 6. A full disk: the run directory on a small tmpfs (in a private mount namespace). The first
# checkpoint fits, the next ones do not: each failure is reported, the run goes on, nothing
# half-written is left, and the run ends with status 1 because its final checkpoint failed.
d=$TMP_ROOT/full
mkdir -p "$d"
if ! unshare -m sh -c "mount -t tmpfs -o size=2600k tmpfs $d" 2>/dev/null; then
    skip "a full disk" "mounting a small tmpfs needs root and mount permission"
else
    unshare -m sh -c "mount -t tmpfs -o size=2600k tmpfs $d && sh scripts/mpirun.sh 3 $BIN rl $CFG $BASE \
        --set run.output_dir=$d --set run.max_steps=3 --set log.rollouts=false; echo exit=\$?; ls $d/checkpoints" \
        >"$d.log" 2>&1
    ls_out=$(sed -n '/^exit=/,$p' "$d.log" | tail -n +2)
    grep -q "^exit=0" "$d.log"; clean_exit=$?
    if [ "$clean_exit" != 0 ] && grep -q "checkpoint of step [0-9]* failed: .*disk full" "$d.log" &&
        ! grep -qi "segmentation\|core dumped" "$d.log" && ! echo "$ls_out" | grep -q tmp; then
        ok "a full disk: checkpoint failures are reported, nothing half-written is left ($(echo $ls_out))"
    else
        not_ok "a full disk: checkpoint failures are reported, nothing half-written is left" \
            "$(grep -iE 'error|fail|exit=' "$d.log" | head -4)" "$ls_out"
    fi
fi

# A job that ends with no final evaluation or checkpoint (here: max_dropped_groups) used to
# hang in about half of the runs: completions an inference rank had just sent, larger than
# MPI's eager limit, were never received, and that rank waited for them forever. Shutdown is a
# handshake now; three runs, each must end by itself (exit 1: the dropped-groups stop).
hung=0 codes=""
for i in 1 2 3; do
    h=$TMP_ROOT/shutdown$i
    timeout 60 sh scripts/mpirun.sh 3 "$BIN" rl inputs/reverse.cfg --set run.output_dir="$h" --set run.max_steps=50 \
        --set sft.steps=0 --set 'env.tasks=["arithmetic"]' --set orchestrator.max_dropped_groups=23 \
        --set eval.problems=0 --set checkpoint.at_end=false >"$h.log" 2>&1
    rc=$?
    codes="$codes $rc"
    [ $rc = 124 ] && hung=1
done
[ $hung = 0 ] && ok "a job stopping with completions in flight shuts down (exits:$codes)" ||
    not_ok "a job stopping with completions in flight shuts down" "exits:$codes (124: hung)"

# Stop signals and the run directory, with ranks found by their MPI rank in /proc (a tag in the
# environment keeps other jobs' processes out).
rank_pid() {  # TAG RANK: the pid of that rank of the job started with ASYNCRL_TEST_TAG=TAG
    for e in $(grep -lzx "ASYNCRL_TEST_TAG=$1" /proc/[0-9]*/environ 2>/dev/null); do
        if grep -qzx "OMPI_COMM_WORLD_RANK=$2" "$e" 2>/dev/null; then
            p=${e#/proc/}; echo "${p%/environ}"; return
        fi
    done
}
wait_for() {  # FILE PATTERN: up to 60 s for a line matching PATTERN in FILE
    i=0
    while ! grep -q "$2" "$1" 2>/dev/null && [ $i -lt 600 ]; do sleep 0.1; i=$((i + 1)); done
}
SIG_ARGS="--set sft.steps=0 --set orchestrator.batch_size=32 --set run.max_steps=100000 --set checkpoint.keep=0"

# A SIGUSR1 to one trainer rank alone stops the job as one to rank 0 would: the trainer passes
# it on. Before, the trainer's handler swallowed it and the run went on.
s=$TMP_ROOT/sig_trainer
ASYNCRL_TEST_TAG=trainer$$ sh scripts/mpirun.sh 3 "$BIN" rl $CFG $SIG_ARGS --set run.output_dir="$s" >"$s.log" 2>&1 &
pid=$!
wait_for "$s.log" "^step *3 "
kill -USR1 "$(rank_pid trainer$$ 1)"
timeout 60 tail --pid=$pid -f /dev/null; kill $pid 2>/dev/null
wait $pid
rc=$?
if [ $rc = 0 ] && grep -q "rank 1 received signal 10: the job stops" "$s.log" &&
    grep -q "stopped by signal 10 after [0-9]* steps; checkpoint step_[0-9]*.h5 written" "$s.log"; then
    ok "a stop signal to a trainer rank alone stops the job with a checkpoint"
else
    not_ok "a stop signal to a trainer rank alone stops the job with a checkpoint" "exit $rc" "$(tail -4 "$s.log")"
fi

# A stop at a boundary whose periodic checkpoint was already asked for writes it once.
s=$TMP_ROOT/sig_boundary
sh scripts/mpirun.sh 3 "$BIN" rl $CFG $SIG_ARGS --set checkpoint.interval=1 --set run.output_dir="$s" >"$s.log" 2>&1 &
pid=$!
wait_for "$s.log" "^step *3 "
kill -USR1 $pid
wait $pid
rc=$?
dups=$(grep -o "checkpoint of step [0-9]* written" "$s.log" | sort | uniq -d | tr '\n' ' ')
if [ $rc = 0 ] && [ -z "$dups" ] && grep -q "stopped by signal 10 after" "$s.log"; then
    ok "a stop signal at a checkpoint boundary writes that checkpoint once"
else
    not_ok "a stop signal at a checkpoint boundary writes that checkpoint once" "exit $rc, twice: $dups" "$(tail -3 "$s.log")"
fi

# A stop signal to every rank as soon as rank 0 has read the config stops the job cleanly (the
# handlers are installed before MPI starts; before, a rank still starting up was killed).
s=$TMP_ROOT/sig_start
ASYNCRL_TEST_TAG=start$$ sh scripts/mpirun.sh 3 "$BIN" rl $CFG $SIG_ARGS --set sft.steps=5 --set run.output_dir="$s" \
    >"$s.log" 2>&1 &
pid=$!
wait_for "$s.log" "^# asyncrl rl: resolved config"
for r in 0 1 2; do kill -USR1 "$(rank_pid start$$ $r)" 2>/dev/null; done
timeout 60 tail --pid=$pid -f /dev/null; kill $pid 2>/dev/null
wait $pid
rc=$?
[ $rc = 0 ] && grep -q "stopped by signal 10 \(during the warm-up\|after 0 steps\)" "$s.log" &&
    ok "a stop signal during start-up stops the job cleanly" ||
    not_ok "a stop signal during start-up stops the job cleanly" "exit $rc" "$(tail -4 "$s.log")"

# The run directory moved away (or deleted) under a running job: the job stops with an error
# naming it, and does not make the directory again (its metrics would go on into the moved
# file, and another job could take the directory).
s=$TMP_ROOT/sig_gone
sh scripts/mpirun.sh 3 "$BIN" rl $CFG $SIG_ARGS --set checkpoint.interval=2 --set run.output_dir="$s" >"$s.log" 2>&1 &
pid=$!
wait_for "$s.log" "^step *3 "
mv "$s" "$s.moved"
timeout 60 tail --pid=$pid -f /dev/null; kill $pid 2>/dev/null
wait $pid
rc=$?
if [ $rc != 0 ] && [ ! -e "$s" ] && grep -q "$s/.asyncrl.lock is gone or is another file: the run directory was deleted" "$s.log"; then
    ok "a run directory moved away under the job stops it with an error, and is not made again"
else
    not_ok "a run directory moved away under the job stops it with an error" "exit $rc, $(ls -d "$s" 2>&1)" \
        "$(grep -iE 'error|hint' "$s.log" | head -3)"
fi

# A checkpoint copied to another step's name, or with a negative counter, is refused with a
# clear error before anything in the run directory changes (it used to be resumed as the step
# its name says, after moving itself aside as "newer").
c=$TMP_ROOT/renamed
job 3 rl $CFG $BASE --set sft.steps=0 --set run.output_dir="$c" --set run.max_steps=2 >"$c.log" 2>&1
cp "$c/checkpoints/step_000001.h5" "$c/checkpoints/step_000005.h5"
job 3 rl $CFG $BASE --set sft.steps=0 --set run.output_dir="$c" --set run.max_steps=6 --set checkpoint.resume=latest \
    >"$c.resume.log" 2>&1
rc=$?
if [ $rc != 0 ] && grep -q "step_000005.h5 holds step 1, not the step 5 its name says" "$c.resume.log" &&
    [ -f "$c/checkpoints/step_000005.h5" ] && [ ! -d "$c/checkpoints/rolled_back_to_000001" ]; then
    ok "a checkpoint under another step's name is refused, nothing moved"
else
    not_ok "a checkpoint under another step's name is refused" "exit $rc" "$(grep -A1 '^error' "$c.resume.log" | head -3)"
fi
rm "$c/checkpoints/step_000005.h5"
refused_resume() {  # STEP LOG PATTERN NAME: a resume from STEP exits non-zero with PATTERN in LOG
    job 3 rl $CFG $BASE --set sft.steps=0 --set run.output_dir="$c" --set run.max_steps=6 \
        --set checkpoint.resume="$1" >"$2" 2>&1
    rc=$?
    [ $rc != 0 ] && grep -q "$3" "$2" && ok "$4" || not_ok "$4" "exit $rc" "$(grep -A1 '^error' "$2" | head -3)"
}
$PY -c "import h5py, sys; f = h5py.File(sys.argv[1], 'r+'); f.attrs['rr_rank'] = -5" "$c/checkpoints/step_000002.h5"
refused_resume 2 "$c.neg.log" "step_000002.h5: rr_rank = -5 is out of range: the file is damaged" \
    "a checkpoint with a negative counter is refused as damaged"
# A metrics.h5 whose /rollouts columns differ in length (damaged) is a clear error on resume,
# not a read past the end of a buffer.
$PY -c "
import h5py, sys
f = h5py.File(sys.argv[1], 'r+'); d = f['rollouts/step']; d.resize((d.shape[0] // 2,))" "$c/metrics.h5"
refused_resume 1 "$c.metrics.log" "metrics.h5 is damaged: its /rollouts columns differ in length" \
    "a damaged metrics.h5 (columns of different lengths) is a clear error on resume"
# A checkpoint whose weights hold a NaN is refused when loaded, naming the tensor.
cp "$c/checkpoints/step_000001.h5" "$TMP_ROOT/nan.h5"
$PY -c "
import h5py, sys
f = h5py.File(sys.argv[1], 'r+'); d = f['model'][sorted(f['model'])[0]]; a = d[()]; a.flat[0] = float('nan'); d[...] = a" \
    "$TMP_ROOT/nan.h5"
"$BIN" generate --model "$TMP_ROOT/nan.h5" --tokenizer byte -n 2 >/dev/null 2>"$TMP_ROOT/nan.err"
rc=$?
[ $rc != 0 ] && grep -q "nan.h5: weight .*\[0\] is nan: the file is damaged" "$TMP_ROOT/nan.err" &&
    ok "a checkpoint with a NaN weight is refused at load, naming the tensor" ||
    not_ok "a checkpoint with a NaN weight is refused at load" "exit $rc" "$(cat "$TMP_ROOT/nan.err")"
# A metrics.h5 that is not HDF5 (replaced by something else) is refused on resume as such, with
# no "not closed cleanly" on the way; a directory in its place is named as one, even for a fresh
# run; a llama2.c .bin given as model.source = checkpoint is named as not a checkpoint.
echo "not hdf5" >"$c/metrics.h5"
refused_resume 1 "$c.junk.log" "metrics.h5 is not an HDF5 file (damaged, or another file by that name)" \
    "a metrics.h5 that is not HDF5 is refused on resume as such"
grep -q "not closed cleanly" "$c.junk.log" && not_ok "no 'not closed cleanly' warning for a file that is not HDF5" ||
    ok "no 'not closed cleanly' warning for a file that is not HDF5"
m=$TMP_ROOT/metrics_dir
mkdir -p "$m/metrics.h5"
job 3 rl $CFG $BASE --set run.output_dir="$m" --set run.max_steps=2 >"$m.log" 2>&1
rc=$?
[ $rc != 0 ] && grep -q "metrics.h5 is a directory, not the run's metrics file" "$m.log" &&
    ok "a directory named metrics.h5 is refused by name" ||
    not_ok "a directory named metrics.h5 is refused by name" "exit $rc" "$(grep -A1 '^error' "$m.log" | head -2)"
printf 'llama2.c header, not HDF5' >"$TMP_ROOT/model.bin"
job 3 rl $CFG --set model.source=checkpoint --set model.path="$TMP_ROOT/model.bin" \
    --set run.output_dir="$TMP_ROOT/from_bin" >"$TMP_ROOT/from_bin.log" 2>&1
rc=$?
[ $rc != 0 ] && grep -q "model.bin is not a checkpoint (not an HDF5 file)" "$TMP_ROOT/from_bin.log" &&
    grep -q 'model.source = "llama2c"' "$TMP_ROOT/from_bin.log" &&
    ok "a .bin given as a checkpoint is named as not a checkpoint" ||
    not_ok "a .bin given as a checkpoint is named as not a checkpoint" "exit $rc" \
        "$(grep -A1 '^error' "$TMP_ROOT/from_bin.log" | head -2)"
