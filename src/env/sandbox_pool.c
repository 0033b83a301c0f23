// The sandbox pool (see sandbox_pool.h): a ticket table guarded by a mutex, a FIFO of queued
// runs, and one thread that starts runs into free slots and drives them with poll(2).
#include "env/sandbox_pool.h"

#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "core/log.h"

#define TICKET_INDEX_BITS 20
#define TICKET_INDEX_MASK ((1 << TICKET_INDEX_BITS) - 1)
#define TICKET_GEN_MASK 0x7FF

typedef enum { T_FREE = 0, T_QUEUED, T_RUNNING, T_DONE } TicketState;

typedef struct {
    TicketState state;
    unsigned gen;
    int cancelled;
    char *program, *input;
    size_t program_len, input_len;
    SandboxResult result;
    int next;  // queue link, or free-list link
} Ticket;

typedef struct {
    SandboxJob *job;
    int ticket_index;
    int slot;
    int first_fd, n_fds;  // where its descriptors sit in the poll array
} Running;

struct SandboxPool {
    SandboxConfig cfg;
    unsigned layers;
    int max_parallel;
    SandboxSlot *slots;
    int *slot_busy;
    int n_slots_acquired;

    pthread_t thread;
    int thread_started;
    pthread_mutex_t mu;
    pthread_cond_t done_cv;
    int wake[2];
    int stop;

    Ticket *tickets;
    int n_tickets;
    int free_head;                // free-list of ticket indices (-1: none)
    int queue_head, queue_tail;   // FIFO of queued ticket indices (-1: empty)
    SandboxPoolStats stats;

    // Owned by the pool thread.
    Running *running;
    int n_running;
};

static void wake_thread(SandboxPool *pool) {
    char b = 1;
    ssize_t w = write(pool->wake[1], &b, 1);  // a full pipe already means "wake up"
    (void)w;
}

static int ticket_id(const SandboxPool *pool, int index) {
    return (int)(((pool->tickets[index].gen & TICKET_GEN_MASK) << TICKET_INDEX_BITS) | (unsigned)index);
}

// The ticket's index, or -1 when it does not name a live ticket. Under the lock.
static int ticket_lookup(const SandboxPool *pool, int ticket) {
    if (ticket < 0) return -1;
    int index = ticket & TICKET_INDEX_MASK;
    unsigned gen = ((unsigned)ticket >> TICKET_INDEX_BITS) & TICKET_GEN_MASK;
    if (index >= pool->n_tickets) return -1;
    const Ticket *t = &pool->tickets[index];
    if (t->state == T_FREE || (t->gen & TICKET_GEN_MASK) != gen || t->cancelled) return -1;
    return index;
}

static void ticket_release(SandboxPool *pool, int index) {
    Ticket *t = &pool->tickets[index];
    free(t->program);
    free(t->input);
    sandbox_result_free(&t->result);
    unsigned gen = t->gen + 1;
    memset(t, 0, sizeof *t);
    t->gen = gen;
    t->state = T_FREE;
    t->next = pool->free_head;
    pool->free_head = index;
}

static void count_result(SandboxPoolStats *s, const SandboxResult *r) {
    s->runs++;
    switch (r->reason) {
        case SANDBOX_OK: s->ok++; break;
        case SANDBOX_CRASHED: s->crashed++; break;
        case SANDBOX_KILLED_BY_SIGNAL: s->killed_by_signal++; break;
        case SANDBOX_TIMEOUT: s->timeouts++; break;
        case SANDBOX_MEMORY: s->memory++; break;
        case SANDBOX_OUTPUT_LIMIT: s->output_limit++; break;
        case SANDBOX_FILE_LIMIT: s->file_limit++; break;
        default: s->setup_errors++; break;
    }
    s->wall_sum_s += r->wall_s;
    if (r->wall_s > s->wall_max_s) s->wall_max_s = r->wall_s;
}

// Cleans up a finished job (outside the lock: removing its directory takes a moment) and
// publishes its result.
static void complete(SandboxPool *pool, int r) {
    Running run = pool->running[r];
    pool->running[r] = pool->running[--pool->n_running];
    SandboxResult result;
    sandbox_job_finish(run.job, &result);
    pthread_mutex_lock(&pool->mu);
    count_result(&pool->stats, &result);
    pool->stats.running--;
    pool->slot_busy[run.slot] = 0;
    Ticket *t = &pool->tickets[run.ticket_index];
    if (t->cancelled) {
        sandbox_result_free(&result);
        ticket_release(pool, run.ticket_index);
    } else {
        t->result = result;
        t->state = T_DONE;
        free(t->program);
        free(t->input);
        t->program = t->input = NULL;
        pthread_cond_broadcast(&pool->done_cv);
    }
    pthread_mutex_unlock(&pool->mu);
}

// Starts queued runs into free slots. Called with the lock held; drops it around each start.
static void start_queued(SandboxPool *pool) {
    while (!pool->stop && pool->queue_head >= 0 && pool->n_running < pool->max_parallel) {
        int index = pool->queue_head;
        Ticket *t = &pool->tickets[index];
        pool->queue_head = t->next;
        if (pool->queue_head < 0) pool->queue_tail = -1;
        t->state = T_RUNNING;
        pool->stats.queued--;
        pool->stats.running++;
        int slot = 0;
        while (pool->slot_busy[slot]) slot++;
        pool->slot_busy[slot] = 1;
        const char *program = t->program, *input = t->input;  // stable: only freed once done
        size_t program_len = t->program_len, input_len = t->input_len;
        pthread_mutex_unlock(&pool->mu);
        SandboxJob *job = sandbox_job_start(&pool->cfg, pool->layers, &pool->slots[slot], program, program_len,
                                            input, input_len, sandbox_now());
        pool->running[pool->n_running++] = (Running){job, index, slot, 0, 0};
        pthread_mutex_lock(&pool->mu);
    }
}

// Puts every running job's descriptors into fds from index `first` on (each job remembers
// where its own lie); returns the count of fds in use and sets *next to the earliest deadline
// (INFINITY when none).
static int gather_pollfds(SandboxPool *pool, struct pollfd *fds, int first, double *next) {
    int n = first;
    *next = INFINITY;
    for (int r = 0; r < pool->n_running; r++) {
        Running *run = &pool->running[r];
        run->first_fd = n;
        run->n_fds = sandbox_job_pollfds(run->job, fds + n);
        n += run->n_fds;
        const double d = sandbox_job_deadline(run->job);
        if (d < *next) *next = d;
    }
    return n;
}

static void *pool_main(void *arg) {
    SandboxPool *pool = arg;
    sigset_t all;
    sigfillset(&all);
    pthread_sigmask(SIG_SETMASK, &all, NULL);  // the application's signals go to its own threads
    struct pollfd *fds = xcalloc((size_t)(1 + pool->max_parallel * SANDBOX_JOB_MAX_FDS), sizeof *fds);
    pthread_mutex_lock(&pool->mu);
    while (!pool->stop) {
        start_queued(pool);
        pthread_mutex_unlock(&pool->mu);

        // Finished already (a start that failed) or due now: step without waiting.
        double now = sandbox_now(), next;
        fds[0] = (struct pollfd){pool->wake[0], POLLIN, 0};
        const int n = gather_pollfds(pool, fds, 1, &next);
        double wait = next - now;
        int timeout_ms = isinf(next) ? -1 : wait <= 0 ? 0 : wait > 3600 ? 3600000 : (int)ceil(wait * 1000);
        int rc = poll(fds, (nfds_t)n, timeout_ms);
        if (rc > 0 && fds[0].revents) {
            char buf[64];
            while (read(pool->wake[0], buf, sizeof buf) > 0) {
            }
        }
        now = sandbox_now();
        for (int r = pool->n_running - 1; r >= 0; r--) {
            Running *run = &pool->running[r];
            if (sandbox_job_step(run->job, rc > 0 && run->n_fds ? fds + run->first_fd : NULL, now)) complete(pool, r);
        }
        pthread_mutex_lock(&pool->mu);
    }
    pthread_mutex_unlock(&pool->mu);
    // Shutting down: stop what runs and wait for it to be cleaned up.
    for (int r = 0; r < pool->n_running; r++) sandbox_job_stop(pool->running[r].job, SANDBOX_SETUP_ERROR, sandbox_now());
    while (pool->n_running > 0) {
        double now = sandbox_now(), next;
        const int n = gather_pollfds(pool, fds, 0, &next);
        double wait = next - now;
        int timeout_ms = isinf(next) ? 100 : wait <= 0 ? 0 : wait > 1 ? 1000 : (int)ceil(wait * 1000);
        int rc = poll(fds, (nfds_t)n, timeout_ms);
        now = sandbox_now();
        for (int r = pool->n_running - 1; r >= 0; r--) {
            Running *run = &pool->running[r];
            if (sandbox_job_step(run->job, rc > 0 && run->n_fds ? fds + run->first_fd : NULL, now)) complete(pool, r);
        }
    }
    free(fds);
    return NULL;
}

SandboxPool *sandbox_pool_create(const SandboxConfig *cfg, int max_parallel, ErrorBuf *err) {
    unsigned layers;
    if (sandbox_config_check(cfg, err) || sandbox_layers_for(cfg, &layers, err)) return NULL;
    if (max_parallel <= 0) {
        long cores = sysconf(_SC_NPROCESSORS_ONLN);
        max_parallel = cores > 0 ? (int)cores : 1;
    }
    if (max_parallel > 4096) max_parallel = 4096;
    SandboxPool *pool = xcalloc(1, sizeof *pool);
    pool->cfg = *cfg;
    pool->layers = layers;
    pool->max_parallel = max_parallel;
    pool->free_head = pool->queue_head = pool->queue_tail = -1;
    pool->wake[0] = pool->wake[1] = -1;
    pool->slots = xcalloc((size_t)max_parallel, sizeof *pool->slots);
    pool->slot_busy = xcalloc((size_t)max_parallel, sizeof *pool->slot_busy);
    pool->running = xcalloc((size_t)max_parallel, sizeof *pool->running);
    pthread_mutex_init(&pool->mu, NULL);
    pthread_cond_init(&pool->done_cv, NULL);
    for (int i = 0; i < max_parallel; i++) {
        if (sandbox_slot_acquire(cfg, layers, &pool->slots[i], err)) {
            sandbox_pool_destroy(pool);
            return NULL;
        }
        pool->n_slots_acquired++;
    }
    if (pipe2(pool->wake, O_CLOEXEC | O_NONBLOCK) != 0) {
        error_set(err, "sandbox pool: pipe2: %s", strerror(errno));
        sandbox_pool_destroy(pool);
        return NULL;
    }
    int rc = pthread_create(&pool->thread, NULL, pool_main, pool);
    if (rc != 0) {
        error_set(err, "sandbox pool: cannot start its thread: %s", strerror(rc));
        sandbox_pool_destroy(pool);
        return NULL;
    }
    pool->thread_started = 1;
    char names[128];
    LOG_DEBUG("sandbox pool: %d parallel, layers %s", max_parallel, sandbox_layers_string(layers, names, sizeof names));
    return pool;
}

void sandbox_pool_destroy(SandboxPool *pool) {
    if (!pool) return;
    if (pool->thread_started) {
        pthread_mutex_lock(&pool->mu);
        pool->stop = 1;
        pthread_mutex_unlock(&pool->mu);
        wake_thread(pool);
        pthread_join(pool->thread, NULL);
    }
    for (int i = 0; i < pool->n_tickets; i++) {
        Ticket *t = &pool->tickets[i];
        free(t->program);
        free(t->input);
        sandbox_result_free(&t->result);
    }
    free(pool->tickets);
    for (int i = 0; i < pool->n_slots_acquired; i++) sandbox_slot_release(&pool->slots[i]);
    if (pool->wake[0] >= 0) close(pool->wake[0]);
    if (pool->wake[1] >= 0) close(pool->wake[1]);
    pthread_mutex_destroy(&pool->mu);
    pthread_cond_destroy(&pool->done_cv);
    free(pool->slots);
    free(pool->slot_busy);
    free(pool->running);
    free(pool);
}

int sandbox_pool_submit(SandboxPool *pool, const char *program, size_t program_len, const char *input,
                        size_t input_len) {
    char *p = xmalloc(program_len + 1), *in = xmalloc(input_len + 1);
    if (program_len) memcpy(p, program, program_len);
    if (input_len) memcpy(in, input, input_len);
    p[program_len] = in[input_len] = '\0';
    pthread_mutex_lock(&pool->mu);
    if (pool->free_head < 0) {
        CHECK(pool->n_tickets < TICKET_INDEX_MASK, "collect finished tickets with sandbox_pool_poll",
              "sandbox pool: more than %d tickets outstanding", TICKET_INDEX_MASK);
        int cap = pool->n_tickets ? pool->n_tickets * 2 : 64;
        pool->tickets = xrealloc(pool->tickets, sizeof(Ticket) * (size_t)cap);
        memset(pool->tickets + pool->n_tickets, 0, sizeof(Ticket) * (size_t)(cap - pool->n_tickets));
        for (int i = cap - 1; i >= pool->n_tickets; i--) {
            pool->tickets[i].next = pool->free_head;
            pool->free_head = i;
        }
        pool->n_tickets = cap;
    }
    int index = pool->free_head;
    Ticket *t = &pool->tickets[index];
    pool->free_head = t->next;
    t->state = T_QUEUED;
    t->cancelled = 0;
    t->program = p;
    t->program_len = program_len;
    t->input = in;
    t->input_len = input_len;
    t->next = -1;
    if (pool->queue_tail >= 0) pool->tickets[pool->queue_tail].next = index;
    else pool->queue_head = index;
    pool->queue_tail = index;
    pool->stats.queued++;
    int ticket = ticket_id(pool, index);
    pthread_mutex_unlock(&pool->mu);
    wake_thread(pool);
    return ticket;
}

static void take_result(SandboxPool *pool, int index, SandboxResult *out) {
    *out = pool->tickets[index].result;
    memset(&pool->tickets[index].result, 0, sizeof(SandboxResult));
    ticket_release(pool, index);
}

int sandbox_pool_poll(SandboxPool *pool, int ticket, SandboxResult *out) {
    pthread_mutex_lock(&pool->mu);
    int index = ticket_lookup(pool, ticket), rc = -1;
    if (index >= 0) {
        rc = pool->tickets[index].state == T_DONE;
        if (rc) take_result(pool, index, out);
    }
    pthread_mutex_unlock(&pool->mu);
    return rc;
}

int sandbox_pool_wait(SandboxPool *pool, int ticket, SandboxResult *out) {
    pthread_mutex_lock(&pool->mu);
    int index = ticket_lookup(pool, ticket);
    if (index < 0) {
        pthread_mutex_unlock(&pool->mu);
        return -1;
    }
    while (pool->tickets[index].state != T_DONE) pthread_cond_wait(&pool->done_cv, &pool->mu);
    take_result(pool, index, out);
    pthread_mutex_unlock(&pool->mu);
    return 0;
}

void sandbox_pool_cancel(SandboxPool *pool, int ticket) {
    pthread_mutex_lock(&pool->mu);
    int index = ticket_lookup(pool, ticket);
    if (index >= 0) {
        Ticket *t = &pool->tickets[index];
        if (t->state == T_DONE) {
            ticket_release(pool, index);
        } else if (t->state == T_QUEUED) {  // unlink from the FIFO
            int prev = -1;
            for (int i = pool->queue_head; i >= 0 && i != index; i = pool->tickets[i].next) prev = i;
            if (prev >= 0) pool->tickets[prev].next = t->next;
            else pool->queue_head = t->next;
            if (pool->queue_tail == index) pool->queue_tail = prev;
            pool->stats.queued--;
            ticket_release(pool, index);
        } else {
            t->cancelled = 1;  // complete() frees it
        }
    }
    pthread_mutex_unlock(&pool->mu);
}

unsigned sandbox_pool_layers(const SandboxPool *pool) { return pool->layers; }
int sandbox_pool_max_parallel(const SandboxPool *pool) { return pool->max_parallel; }

void sandbox_pool_stats(SandboxPool *pool, SandboxPoolStats *out) {
    pthread_mutex_lock(&pool->mu);
    *out = pool->stats;
    pthread_mutex_unlock(&pool->mu);
}
