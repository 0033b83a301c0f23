# `asyncrl check` on bad configs: each error names the key, file and line, and exits with 2.
. tests/integration/lib.sh
cfg=$TMP_ROOT/bad.cfg

expect_error() {  # name, config text, fragment...
    name=$1; text=$2; shift 2
    printf '%s\n' "$text" >"$cfg"
    "$BIN" check "$cfg" >"$TMP_ROOT/out" 2>"$TMP_ROOT/err"
    rc=$?
    if [ "$rc" != 2 ]; then not_ok "$name" "exit status $rc, expected 2"; return; fi
    for frag in "$@"; do
        if ! grep -qF -- "$frag" "$TMP_ROOT/err"; then not_ok "$name" "stderr lacks '$frag':" "$(cat "$TMP_ROOT/err")"; return; fi
    done
    ok "$name"
}

expect_error "typo in a key" 'trainer = { lrr = 0.1; };' "bad.cfg:1" "unknown key 'trainer.lrr'" "did you mean 'trainer.lr'"
expect_error "wrong type" 'run = {
  max_steps = "ten";
};' "bad.cfg:2" "run.max_steps" "expected an integer"
expect_error "out of range" 'loss = { mask_low = 2.0; };' "loss.mask_low = 2" "out of range" "[0, 1]"
expect_error "batch not divisible by group" 'orchestrator = { batch_size = 30; group_size = 8; };' "not a multiple" "batch_size = 32"
expect_error "syntax error" 'run = { seed = ; };' "bad.cfg:1: syntax error near \`run = { seed = ; };\`"
expect_error "syntax error: a quote left open" 'run = { output_dir = "x; };
ranks = { trainers = 1; };' "bad.cfg:3: syntax error" "a quote or brace left open above"
expect_error "KV cache smaller than max_seqs" 'inference = { kv_blocks = 8; max_seqs = 16; };' \
    "inference.kv_blocks = 8 (" "bad.cfg:1) is smaller than inference.max_seqs = 16"
expect_error "empty run directory" 'run = { output_dir = ""; };' "run.output_dir (" "bad.cfg:1) is empty"

printf 'run = { seed = 5; };\n' >"$cfg"
if "$BIN" check "$cfg" --set trainer.lr=abc >/dev/null 2>"$TMP_ROOT/err"; then
    not_ok "bad --set value" "exit status 0"
else
    [ $? = 2 ] && grep -q -- "--set trainer.lr" "$TMP_ROOT/err" && ok "bad --set value" || not_ok "bad --set value" "$(cat "$TMP_ROOT/err")"
fi
if "$BIN" check "$cfg" --set ranks.trainers=2 >"$TMP_ROOT/out" 2>&1 && grep -q "trainers = 2" "$TMP_ROOT/out" &&
    grep -q "mpirun -np 4" "$TMP_ROOT/out" && grep -q "config OK" "$TMP_ROOT/out"; then
    ok "check prints the resolved config and the rank layout"
else
    not_ok "check prints the resolved config and the rank layout" "$(cat "$TMP_ROOT/out")"
fi
"$BIN" check /nonexistent.cfg 2>"$TMP_ROOT/err"
[ $? = 2 ] && grep -q "cannot open config file /nonexistent.cfg" "$TMP_ROOT/err" && ok "missing config file" || not_ok "missing config file"
"$BIN" check "$TMP_ROOT" 2>"$TMP_ROOT/err"
[ $? = 2 ] && grep -q "config file $TMP_ROOT is a directory" "$TMP_ROOT/err" && ok "a directory as the config file" ||
    not_ok "a directory as the config file" "$(cat "$TMP_ROOT/err")"
