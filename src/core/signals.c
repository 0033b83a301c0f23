// Signal flag for preemption (see signals.h).
#include "core/signals.h"

#include <signal.h>
#include <string.h>

static volatile sig_atomic_t g_stop = 0;

static void on_signal(int sig) { g_stop = sig; }

void signals_install(void) {
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_signal;
    sigemptyset(&sa.sa_mask);
    sa.sa_flags = SA_RESTART;
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGUSR1, &sa, NULL);
    // A file-size limit (or quota) makes writes fail with EFBIG instead of killing the rank, so a
    // checkpoint that cannot be written is an error the run reports, not a crash.
    signal(SIGXFSZ, SIG_IGN);
}

int signals_stop_requested(void) { return (int)g_stop; }
