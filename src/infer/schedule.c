// The engine's scheduler: which sequences run this step and which of their tokens.
//
// 1. Admission: queued sequences (oldest first) join the running set while it has fewer than
//    max_seqs and a KV block is left for its first token (after the blocks the running
//    sequences need for theirs). Before any weights nothing is admitted; while DRAIN
//    weights wait, only sequences that already started are (they must finish on their version).
// 2. Rows: every running sequence, oldest first, gets its uncached tokens: one for a decoding
//    sequence; for a prefilling one (a new prompt, or a preempted sequence recomputing its
//    prompt and completion so far) up to what is left of this step's prefill_chunk budget.
// 3. Blocks: a sequence's new rows need cache slots. When the free list is short, a prefill
//    takes fewer tokens if that helps; otherwise the youngest running sequence is preempted
//    (its blocks freed, it goes back to the queue by age and later recomputes its cache), even
//    if that is the sequence being scheduled. The oldest sequence always fits (the context is at
//    most the whole cache), so every sequence eventually finishes.
// A sequence whose rows reach its last token gets one sample row (its next token).
#include <string.h>

#include "infer/engine_internal.h"

void engine_queue_insert(Engine *e, Seq *s) {
    if (e->n_queue == e->cap_queue) {
        e->cap_queue = e->cap_queue ? 2 * e->cap_queue : 64;
        e->queue = xrealloc(e->queue, (size_t)e->cap_queue * sizeof(Seq *));
    }
    int i = e->n_queue;
    while (i > 0 && e->queue[i - 1]->order > s->order) {
        e->queue[i] = e->queue[i - 1];
        i--;
    }
    e->queue[i] = s;
    e->n_queue++;
}

static void remove_at(Seq **list, int *n, Seq *s) {
    for (int i = 0; i < *n; i++)
        if (list[i] == s) {
            memmove(&list[i], &list[i + 1], (size_t)(*n - i - 1) * sizeof(Seq *));
            (*n)--;
            return;
        }
}

void engine_remove_running(Engine *e, Seq *s) { remove_at(e->running, &e->n_running, s); }
void engine_remove_queued(Engine *e, Seq *s) { remove_at(e->queue, &e->n_queue, s); }

static void running_insert(Engine *e, Seq *s) {
    int i = e->n_running;
    while (i > 0 && e->running[i - 1]->order > s->order) {
        e->running[i] = e->running[i - 1];
        i--;
    }
    e->running[i] = s;
    e->n_running++;
}

void engine_preempt(Engine *e, Seq *s) {
    block_table_release(&e->cache, &s->table);
    s->n_cached = 0;
    s->scheduled = 0;
    engine_remove_running(e, s);
    engine_queue_insert(e, s);
    e->stats.preemptions++;
}

// Blocks the running sequences will take this step for their next token (decodes crossing
// into a new block, prefills starting one), so admission does not promise them twice.
static int blocks_promised(const Engine *e) {
    int promised = 0;
    for (int i = 0; i < e->n_running; i++) {
        const Seq *s = e->running[i];
        promised += block_table_missing(&e->cache, &s->table, s->n_cached + 1);
    }
    return promised;
}

static void admit(Engine *e) {
    const int draining = e->cfg.swap_mode == ENGINE_SWAP_DRAIN && e->staged_version >= 0;
    int promised = blocks_promised(e);
    while (e->version >= 0 && e->n_running < e->cfg.max_seqs) {
        // The oldest admissible queued sequence (while draining: the oldest started one).
        int pick = -1;
        for (int i = 0; i < e->n_queue && pick < 0; i++)
            if (!draining || e->queue[i]->started) pick = i;
        if (pick < 0) return;
        Seq *s = e->queue[pick];
        const int need = block_table_missing(&e->cache, &s->table, s->n_cached + 1);
        if (promised + need > e->cache.n_free) return;  // its first token would not fit
        promised += need;
        memmove(&e->queue[pick], &e->queue[pick + 1], (size_t)(e->n_queue - pick - 1) * sizeof(Seq *));
        e->n_queue--;
        s->started = 1;
        running_insert(e, s);
    }
}

// Rows for s this step (0: none), growing its block table; may preempt younger sequences or s.
static int schedule_sequence(Engine *e, Seq *s, int *prefill_budget) {
    KVCache *c = &e->cache;
    const int total = s->n_prompt + s->n_gen;
    const int pending = total - s->n_cached;
    int t = pending == 1 ? 1 : (pending < *prefill_budget ? pending : *prefill_budget);
    if (t == 0) return 0;
    while (block_table_missing(c, &s->table, s->n_cached + t) > c->n_free) {
        const int room = (s->table.n + c->n_free) * c->block_size - s->n_cached;
        if (pending > 1 && room >= 1) {
            t = room;  // a shorter prefill chunk fits
            break;
        }
        Seq *victim = e->running[e->n_running - 1];  // the youngest
        engine_preempt(e, victim);
        if (victim == s) return 0;
    }
    block_table_grow(c, &s->table, s->n_cached + t);
    if (pending > 1) *prefill_budget -= t;
    return t;
}

// Appends s's scheduled rows to the batch.
static void add_rows(Engine *e, Seq *s) {
    InferBatch *b = &e->fwd.batch;
    const int si = b->n_seqs++;
    const int t = s->scheduled;
    b->query_start[si] = b->n_rows;
    for (int j = 0; j < t; j++) {
        const int pos = s->n_cached + j;
        b->tokens[b->n_rows] = s->tokens[pos];
        b->positions[b->n_rows] = pos;
        b->slots[b->n_rows] = block_table_slot(&e->cache, &s->table, pos);
        b->n_rows++;
    }
    b->query_start[si + 1] = b->n_rows;
    b->context_len[si] = s->n_cached + t;
    int32_t *row = b->block_tables + (size_t)si * e->fwd.max_blocks;
    memcpy(row, s->table.blocks, (size_t)s->table.n * sizeof(int32_t));
    memset(row + s->table.n, 0, (size_t)(e->fwd.max_blocks - s->table.n) * sizeof(int32_t));
    if (s->n_cached + t == s->n_prompt + s->n_gen) {
        e->sample_seqs[b->n_sample] = s;
        b->sample_rows[b->n_sample++] = b->n_rows - 1;
    }
}

int engine_schedule(Engine *e) {
    admit(e);
    int budget = e->cfg.prefill_chunk;
    for (int i = 0; i < e->n_running; i++) e->running[i]->scheduled = 0;
    // Oldest first; a preemption only ever removes sequences at or after position i.
    for (int i = 0; i < e->n_running;) {
        Seq *s = e->running[i];
        s->scheduled = schedule_sequence(e, s, &budget);
        if (i < e->n_running && e->running[i] == s) i++;
    }
    InferBatch *b = &e->fwd.batch;
    b->n_rows = b->n_seqs = b->n_sample = 0;
    for (int i = 0; i < e->n_running; i++)
        if (e->running[i]->scheduled > 0) add_rows(e, e->running[i]);
    return b->n_rows;
}
