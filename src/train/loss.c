// icepop, gspo, dppo and sft losses with their gradients w.r.t. the trainer logprobs (see loss.h).
#include "train/loss.h"

#include <math.h>
#include <string.h>

int loss_type_parse(const char *name, LossType *out) {
    static const char *names[] = {"icepop", "gspo", "dppo", "sft"};
    for (int i = 0; i < 4; i++)
        if (strcmp(name, names[i]) == 0) return *out = (LossType)i, 0;
    return -1;
}

void loss_config_from(const Config *cfg, LossConfig *lc) {
    memset(lc, 0, sizeof *lc);
    CHECK(loss_type_parse(cfg->loss.type, &lc->type) == 0, "loss.type is one of icepop|gspo|dppo", "unknown loss %s",
          cfg->loss.type);
    lc->mask_low = cfg->loss.mask_low;
    lc->mask_high = cfg->loss.mask_high;
    lc->seq_mask_low = cfg->loss.seq_mask_low;
    lc->kl_tau = cfg->loss.kl_tau;
    lc->gspo_clip_low = cfg->loss.gspo_clip_low;
    lc->gspo_clip_high = cfg->loss.gspo_clip_high;
    lc->dppo_delta = cfg->loss.dppo_delta;
}

// Statistics shared by every RL loss: the token count and the mismatch KL r - log r - 1.
static void count_token(LossStats *st, double log_r) {
    st->tokens += 1;
    st->mismatch_kl += exp(log_r) - log_r - 1.0;
}

// icepop over one sample's tokens [a, b).
static void icepop_sample(const LossConfig *lc, int a, int b, const float *logp, const float *logp_infer,
                          const float *adv, const uint8_t *mask, double norm, float *d, LossStats *st) {
    double min_r = INFINITY;
    for (int i = a; i < b; i++)
        if (mask[i]) min_r = fmin(min_r, exp((double)logp[i] - logp_infer[i]));
    int seq_masked = lc->seq_mask_low > 0 && min_r < lc->seq_mask_low;
    for (int i = a; i < b; i++) {
        if (!mask[i]) continue;
        double log_r = (double)logp[i] - logp_infer[i], r = exp(log_r);
        count_token(st, log_r);
        if (seq_masked) { st->masked_seq += 1; continue; }
        if (r < lc->mask_low) { st->masked_low += 1; continue; }
        if (r > lc->mask_high) { st->masked_high += 1; continue; }
        st->loss += (-r * adv[i] + lc->kl_tau * (r * log_r - r + 1.0)) / norm;
        d[i] = (float)((-r * adv[i] + lc->kl_tau * r * log_r) / norm);
    }
}

// gspo over one sample's tokens [a, b): the ratio of the whole sequence decides.
static void gspo_sample(const LossConfig *lc, int a, int b, const float *logp, const float *logp_infer,
                        const float *adv, const uint8_t *mask, double norm, float *d, LossStats *st) {
    double sum_log_r = 0;
    int count = 0;
    double A = 0;
    for (int i = a; i < b; i++) {
        if (!mask[i]) continue;
        double log_r = (double)logp[i] - logp_infer[i];
        sum_log_r += log_r;
        count++;
        A = adv[i];
        count_token(st, log_r);
    }
    if (count == 0) return;
    double s = exp(sum_log_r / count);
    double clipped = fmin(fmax(s, 1.0 - lc->gspo_clip_low), 1.0 + lc->gspo_clip_high);
    // Pessimistic choice as in PPO: the smaller objective s*A vs clip(s)*A; no gradient when clipped.
    int use_clipped = clipped * A < s * A;
    double per_token = -(use_clipped ? clipped : s) * A;
    st->loss += per_token * count / norm;
    if (use_clipped) {  // s below 1 - clip_low (with A < 0) or above 1 + clip_high (with A > 0)
        if (s < 1.0) st->masked_low += count;
        else st->masked_high += count;
        return;
    }
    // d/dlogp_t of sum over the sample's tokens of -s*A, with d s/d logp_t = s / count.
    for (int i = a; i < b; i++)
        if (mask[i]) d[i] = (float)(-s * A / norm);
}

// dppo over one sample's tokens [a, b).
static void dppo_sample(const LossConfig *lc, int a, int b, const float *logp, const float *logp_infer,
                        const float *adv, const uint8_t *mask, double norm, float *d, LossStats *st) {
    for (int i = a; i < b; i++) {
        if (!mask[i]) continue;
        double log_r = (double)logp[i] - logp_infer[i], r = exp(log_r);
        count_token(st, log_r);
        double moved = exp((double)logp[i]) - exp((double)logp_infer[i]);
        if ((adv[i] > 0 && moved > lc->dppo_delta) || (adv[i] < 0 && -moved > lc->dppo_delta)) {
            st->masked_low += 1;
            continue;
        }
        st->loss += (-r * adv[i] + lc->kl_tau * log_r * log_r) / norm;
        d[i] = (float)((-r * adv[i] + 2.0 * lc->kl_tau * log_r) / norm);
    }
}

static void sft_sample(int a, int b, const float *logp, const uint8_t *mask, double norm, float *d, LossStats *st) {
    for (int i = a; i < b; i++) {
        if (!mask[i]) continue;
        st->tokens += 1;
        st->loss += -(double)logp[i] / norm;
        d[i] = (float)(-1.0 / norm);
    }
}

void loss_forward_backward(const LossConfig *lc, int n, const float *logp, const float *logp_infer,
                           const float *advantage, const uint8_t *mask, const int32_t *sample, double norm,
                           float *d_logp, LossStats *stats) {
    memset(d_logp, 0, sizeof(float) * (size_t)n);
    if (norm <= 0) return;
    for (int a = 0; a < n;) {
        int b = a + 1;
        while (b < n && sample[b] == sample[a]) b++;
        switch (lc->type) {
            case LOSS_ICEPOP: icepop_sample(lc, a, b, logp, logp_infer, advantage, mask, norm, d_logp, stats); break;
            case LOSS_GSPO: gspo_sample(lc, a, b, logp, logp_infer, advantage, mask, norm, d_logp, stats); break;
            case LOSS_DPPO: dppo_sample(lc, a, b, logp, logp_infer, advantage, mask, norm, d_logp, stats); break;
            case LOSS_SFT: sft_sample(a, b, logp, mask, norm, d_logp, stats); break;
        }
        a = b;
    }
}
