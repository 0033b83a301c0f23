// Group-relative advantages (DESIGN.md section 3): A_i = r_i - baseline, with the baseline the
// mean reward of the group (Dr. GRPO, the default), optionally the token-length-weighted mean,
// optionally divided by the group's reward std (original GRPO). A group whose advantages are
// all zero carries no learning signal and is dropped before packing (by default).
#pragma once

// rewards (n), lengths (n) completion tokens (used by the length-weighted baseline), adv (n) out.
void compute_advantages(const double *rewards, const int *lengths, int n, int std_normalize, int length_weighted,
                        double *adv);
int advantages_all_zero(const double *adv, int n);
