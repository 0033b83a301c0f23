// code: the model writes a program that reads the input from stdin and prints the answer; the
// program runs in a sandbox (sandbox.h) against the problem's test cases.
//
// Problems come from a JSONL file (env.code.path), one object per line:
//
//   {"prompt": "Read two integers and print their sum.",
//    "tests": [{"input": "1 2\n", "output": "3\n"}, ...],
//    "reference": "a, b = map(int, input().split())\nprint(a + b)\n",
//    "split": "eval"}
//
// "prompt" (non-empty, no NUL) and "tests" (1..CODE_MAX_TESTS objects with string "input" and
// "output") are required; "reference" (a correct program: the SFT warm-up trains on it) and
// "split" ("train" or "eval") are optional; other members are ignored. Blank lines are
// skipped. Anything else is a load error naming the file and line.
//
// Splits: "split" when given, else a line is held out for eval when a hash of its prompt falls
// below env.code.eval_fraction; both splits must be non-empty. Problem `index` of a split is
// line perm[index mod n] of a permutation seeded by (seed, split).
//
//   prompt  the line's prompt and an instruction to answer with one ```python block
//   answer  the reference program in a ```python block (NULL when the line has none)
//   info    the problem's line number in the file (the verifier finds its tests by it)
//   id      a hash of the prompt
//
// Program: the first fenced block of the last model turn (```python ... ``` or ``` ... ```);
// without a fence, the whole turn. Reward: the fraction of tests whose stdout matches the
// expected output after trimming trailing whitespace on every line and trailing blank lines,
// counting only runs that exited with status 0. Output that is empty, over
// ENV_MAX_OUTPUT_BYTES, or holds no program scores 0 without running anything.
//
// Metrics (all always present, in this order): tests_passed, tests_total, syntax_error (the
// interpreter reported SyntaxError/IndentationError/TabError), timeouts, crashes (non-zero exit,
// signal, memory, output or file limit), fenced (a code fence was found), sandbox_errors (the
// sandbox failed, not the program: these runs score 0 and are logged), run_ms (mean wall time
// of a test run).
//
// Scoring is asynchronous: score_begin submits one sandbox run per test to a pool
// (env.code.max_parallel at once) and returns at once; score_poll collects. score blocks.
#pragma once
#include <stddef.h>
#include <stdint.h>

#include "env/env.h"
#include "env/sandbox_pool.h"

#define CODE_MAX_TESTS 64
#define CODE_MAX_FILE_BYTES (256LL << 20)

struct EnvConfig;

// The `code` environment. NULL with err when the problems cannot be loaded or no sandbox can
// run here (the message says which layer or setting is missing).
Env *env_code_create(const struct EnvConfig *cfg, uint64_t seed, ErrorBuf *err);

// The program inside a completion (a view into text; see the top of this file). Returns 1 when
// a fenced block was found, 0 when the whole text is taken.
int code_extract_program(const char *text, size_t len, const char **program, size_t *program_len);
// 1 when the two outputs are equal after trimming trailing whitespace on each line (space,
// tab, CR) and dropping trailing blank lines.
int code_output_matches(const char *got, size_t got_len, const char *want, size_t want_len);

// For the orchestrator's logs: the sandbox pool's counters and the layers in force.
void code_env_pool_stats(Env *env, SandboxPoolStats *out);
unsigned code_env_layers(Env *env);
