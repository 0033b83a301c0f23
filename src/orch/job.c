// `asyncrl rl` and `asyncrl sft`: the MPI job. Every rank reads the same resolved config and
// runs its role: rank 0 the orchestrator, then the trainers, then the inference ranks.
#include <stdio.h>
#include <stdlib.h>

#include "comm/layout.h"
#include "core/cli.h"
#include "core/log.h"
#include "infer/service.h"
#include "orch/orchestrator.h"
#include "train/trainer.h"

static int run_roles(const Config *cfg, Layout *L) {
    int status = 0;
    switch (L->role) {
        case ROLE_ORCHESTRATOR: status = orchestrator_run(cfg, L); break;
        case ROLE_TRAINER: status = trainer_run(cfg, L); break;
        case ROLE_INFERENCE: status = inference_run(cfg, L); break;
    }
    return status;
}

int cmd_rl(int argc, char **argv) {
    Config cfg;
    Layout L;
    job_start(&argc, &argv, "rl", &cfg, &L);
    if (L.world_rank == 0) {
        char *text = config_to_text(&cfg);
        printf("# asyncrl rl: resolved config\n%s\n", text);
        free(text);
        layout_describe(&cfg, stdout);
        fflush(stdout);
    }
    int status = run_roles(&cfg, &L);
    job_finish(&L);
    return status;
}

// The warm-up alone: sft.steps supervised steps, evaluation before and after, no RL steps.
int cmd_sft(int argc, char **argv) {
    Config cfg;
    Layout L;
    job_start(&argc, &argv, "sft", &cfg, &L);
    cfg.run.max_steps = 0;
    if (cfg.sft.steps == 0) die_user("asyncrl sft needs sft.steps > 0 (e.g. --set sft.steps=200)");
    int status = run_roles(&cfg, &L);
    job_finish(&L);
    return status;
}
