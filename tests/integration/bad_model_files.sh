# Damaged model, tokenizer, config.json and safetensors files: `asyncrl generate` exits with a
# clear error for each, never a crash (tests/integration/bad_model_files.py, standard library).
. tests/integration/lib.sh
PY=$(command -v python3 || echo /usr/bin/python3)
if [ ! -x "$PY" ]; then skip "damaged model files" "no python3"; exit 0; fi
"$PY" tests/integration/bad_model_files.py "$BIN" "$MODELS" tests/fixtures/model "$TMP_ROOT"
