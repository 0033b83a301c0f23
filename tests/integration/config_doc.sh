# docs/CONFIG.md is what scripts/gen_config_doc.sh makes from `asyncrl defaults`: a key added,
# removed or changed in the config table without `make docs` fails here.
. tests/integration/lib.sh
if sh scripts/gen_config_doc.sh "$BIN" >"$TMP_ROOT/CONFIG.md" 2>"$TMP_ROOT/err"; then
    if diff -u docs/CONFIG.md "$TMP_ROOT/CONFIG.md" >"$TMP_ROOT/diff"; then
        ok "docs/CONFIG.md matches asyncrl defaults"
    else
        not_ok "docs/CONFIG.md matches asyncrl defaults: run make docs and commit docs/CONFIG.md" "$(head -30 "$TMP_ROOT/diff")"
    fi
else
    not_ok "scripts/gen_config_doc.sh runs" "$(cat "$TMP_ROOT/err")"
fi
# Every key of the binary has a row (the generator drops none).
keys=$("$BIN" defaults | grep -c '^[a-z]')
rows=$(grep -c '^| `' docs/CONFIG.md)
check "docs/CONFIG.md has a row for each of the $keys keys ($rows rows)" test "$keys" = "$rows"
