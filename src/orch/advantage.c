// Group advantages (see advantage.h).
#include "orch/advantage.h"

#include <math.h>

void compute_advantages(const double *rewards, const int *lengths, int n, int std_normalize, int length_weighted,
                        double *adv) {
    if (n <= 0) return;
    double baseline = 0, weight = 0;
    for (int i = 0; i < n; i++) {
        double w = length_weighted ? (double)(lengths[i] > 0 ? lengths[i] : 1) : 1.0;
        baseline += w * rewards[i];
        weight += w;
    }
    baseline /= weight;
    double var = 0;
    for (int i = 0; i < n; i++) var += (rewards[i] - baseline) * (rewards[i] - baseline);
    double std = n > 1 ? sqrt(var / (n - 1)) : 0.0;
    for (int i = 0; i < n; i++) {
        adv[i] = rewards[i] - baseline;
        if (std_normalize) adv[i] = std > 1e-8 ? adv[i] / (std + 1e-6) : 0.0;
    }
}

int advantages_all_zero(const double *adv, int n) {
    for (int i = 0; i < n; i++)
        if (fabs(adv[i]) > 1e-9) return 0;
    return 1;
}
