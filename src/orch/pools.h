// Easy and hard problem pools, as prime-rl's buffer keeps them: a problem whose group's mean
// reward reaches orchestrator.easy_threshold joins the easy pool, one at or below
// hard_threshold the hard pool. When a pooled problem comes up again (datasets that wrap around,
// such as jsonl and code), it is asked again only with probability easy_keep / hard_keep, so
// steps are spent where the policy can still learn. Problems are known by their stable id.
#pragma once
#include <stdint.h>

typedef struct {
    uint64_t *slots;  // open addressing; 0 = empty (ids of 0 are stored as 1)
    int cap, count;
} IdSet;

void idset_add(IdSet *s, uint64_t id);
int idset_has(const IdSet *s, uint64_t id);
// The members (heap array of count ids, any order).
uint64_t *idset_list(const IdSet *s, int *count);
void idset_free(IdSet *s);

typedef struct {
    IdSet easy, hard;
} ProblemPools;

// Records a finished group's mean reward for problem `id`.
void pools_record(ProblemPools *p, uint64_t id, double mean_reward, double easy_threshold, double hard_threshold);
// Whether problem `id` (handed out as index `index`) is skipped this time; deterministic in
// (seed, id, index).
int pools_skip(const ProblemPools *p, uint64_t id, uint64_t index, uint64_t seed, double easy_keep, double hard_keep);
void pools_free(ProblemPools *p);
