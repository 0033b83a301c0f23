// `asyncrl rl` and `asyncrl sft`: the MPI job. Every rank reads the same resolved config and
// runs its role: rank 0 the orchestrator, then the trainers, then the inference ranks.
#include <stdio.h>
#include <stdlib.h>

#include <string.h>

#include "comm/layout.h"
#include "comm/mpi_check.h"
#include "core/cli.h"
#include "core/files.h"
#include "core/log.h"
#include "io/checkpoint.h"
#include "infer/service.h"
#include "orch/orchestrator.h"
#include "train/trainer.h"

// Rank 0 resolves checkpoint.resume and tells every rank which checkpoint (if any) to start from.
static void resolve_resume(const Config *cfg, const Layout *L, const char *command, char *path, size_t size) {
    int status = 0;
    ErrorBuf err = {{0}};
    if (L->world_rank == 0) {
        status = checkpoint_resolve(cfg->run.output_dir, cfg->checkpoint.resume, path, size, &err);
        if (status == 1) LOG_INFO("resuming from %s", path);
        else if (status == 0 && strcmp(cfg->checkpoint.resume, "latest") == 0)
            LOG_INFO("checkpoint.resume = \"latest\": no checkpoint in %s/checkpoints, starting fresh", cfg->run.output_dir);
        // A new run over an earlier run's checkpoints would mix the two: checkpoint.keep would
        // prune the new run's own checkpoints first (the old ones have higher steps), and a later
        // "latest" would resume the old run.
        const int64_t earlier = status == 0 ? checkpoint_newest(cfg->run.output_dir) : -1;
        if (earlier >= 0 && strcmp(command, "eval") == 0)
            status = error_set(&err, "%s/checkpoints holds the checkpoints of a run (the newest: step %lld), and an "
                                     "eval with checkpoint.resume = \"%s\" would replace that run's metrics.h5: "
                                     "evaluate its newest checkpoint with --set checkpoint.resume=latest (or a step), "
                                     "or give the evaluation its own run.output_dir",
                               cfg->run.output_dir, (long long)earlier, cfg->checkpoint.resume);
        else if (earlier >= 0 && run_dir_busy(cfg->run.output_dir, &err) != 0)
            status = -1;  // (the checkpoints are those of a job running now)
        else if (earlier >= 0)
            status = error_set(&err, "%s/checkpoints holds the checkpoints of an earlier run (the newest: step %lld), "
                                     "and checkpoint.resume = \"%s\" would start a new run over them: continue that "
                                     "run (--set checkpoint.resume=latest), give this run its own run.output_dir, or "
                                     "delete %s/checkpoints first",
                               cfg->run.output_dir, (long long)earlier, cfg->checkpoint.resume, cfg->run.output_dir);
    }
    MPI_CHECK(MPI_Bcast(&status, 1, MPI_INT, 0, MPI_COMM_WORLD));
    if (status < 0) die_user("%s", err.msg);
    MPI_CHECK(MPI_Bcast(path, (int)size, MPI_CHAR, 0, MPI_COMM_WORLD));
}

static int run_roles(const Config *cfg, Layout *L, const char *command) {
    char resume[CFG_STR_MAX + 96] = "";
    resolve_resume(cfg, L, command, resume, sizeof resume);
    int status = 0;
    switch (L->role) {
        case ROLE_ORCHESTRATOR: status = orchestrator_run(cfg, L, resume); break;
        case ROLE_TRAINER: status = trainer_run(cfg, L, resume); break;
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
    int status = run_roles(&cfg, &L, "rl");
    job_finish(&L);
    return status;
}

// The warm-up alone: sft.steps supervised steps, an evaluation, a checkpoint (step 0) that
// `rl --set checkpoint.resume=0` or `convert` can take; no RL steps.
int cmd_sft(int argc, char **argv) {
    Config cfg;
    Layout L;
    job_start(&argc, &argv, "sft", &cfg, &L);
    cfg.run.max_steps = 0;
    cfg.checkpoint.at_end = 1;  // the warmed-up policy is what this command makes: keep it
    if (cfg.sft.steps == 0) die_user("asyncrl sft needs sft.steps > 0 (e.g. --set sft.steps=200)");
    int status = run_roles(&cfg, &L, "sft");
    job_finish(&L);
    return status;
}

// Evaluation alone: the policy of the config (model.source, or the checkpoint named by
// checkpoint.resume) on eval.problems held-out problems; no training.
int cmd_eval(int argc, char **argv) {
    Config cfg;
    Layout L;
    job_start(&argc, &argv, "eval", &cfg, &L);
    cfg.run.max_steps = 0;
    cfg.sft.steps = 0;
    cfg.checkpoint.at_end = 0;
    if (cfg.eval.problems == 0) die_user("asyncrl eval needs eval.problems > 0");
    int status = run_roles(&cfg, &L, "eval");
    job_finish(&L);
    return status;
}
