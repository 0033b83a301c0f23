// `asyncrl generate`: text generation from a model file with the inference engine, as a
// single process (no MPI), printing tokens as they come like llama2.c's `run`, and its
// speed on stderr.
#pragma once

// asyncrl generate --model M [--tokenizer T] [--prompt STR] [--temperature X] [--top-p X]
//                  [--top-k N] [--min-p X] [-n N] [--seed S] [--greedy] [--threads N]
int cmd_generate(int argc, char **argv);
