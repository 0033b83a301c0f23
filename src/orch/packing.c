// First-fit-decreasing packing into rows and dealing rows to trainers (see packing.h).
#include "orch/packing.h"

#include <stdlib.h>
#include <string.h>

typedef struct {
    int index, positions;
} Item;

static int by_length_desc(const void *a, const void *b) {
    const Item *x = a, *y = b;
    if (x->positions != y->positions) return y->positions - x->positions;
    return x->index - y->index;  // stable, so packing is deterministic
}

typedef struct {
    int used;
    int *members, n_members;
} Row;

static void place(const PackSample *s, int sample_id, Batch *b, int row, int at) {
    size_t o = (size_t)row * (size_t)b->seq_len + (size_t)at;
    for (int j = 0; j + 1 < s->n; j++) {
        b->input[o + j] = s->tokens[j];
        b->target[o + j] = s->tokens[j + 1];
        b->position[o + j] = j;
        b->sample[o + j] = sample_id;
        b->mask[o + j] = s->mask[j + 1];
        b->logp_infer[o + j] = s->mask[j + 1] ? s->logp[j + 1] : 0.0f;
        b->advantage[o + j] = s->mask[j + 1] ? s->advantage : 0.0f;
    }
}

int pack_samples(const PackSample *samples, int n_samples, int seq_len, int n_trainers, int step, uint32_t flags,
                 Batch *out, ErrorBuf *err) {
    Item *items = xmalloc(sizeof(Item) * (size_t)(n_samples ? n_samples : 1));
    for (int i = 0; i < n_samples; i++) {
        int positions = samples[i].n - 1;
        if (positions > seq_len) {
            free(items);
            return error_set(err, "sample %d has %d tokens, more than trainer.seq_len + 1 = %d: raise trainer.seq_len "
                             "or lower inference.max_tokens (and the prompt lengths)", i, samples[i].n, seq_len + 1);
        }
        items[i] = (Item){i, positions > 0 ? positions : 0};
    }
    qsort(items, (size_t)n_samples, sizeof(Item), by_length_desc);

    // First fit decreasing.
    Row *rows = NULL;
    int n_rows = 0, cap = 0;
    for (int k = 0; k < n_samples; k++) {
        if (items[k].positions == 0) continue;
        int r = 0;
        while (r < n_rows && rows[r].used + items[k].positions > seq_len) r++;
        if (r == n_rows) {
            if (n_rows == cap) {
                cap = cap ? 2 * cap : 8;
                rows = xrealloc(rows, sizeof(Row) * (size_t)cap);
            }
            rows[n_rows++] = (Row){0, xmalloc(sizeof(int) * (size_t)(n_samples)), 0};
        }
        rows[r].members[rows[r].n_members++] = items[k].index;
        rows[r].used += items[k].positions;
    }
    int per_trainer = (n_rows + n_trainers - 1) / n_trainers;
    if (per_trainer == 0) per_trainer = 1;

    // Deal rows (fullest first) so each trainer gets per_trainer rows and balanced tokens:
    // snake order 0,1,..,T-1,T-1,..,0,...
    for (int t = 0; t < n_trainers; t++) {
        batch_alloc(&out[t], per_trainer, seq_len);
        out[t].step = step;
        out[t].flags = flags;
    }
    for (int r = 0; r < n_rows; r++) {
        int round = r / n_trainers, k = r % n_trainers;
        int t = (round % 2 == 0) ? k : n_trainers - 1 - k;
        Batch *b = &out[t];
        int at = 0;
        for (int m = 0; m < rows[r].n_members; m++) {
            const PackSample *s = &samples[rows[r].members[m]];
            place(s, rows[r].members[m], b, round, at);
            at += s->n - 1;
        }
        b->row_len[round] = at;
        free(rows[r].members);
    }
    free(rows);
    free(items);
    return per_trainer;
}
