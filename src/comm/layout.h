// The rank layout of a job: rank 0 is the orchestrator, ranks 1..T the trainers, ranks
// T+1..T+I the inference workers. Communicators: `trainers` (data-parallel gradient
// reduction among trainer ranks) and `weights` (trainer rank 1, the root, plus every
// inference rank, for the weight broadcast). Each rank also knows its node-local rank, by
// which a GPU build picks its device.
#pragma once
#include <mpi.h>
#include <stdio.h>

#include "core/config.h"

typedef enum { ROLE_ORCHESTRATOR = 0, ROLE_TRAINER = 1, ROLE_INFERENCE = 2 } Role;

typedef struct {
    int world_rank, world_size;
    Role role;
    int role_index;       // 0-based index among the ranks of this role
    int n_trainers, n_inference;
    int trainer_root;     // world rank of the first trainer (1)
    int first_inference;  // world rank of the first inference rank (1 + T)
    int local_rank, local_size;  // within the node (MPI_COMM_TYPE_SHARED)
    int local_compute;    // trainer and inference ranks on this node
    MPI_Comm trainers;    // trainer ranks only; MPI_COMM_NULL elsewhere
    MPI_Comm weights;     // trainer root (rank 0 in it) + inference ranks; MPI_COMM_NULL elsewhere
} Layout;

const char *role_name(Role role);
Role layout_role_of(const Config *cfg, int world_rank, int *role_index);
// Splits the communicators. Collective over `world`; the world size must match the config.
void layout_init(Layout *layout, const Config *cfg, MPI_Comm world);
void layout_free(Layout *layout);
// Prints which rank does what and the communicators, for `asyncrl check` and job start.
void layout_describe(const Config *cfg, FILE *out);
// Compute threads for this rank: run.threads, or with 0 the node's cores shared among the
// compute ranks on the node (the orchestrator mostly sleeps and does not count), at least 1.
int layout_compute_threads(const Config *cfg, const Layout *layout);

// Starts an MPI job: initialises MPI, has rank 0 read and validate the config (a bad config
// makes every rank exit with status 2 after rank 0 prints why), shares the resolved config
// text with every rank, checks the world size, sets the log identity and builds the layout.
// argv holds CONFIG [--set k=v]... after the subcommand name.
void job_start(int *argc, char ***argv, const char *command, Config *cfg, Layout *layout);
void job_finish(Layout *layout);
