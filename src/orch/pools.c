// Problem pools by group mean reward (see pools.h).
#include "orch/pools.h"

#include <stdlib.h>
#include <string.h>

#include "core/error.h"
#include "core/rng.h"

static uint64_t key(uint64_t id) { return id ? id : 1; }

static void grow(IdSet *s) {
    IdSet bigger = {xcalloc((size_t)(s->cap ? 2 * s->cap : 256), sizeof(uint64_t)), s->cap ? 2 * s->cap : 256, 0};
    for (int i = 0; i < s->cap; i++)
        if (s->slots[i]) idset_add(&bigger, s->slots[i]);
    free(s->slots);
    *s = bigger;
}

void idset_add(IdSet *s, uint64_t id) {
    id = key(id);
    if (2 * (s->count + 1) > s->cap) grow(s);
    uint64_t i = rng_hash64(id) & (uint64_t)(s->cap - 1);
    while (s->slots[i] && s->slots[i] != id) i = (i + 1) & (uint64_t)(s->cap - 1);
    if (!s->slots[i]) {
        s->slots[i] = id;
        s->count++;
    }
}

int idset_has(const IdSet *s, uint64_t id) {
    if (!s->cap) return 0;
    id = key(id);
    for (uint64_t i = rng_hash64(id) & (uint64_t)(s->cap - 1); s->slots[i]; i = (i + 1) & (uint64_t)(s->cap - 1))
        if (s->slots[i] == id) return 1;
    return 0;
}

uint64_t *idset_list(const IdSet *s, int *count) {
    uint64_t *out = xmalloc(sizeof(uint64_t) * (size_t)(s->count ? s->count : 1));
    int k = 0;
    for (int i = 0; i < s->cap; i++)
        if (s->slots[i]) out[k++] = s->slots[i];
    *count = k;
    return out;
}

void idset_free(IdSet *s) {
    free(s->slots);
    memset(s, 0, sizeof *s);
}

void pools_record(ProblemPools *p, uint64_t id, double mean_reward, double easy_threshold, double hard_threshold) {
    if (mean_reward >= easy_threshold) idset_add(&p->easy, id);
    else if (mean_reward <= hard_threshold) idset_add(&p->hard, id);
}

int pools_skip(const ProblemPools *p, uint64_t id, uint64_t index, uint64_t seed, double easy_keep, double hard_keep) {
    double keep;
    if (idset_has(&p->easy, id)) keep = easy_keep;
    else if (idset_has(&p->hard, id)) keep = hard_keep;
    else return 0;
    Rng r;
    rng_seed_tuple(&r, 3, (uint64_t[]){seed ^ 0x9001ULL, id, index});
    return rng_uniform(&r) >= keep;
}

void pools_free(ProblemPools *p) {
    idset_free(&p->easy);
    idset_free(&p->hard);
}
