# The same batch on one and on two trainer ranks gives the same update (tests/mpi/dp_equivalence.c).
. tests/integration/lib.sh
out=$TMP_ROOT/out.txt
sh scripts/mpirun.sh 2 "$ASYNCRL_BUILD/tests/mpi/dp_equivalence" >"$out" 2>&1
rc=$?
grep -E '^(not )?ok ' "$out"
[ "$rc" = 0 ] || not_ok "data-parallel job exited with $rc" "$(tail -5 "$out")"
