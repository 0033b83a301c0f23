// Run under `mpirun -np 4` by tests/integration/protocol.sh: every message type travels
// between real ranks of the job layout (orchestrator, two trainers, one inference rank) and
// arrives intact; the weight broadcast over the `weights` communicator delivers the buffer.
// Rank 0 prints one TAP line per check.
#include <stdlib.h>
#include <string.h>

#include "comm/layout.h"
#include "comm/mpi_check.h"
#include "comm/protocol.h"
#include "comm/transport.h"

static int g_failures = 0;

static void report(int rank, const char *name, int ok) {
    // Every rank's verdict reaches rank 0, which prints it.
    int all_ok = 0;
    MPI_Reduce(&ok, &all_ok, 1, MPI_INT, MPI_LAND, 0, MPI_COMM_WORLD);
    if (rank == 0) {
        printf("%s - %s\n", all_ok ? "ok" : "not ok", name);
        fflush(stdout);
        g_failures += !all_ok;
    }
}

int main(int argc, char **argv) {
    Config cfg;
    Layout L;
    job_start(&argc, &argv, "protocol-test", &cfg, &L);
    ProtoLimits lim;
    proto_limits_from_config(&cfg, 300, &lim);
    const int inference = L.first_inference;
    Outbox out;
    outbox_init(&out);
    ErrorBuf err;

    // 1. Requests: orchestrator -> inference; completions back.
    int ok = 1;
    if (L.role == ROLE_ORCHESTRATOR) {
        Request q[2];
        int32_t prompt[3] = {1, 2, 3};
        for (int i = 0; i < 2; i++) {
            memset(&q[i], 0, sizeof q[i]);
            q[i].id = 100 + (uint64_t)i;
            q[i].n_prompt = 3;
            q[i].prompt = prompt;
            q[i].max_tokens = 8;
            q[i].temperature = 1;
            q[i].top_p = 1;
        }
        ByteWriter w;
        bw_init(&w, 0);
        encode_requests(&w, q, 2);
        outbox_send(&out, &w, inference, MSG_REQUESTS, MPI_COMM_WORLD);
        Received r;
        msg_recv_wait(MPI_COMM_WORLD, inference, MSG_COMPLETIONS, &r);
        Completion *c;
        int n;
        ok = decode_completions(r.data, r.len, &lim, &c, &n, NULL, &err) == 0 && n == 2 && c[1].id == 101 && c[1].n == 2 &&
             c[1].tokens[1] == 7 && c[1].versions[0] == 0;
        if (ok) completions_free(c, n);
        received_free(&r);
    } else if (L.role == ROLE_INFERENCE) {
        Received r;
        msg_recv_wait(MPI_COMM_WORLD, 0, MSG_REQUESTS, &r);
        Request *q;
        int n;
        ok = decode_requests(r.data, r.len, &lim, &q, &n, &err) == 0 && n == 2 && q[0].prompt[2] == 3;
        Completion c[2];
        int32_t tokens[2] = {5, 7}, versions[2] = {0, 0};
        float logprobs[2] = {-0.5f, -1.5f};
        for (int i = 0; i < 2; i++) {
            memset(&c[i], 0, sizeof c[i]);
            c[i].id = ok ? q[i].id : 0;
            c[i].n = 2;
            c[i].tokens = tokens;
            c[i].logprobs = logprobs;
            c[i].versions = versions;
        }
        ByteWriter w;
        bw_init(&w, 0);
        encode_completions(&w, c, 2, NULL);
        outbox_send(&out, &w, 0, MSG_COMPLETIONS, MPI_COMM_WORLD);
        if (ok) requests_free(q, n);
        received_free(&r);
    }
    outbox_flush(&out);
    report(L.world_rank, "requests and completions between orchestrator and inference", ok);

    // 2. Batches: orchestrator -> each trainer, different rows for each; step-done back.
    ok = 1;
    if (L.role == ROLE_ORCHESTRATOR) {
        for (int t = 0; t < L.n_trainers; t++) {
            Batch b;
            batch_alloc(&b, 2, cfg.trainer.seq_len);
            b.step = 5;
            for (int row = 0; row < 2; row++) {
                b.row_len[row] = 4;
                for (int i = 0; i < 4; i++) {
                    size_t o = (size_t)row * (size_t)b.seq_len + (size_t)i;
                    b.input[o] = 10 * t + i;
                    b.target[o] = 10 * t + i + 1;
                    b.position[o] = i;
                    b.mask[o] = i > 0;
                }
            }
            ByteWriter w;
            bw_init(&w, 0);
            encode_batch(&w, &b);
            outbox_send(&out, &w, L.trainer_root + t, MSG_BATCH, MPI_COMM_WORLD);
            batch_free(&b);
        }
        Received r;
        msg_recv_wait(MPI_COMM_WORLD, L.trainer_root, MSG_STEP_DONE, &r);
        StepDone s;
        ok = decode_step_done(r.data, r.len, &lim, &s, &err) == 0 && s.step == 5 && s.version == 6 &&
             step_done_get(&s, "rows_total", 0) == 4;
        if (ok) step_done_free(&s);
        received_free(&r);
    } else if (L.role == ROLE_TRAINER) {
        Received r;
        msg_recv_wait(MPI_COMM_WORLD, 0, MSG_BATCH, &r);
        Batch b;
        ok = decode_batch(r.data, r.len, &lim, &b, &err) == 0 && b.step == 5 && b.n_rows == 2 &&
             b.input[b.seq_len + 2] == 10 * L.role_index + 2;
        int rows = ok ? b.n_rows : 0, total = 0;
        MPI_CHECK(MPI_Allreduce(&rows, &total, 1, MPI_INT, MPI_SUM, L.trainers));
        if (ok) batch_free(&b);
        received_free(&r);
        if (L.world_rank == L.trainer_root) {
            StepDone s = {.step = 5, .version = 6};
            step_done_add(&s, "rows_total", total);
            ByteWriter w;
            bw_init(&w, 0);
            encode_step_done(&w, &s);
            outbox_send(&out, &w, 0, MSG_STEP_DONE, MPI_COMM_WORLD);
            step_done_free(&s);
        }
    }
    outbox_flush(&out);
    report(L.world_rank, "batches to two trainers, gradient communicator, step-done back", ok);

    // 3. Weights: notice from the trainer root, broadcast on the weights communicator, loaded ack.
    ok = 1;
    enum { N = 100000 };
    if (L.weights != MPI_COMM_NULL) {
        float *params = malloc(sizeof(float) * N);
        if (L.world_rank == L.trainer_root) {
            for (int i = 0; i < N; i++) params[i] = (float)i * 0.5f;
            WeightsNotice wn = {.version = 1, .n_params = N};
            ByteWriter w;
            bw_init(&w, 0);
            encode_weights_notice(&w, &wn);
            outbox_send(&out, &w, inference, MSG_WEIGHTS, MPI_COMM_WORLD);
            MPI_Request req;
            MPI_CHECK(MPI_Ibcast(params, N, MPI_FLOAT, 0, L.weights, &req));
            mpi_wait_sleeping(&req);
        } else {
            Received r;
            msg_recv_wait(MPI_COMM_WORLD, L.trainer_root, MSG_WEIGHTS, &r);
            WeightsNotice wn;
            ok = decode_weights_notice(r.data, r.len, &wn, &err) == 0 && wn.version == 1 && wn.n_params == N;
            received_free(&r);
            MPI_Request req;
            MPI_CHECK(MPI_Ibcast(params, N, MPI_FLOAT, 0, L.weights, &req));
            mpi_wait_sleeping(&req);
            ok = ok && params[N - 1] == (float)(N - 1) * 0.5f;
            WeightsLoaded wl = {.version = 1, .rank = L.world_rank};
            ByteWriter w;
            bw_init(&w, 0);
            encode_weights_loaded(&w, &wl);
            outbox_send(&out, &w, 0, MSG_WEIGHTS_LOADED, MPI_COMM_WORLD);
        }
        free(params);
    } else if (L.role == ROLE_ORCHESTRATOR) {
        Received r;
        msg_recv_wait(MPI_COMM_WORLD, inference, MSG_WEIGHTS_LOADED, &r);
        WeightsLoaded wl;
        ok = decode_weights_loaded(r.data, r.len, &wl, &err) == 0 && wl.version == 1 && wl.rank == inference;
        received_free(&r);
    }
    outbox_flush(&out);
    report(L.world_rank, "weight notice, broadcast over the weights communicator, loaded ack", ok);

    // 4. Cancel and shutdown reach the inference and trainer ranks.
    ok = 1;
    if (L.role == ROLE_ORCHESTRATOR) {
        Cancel c = {.all = 1};
        ByteWriter w;
        bw_init(&w, 0);
        encode_cancel(&w, &c);
        outbox_send(&out, &w, inference, MSG_CANCEL, MPI_COMM_WORLD);
        for (int r = 1; r < L.world_size; r++) {
            ByteWriter s;
            bw_init(&s, 0);
            outbox_send(&out, &s, r, MSG_SHUTDOWN, MPI_COMM_WORLD);
        }
    } else {
        if (L.role == ROLE_INFERENCE) {
            Received r;
            msg_recv_wait(MPI_COMM_WORLD, 0, MSG_CANCEL, &r);
            Cancel c;
            ok = decode_cancel(r.data, r.len, &lim, &c, &err) == 0 && c.all == 1 && c.n == 0;
            received_free(&r);
        }
        Received r;
        msg_recv_wait(MPI_COMM_WORLD, 0, MSG_SHUTDOWN, &r);
        ok = ok && r.len == 0;
        received_free(&r);
    }
    outbox_free(&out);
    report(L.world_rank, "cancel and shutdown", ok);

    // 5. A malformed message is reported as an error with its reason, not a crash.
    ok = 1;
    if (L.role == ROLE_ORCHESTRATOR) {
        uint8_t junk[12] = {0x41, 0x53, 0x52, 0x4c, 101, 0, 0, 0, 0xff, 0xff, 0xff, 0x7f};
        ByteWriter w;
        bw_init(&w, 0);
        bw_put(&w, junk, sizeof junk);
        msg_send_now(&w, inference, MSG_REQUESTS, MPI_COMM_WORLD);
        bw_free(&w);
    } else if (L.role == ROLE_INFERENCE) {
        Received r;
        msg_recv_wait(MPI_COMM_WORLD, 0, MSG_REQUESTS, &r);
        Request *q;
        int n;
        ok = decode_requests(r.data, r.len, &lim, &q, &n, &err) == -1 && strstr(err.msg, "records");
        received_free(&r);
    }
    report(L.world_rank, "malformed message from a peer is rejected with a reason", ok);

    int failures = g_failures;
    MPI_Bcast(&failures, 1, MPI_INT, 0, MPI_COMM_WORLD);
    job_finish(&L);
    return failures ? 1 : 0;
}
