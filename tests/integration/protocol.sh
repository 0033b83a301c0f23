# Every message type between real ranks of a 4-rank job (tests/mpi/protocol_ranks.c).
. tests/integration/lib.sh
out=$TMP_ROOT/out.txt
sh scripts/mpirun.sh 4 "$ASYNCRL_BUILD/tests/mpi/protocol_ranks" tests/fixtures/config/protocol.cfg >"$out" 2>&1
rc=$?
grep -E '^(not )?ok ' "$out"
[ "$rc" = 0 ] || not_ok "protocol job exited with $rc" "$(tail -5 "$out")"
