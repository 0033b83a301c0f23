// The RL learning rule on per-token logprobs (DESIGN.md section 3). The model gives logp_train
// for every target token; a loss here turns it into a scalar and d loss / d logp_train per token,
// which the model's backward pass takes as its per-token weights. One function per loss:
//
//   icepop  log_r = logp_train - logp_infer, r = exp(log_r); a token is masked when
//           r < mask_low or r > mask_high, a whole sample when its smallest r < seq_mask_low;
//           per-token loss -r*A (gradient through r) + kl_tau*(r*log_r - r + 1), an estimate
//           of KL(pi_train || pi_infer) from pi_infer's samples: 0 on-policy, and its gradient
//           kl_tau*r*log_r pulls the policy back toward the one that sampled (as prime-rl's
//           coefficient r*(A - kl_tau*log_r)).
//   gspo    sequence ratio s = exp(mean log_r over the sample's tokens); per-token loss
//           -min(s*A, clip(s, 1-clip_low, 1+clip_high)*A), the same for each token of a sample.
//   dppo    a token is masked when its probability already moved more than dppo_delta in the
//           direction its advantage pushes (p_train - p_infer > delta with A > 0, or
//           p_infer - p_train > delta with A < 0); per-token loss -r*A + kl_tau*(log_r)^2.
//   sft     -logp on every loss token (the warm-up).
//
// Normalisation: the summed per-token loss is divided by `norm`, the number of loss tokens
// summed over every trainer rank for the whole step, so packing, micro-batching and data
// parallelism do not change the gradient. Tokens masked by a rule still count in norm.
#pragma once
#include <stdint.h>

#include "core/config.h"

typedef enum { LOSS_ICEPOP = 0, LOSS_GSPO = 1, LOSS_DPPO = 2, LOSS_SFT = 3 } LossType;

typedef struct {
    LossType type;
    double mask_low, mask_high, seq_mask_low, kl_tau;
    double gspo_clip_low, gspo_clip_high;
    double dppo_delta;
} LossConfig;

// Sums over tokens, to be all-reduced across trainer ranks and turned into the logged means.
typedef struct {
    double loss;            // sum of per-token losses / norm (so the sum over ranks is the loss)
    double tokens;          // loss tokens seen
    double masked_low;      // tokens masked for a low ratio (icepop), clipped below (gspo), or by dppo's rule
    double masked_high;     // tokens masked for a high ratio (icepop) or clipped above (gspo)
    double masked_seq;      // tokens in samples masked as a whole
    double mismatch_kl;     // sum of r - log_r - 1
    double entropy;         // sum of per-token entropy (filled by the caller)
} LossStats;

int loss_type_parse(const char *name, LossType *out);
void loss_config_from(const Config *cfg, LossConfig *lc);

// One packed row (or several rows back to back) of n tokens. Samples are contiguous runs of
// equal `sample` ids and never span two calls. Writes d_logp (n) (0 where mask is 0) and adds
// to stats. logp (n): trainer logprobs; logp_infer, advantage, mask, sample (n): from the batch.
void loss_forward_backward(const LossConfig *lc, int n, const float *logp, const float *logp_infer,
                           const float *advantage, const uint8_t *mask, const int32_t *sample, double norm,
                           float *d_logp, LossStats *stats);
