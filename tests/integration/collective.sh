# Device collectives (kernels/collective.h) on 3 ranks: all-reduce and broadcast
# (tests/mpi/collective_ranks.c).
. tests/integration/lib.sh
out=$TMP_ROOT/out.txt
sh scripts/mpirun.sh 3 "$ASYNCRL_BUILD/tests/mpi/collective_ranks" >"$out" 2>&1
rc=$?
grep -E '^(not )?ok ' "$out"
[ "$rc" = 0 ] || not_ok "collective job exited with $rc" "$(tail -5 "$out")"
