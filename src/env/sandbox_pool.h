// A pool of sandboxes (sandbox.h) that runs many programs at once without ever blocking the
// caller: submit() queues a run and returns a ticket at once, poll() says whether it is done.
//
// One background thread per pool owns the running sandboxes: it sleeps in poll(2) on their
// pipes and a wake-up pipe, with the nearest deadline as timeout, so neither it nor the caller
// spins. At most max_parallel programs run at a time, each under a uid of its own (claimed
// when the pool is made); the rest wait in FIFO order. The caller's calls only take a mutex
// that the pool thread holds for short bookkeeping, never during a fork or cleanup.
#pragma once
#include <stddef.h>

#include "env/sandbox.h"

typedef struct SandboxPool SandboxPool;

typedef struct {
    long runs;            // finished runs
    long ok, crashed, killed_by_signal, timeouts, memory, output_limit, file_limit, setup_errors;
    double wall_sum_s;    // over finished runs
    double wall_max_s;
    int running, queued;  // now
} SandboxPoolStats;

// max_parallel <= 0 means the number of online cores. NULL with err when the config is bad,
// running here would be unsafe, or not enough sandbox uids are free.
SandboxPool *sandbox_pool_create(const SandboxConfig *cfg, int max_parallel, ErrorBuf *err);
// Stops whatever still runs (those results are lost) and frees everything.
void sandbox_pool_destroy(SandboxPool *pool);

// Queues a run (program and input are copied). Returns a ticket >= 0. Never blocks.
int sandbox_pool_submit(SandboxPool *pool, const char *program, size_t program_len, const char *input,
                        size_t input_len);
// 1 when the ticket is done: *out gets the result (free it with sandbox_result_free) and the
// ticket is released; 0 while it is queued or running; -1 for an unknown ticket. Never blocks.
int sandbox_pool_poll(SandboxPool *pool, int ticket, SandboxResult *out);
// Blocks until the ticket is done (for blocking callers and tests). 0, or -1 for an unknown ticket.
int sandbox_pool_wait(SandboxPool *pool, int ticket, SandboxResult *out);
// Gives the ticket up: a queued run is dropped, a running one finishes and its result is freed.
void sandbox_pool_cancel(SandboxPool *pool, int ticket);

unsigned sandbox_pool_layers(const SandboxPool *pool);  // the isolation layers its runs use
int sandbox_pool_max_parallel(const SandboxPool *pool);
void sandbox_pool_stats(SandboxPool *pool, SandboxPoolStats *out);
