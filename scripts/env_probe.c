// env_probe: a developer tool to look at an environment from the shell. Not part of the job.
//
//   env_probe dump  ENV SPLIT N [group.key=value ...]   problems 0..N-1 as JSONL
//                                                     {"index", "id", "prompt", "answer", "info"}
//   env_probe score ENV SPLIT   [group.key=value ...]   reads JSONL {"index": i, "output": "..."}
//                                                     and prints {"index", "reward", <metrics>}
// SPLIT is train or eval; the seed is run.seed. Build (after `make`):
//   mpicc -std=c11 -D_GNU_SOURCE -O2 -Isrc scripts/env_probe.c build/libasyncrl.a
//         $(pkg-config --libs libconfig hdf5-openmpi openblas) -fopenmp -lm -o build/env_probe
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/config.h"
#include "core/json.h"
#include "env/registry.h"

static void die(const char *msg) {
    fprintf(stderr, "env_probe: %s\n", msg);
    exit(2);
}

int main(int argc, char **argv) {
    if (argc < 4) die("usage: env_probe dump|score ENV train|eval [N] [group.key=value ...]");
    int dump = strcmp(argv[1], "dump") == 0;
    EnvSplit split = strcmp(argv[3], "eval") == 0 ? ENV_SPLIT_EVAL : ENV_SPLIT_TRAIN;
    int first_set = dump ? 5 : 4;
    if (dump && argc < 5) die("dump needs N");
    Config cfg;
    ErrorBuf err;
    config_defaults(&cfg);
    for (int i = first_set; i < argc; i++)
        if (config_set(&cfg, argv[i], &err)) die(err.msg);
    Env *env = env_create(argv[2], &cfg.env, (uint64_t)cfg.run.seed, &err);
    if (!env) die(err.msg);
    if (dump) {
        long n = atol(argv[4]);
        for (long i = 0; i < n; i++) {
            Problem p;
            if (env->problem(env, split, (uint64_t)i, &p, &err)) die(err.msg);
            printf("{\"index\": %ld, \"id\": \"%016llx\", \"prompt\": ", i, (unsigned long long)p.id);
            json_write_string(stdout, p.prompt, strlen(p.prompt));
            printf(", \"answer\": ");
            json_write_string(stdout, p.answer, strlen(p.answer));
            printf(", \"info\": ");
            json_write_string(stdout, p.info ? p.info : "", p.info ? strlen(p.info) : 0);
            printf("}\n");
            problem_free(&p);
        }
    } else {
        char *line = NULL;
        size_t cap = 0;
        ssize_t len;
        while ((len = getline(&line, &cap, stdin)) > 0) {
            Json *obj = json_parse(line, (size_t)len, &err);
            long long index;
            const Json *out = obj ? json_get(obj, "output") : NULL;
            if (!obj || json_get_int(obj, "index", &index) || !out || out->type != JSON_STRING) die("bad input line");
            Problem p;
            if (env->problem(env, split, (uint64_t)index, &p, &err)) die(err.msg);
            Turn turn = {TURN_MODEL, out->string, out->string_len};
            Transcript t = {&turn, 1};
            EnvMetrics m = {0};
            double r = env->score(env, &p, &t, &m);
            printf("{\"index\": %lld, \"reward\": %.6g", index, r);
            for (int k = 0; k < m.count; k++) printf(", \"%s\": %.6g", m.names[k], m.values[k]);
            printf("}\n");
            problem_free(&p);
            json_free(obj);
        }
        free(line);
    }
    env_destroy(env);
    return 0;
}
