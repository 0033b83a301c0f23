# Weight broadcast from the trainer root to two inference ranks (tests/mpi/weights_ranks.c).
. tests/integration/lib.sh
out=$TMP_ROOT/out.txt
sh scripts/mpirun.sh 4 "$ASYNCRL_BUILD/tests/mpi/weights_ranks" tests/fixtures/config/weights.cfg >"$out" 2>&1
rc=$?
grep -E '^(not )?ok ' "$out"
[ "$rc" = 0 ] || not_ok "weights job exited with $rc" "$(tail -5 "$out")"
