/*
 * A full serving loop through the C ABI, driven by a seeded LCG: random arrivals (some with
 * shared prompt prefixes), random output lengths, finishes by AUGUR_RESULT_FINISHED, pauses
 * (AUGUR_RESULT_PAUSE, later augur_resume), aborts, a host pool (swaps) and a small device
 * pool (preemptions). It prints one line per step: the plan (entries with their block-table
 * deltas, swap/copy pairs, preemptions, drops), the finished requests and the engine's
 * counters.
 *
 * Its Rust twin, examples/serving_loop.rs, runs the identical loop on augur_core's Engine
 * directly (Engine::complete_entries with EntryResult, positional like this file) and must
 * print identical lines: tests/c/run diffs the two outputs. Odd steps here report with
 * augur_complete_except (only the non-default results), even steps with augur_complete, so
 * the diff also shows that the sparse form leaves the engine where the full one does.
 *
 * Usage: test_serving_loop SEED
 */

#include "augur.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define CHECK(e, cond)                                                                   \
    do {                                                                                 \
        if (!(cond)) {                                                                   \
            fprintf(stderr, "%s:%d: check failed: %s (last error: %s)\n", __FILE__,      \
                    __LINE__, #cond, augur_engine_last_error(e));                        \
            exit(1);                                                                     \
        }                                                                                \
    } while (0)

#define CHECK_OK(e, call) CHECK(e, (call) == AUGUR_OK)

/* The workload's shape; the Rust twin has the same constants. */
enum {
    N_REQ = 240,       /* requests in all */
    MAX_LIVE = 24,     /* = max_requests */
    MAX_STEPS = 6000,  /* the loop must drain before this */
    BLOCK = 4,
    MAX_HASHES = 16
};

/* 64-bit LCG (Knuth's MMIX constants); the high bits are used. */
static uint64_t lcg_state;
static uint32_t rnd(uint32_t n) {
    lcg_state = lcg_state * 6364136223846793005ULL + 1442695040888963407ULL;
    return (uint32_t)(lcg_state >> 33) % n;
}

enum { UNBORN = 0, LIVE = 1, PAUSED = 2, DONE = 3 };

static augur_request handle_of[N_REQ + 1];
static int state_of[N_REQ + 1];
static uint32_t target_of[N_REQ + 1];
static uint32_t generated_of[N_REQ + 1];
static int pause_used[N_REQ + 1];
static uint64_t resume_at[N_REQ + 1];

/* The KV-event subscriber's view, replayed from the drained events alone (what a cluster router
 * keeps per replica): the hash each (tier, block) caches. A Stored event must name a block not
 * already cached, a Removed event one that is, with the same hash. */
enum { DEVICE_BLOCKS = 40, HOST_BLOCKS = 24, EVENT_RING = 10, EVENT_CHUNK = 8 };
static int cached_dev[DEVICE_BLOCKS], cached_host[HOST_BLOCKS];
static uint64_t hash_dev[DEVICE_BLOCKS], hash_host[HOST_BLOCKS];
static uint64_t next_event_seq;

static int replay_event(const augur_kv_event *ev) {
    if (ev->seq != next_event_seq++) return 0;
    if (ev->kind == AUGUR_KV_EVENT_ALL_CLEARED) {
        printf(" C");
        memset(cached_dev, 0, sizeof cached_dev);
        memset(cached_host, 0, sizeof cached_host);
        return ev->tier == AUGUR_TIER_NONE;
    }
    int dev = ev->tier == AUGUR_TIER_DEVICE;
    if (!dev && ev->tier != AUGUR_TIER_HOST) return 0;
    if (ev->block >= (dev ? DEVICE_BLOCKS : HOST_BLOCKS)) return 0;
    int *cached = dev ? &cached_dev[ev->block] : &cached_host[ev->block];
    uint64_t *hash = dev ? &hash_dev[ev->block] : &hash_host[ev->block];
    if (ev->kind == AUGUR_KV_EVENT_STORED) {
        printf(" S%c%" PRIu32 ":%" PRIu64, dev ? 'd' : 'h', ev->block, ev->hash);
        if (ev->has_parent) printf("<%" PRIu64, ev->parent_hash);
        if (*cached || ev->tokens != BLOCK || ev->block_size != BLOCK) return 0;
        *cached = 1;
        *hash = ev->hash;
        return 1;
    }
    printf(" R%c%" PRIu32 ":%" PRIu64, dev ? 'd' : 'h', ev->block, ev->hash);
    if (ev->kind != AUGUR_KV_EVENT_REMOVED || !*cached || *hash != ev->hash) return 0;
    *cached = 0;
    return 1;
}

static uint32_t count_cached(const int *cached, size_t n) {
    uint32_t c = 0;
    for (size_t i = 0; i < n; i++) c += (uint32_t)cached[i];
    return c;
}

static void print_pairs(const char *name, const augur_block_pair *p, size_t n) {
    printf(" %s=[", name);
    for (size_t i = 0; i < n; i++) printf("%s%" PRIu32 ">%" PRIu32, i ? "," : "", p[i].src, p[i].dst);
    printf("]");
}

int main(int argc, char **argv) {
    if (argc != 2) {
        fprintf(stderr, "usage: %s SEED\n", argv[0]);
        return 2;
    }
    lcg_state = strtoull(argv[1], NULL, 10);

    augur_config cfg;
    CHECK_OK(NULL, augur_config_default(&cfg, BLOCK, DEVICE_BLOCKS, MAX_LIVE));
    cfg.host_blocks = HOST_BLOCKS;
    cfg.kv_event_capacity = EVENT_RING;
    cfg.max_running = 8;
    cfg.token_budget = 48;
    cfg.prefill_chunk = 16;
    cfg.preemption = AUGUR_PREEMPT_AUTO;
    cfg.pause = AUGUR_PAUSE_AUTO;
    char reason[256] = "";
    if (augur_config_validate(&cfg, reason, sizeof reason) != AUGUR_OK) {
        fprintf(stderr, "invalid config: %s\n", reason);
        return 1;
    }
    augur_engine *e = NULL;
    CHECK_OK(NULL, augur_engine_new(&cfg, &e));

    uint32_t next_id = 1, live = 0, done = 0;
    uint64_t pauses = 0, resumes = 0, aborts = 0;
    augur_entry_result results[64];
    augur_entry_exception exceptions[64];
    uint64_t sparse_exceptions = 0;
    uint64_t hashes[MAX_HASHES];
    augur_stats st;
    memset(&st, 0, sizeof st);

    uint64_t t;
    for (t = 1; t <= MAX_STEPS && done < N_REQ; t++) {
        uint64_t now = t * 1000;
        printf("t=%" PRIu64, t);

        /* Arrivals. */
        uint32_t arrivals = rnd(3);
        for (uint32_t a = 0; a < arrivals; a++) {
            if (next_id > N_REQ || live >= MAX_LIVE) break;
            uint32_t id = next_id++;
            uint32_t prompt = 1 + rnd(40);
            uint32_t out = 1 + rnd(48);
            uint32_t noise = rnd(9);
            double predicted = (double)out + (double)noise - 4.0;
            if (predicted < 0) predicted = 0;
            augur_request_desc d;
            memset(&d, 0, sizeof d);
            d.external_id = id;
            d.flags = AUGUR_DESC_PREDICTION;
            d.prompt_tokens = prompt;
            d.predicted_output_tokens = predicted;
            if (rnd(4) == 0) {
                d.flags |= AUGUR_DESC_MAX_OUTPUT;
                d.max_output_tokens = 1 + rnd(48);
            }
            if (rnd(3) == 0) {
                /* A shared prefix: every request of a group has the same block hashes. */
                uint32_t group = rnd(4);
                uint32_t n = prompt / BLOCK;
                for (uint32_t j = 0; j < n; j++) hashes[j] = (uint64_t)group * 1000 + j + 1;
                d.prompt_block_hashes = hashes;
                d.prompt_block_hashes_len = n;
            }
            CHECK_OK(e, augur_add_request(e, &d, now, &handle_of[id]));
            state_of[id] = LIVE;
            target_of[id] = out;
            live++;
            printf(" +%" PRIu32 "/%" PRIu32 "/%" PRIu32, id, prompt, out);
            if (d.flags & AUGUR_DESC_MAX_OUTPUT) printf("/cap%" PRIu32, d.max_output_tokens);
            if (d.prompt_block_hashes_len) printf("/h%zu", d.prompt_block_hashes_len);
        }

        /* Now and then an abort of a random live request (paused ones included). */
        if (live > 0 && rnd(100) < 4) {
            uint32_t k = rnd(live);
            for (uint32_t id = 1; id < next_id; id++) {
                if (state_of[id] != LIVE && state_of[id] != PAUSED) continue;
                if (k-- == 0) {
                    CHECK_OK(e, augur_abort(e, handle_of[id], now));
                    state_of[id] = DONE;
                    live--;
                    done++;
                    aborts++;
                    printf(" x%" PRIu32, id);
                    break;
                }
            }
        }

        /* Paused requests whose external call returned. */
        for (uint32_t id = 1; id < next_id; id++) {
            if (state_of[id] != PAUSED || resume_at[id] > t) continue;
            uint32_t appended = rnd(6);
            CHECK_OK(e, augur_resume(e, handle_of[id], appended, now));
            state_of[id] = LIVE;
            resumes++;
            printf(" r%" PRIu32 "/%" PRIu32, id, appended);
        }

        augur_plan p;
        CHECK_OK(e, augur_schedule(e, now, &p));
        CHECK(e, p.step == t);
        CHECK(e, p.entries_len <= sizeof results / sizeof results[0]);
        printf(" |");
        for (size_t k = 0; k < p.entries_len; k++) {
            const augur_plan_entry *en = &p.entries[k];
            printf(" %" PRIu64 ":%c%s:%" PRIu32 ":%" PRIu32 ":%" PRIu32 ":[", en->external_id,
                   en->kind == AUGUR_ENTRY_PREFILL ? 'P' : 'D', en->samples ? "s" : "",
                   en->tokens, en->computed_before, en->table_start);
            CHECK(e, (size_t)en->blocks_offset + en->blocks_len <= p.blocks_len);
            for (uint32_t b = 0; b < en->blocks_len; b++)
                printf("%s%" PRIu32, b ? "," : "", p.blocks[en->blocks_offset + b]);
            printf("]");
        }
        print_pairs("out", p.swap_out, p.swap_out_len);
        print_pairs("in", p.swap_in, p.swap_in_len);
        print_pairs("cp", p.copies, p.copies_len);
        printf(" pre=[");
        for (size_t k = 0; k < p.preempted_len; k++)
            printf("%s%" PRIu64 ":%" PRIu32 ":%" PRIu32, k ? "," : "", p.preempted[k].external_id,
                   p.preempted[k].kind, p.preempted[k].cause);
        printf("] drop=[");
        for (size_t k = 0; k < p.dropped_len; k++) {
            uint64_t id = p.dropped[k].external_id;
            printf("%s%" PRIu64 ":%" PRIu32, k ? "," : "", id, p.dropped[k].reason);
            CHECK(e, id >= 1 && id < next_id && state_of[id] == LIVE);
            state_of[id] = DONE;
            live--;
            done++;
        }
        printf("]");

        /* Results, by position. The decisions use only this loop's own state and the LCG. */
        for (size_t k = 0; k < p.entries_len; k++) {
            const augur_plan_entry *en = &p.entries[k];
            uint64_t id = en->external_id;
            augur_entry_result *r = &results[k];
            memset(r, 0, sizeof *r);
            if (!en->samples) continue;
            r->tokens = 1;
            generated_of[id]++;
            if (generated_of[id] >= target_of[id]) {
                r->flags = AUGUR_RESULT_FINISHED;
            } else if (!pause_used[id] && rnd(100) < 6) {
                r->flags = AUGUR_RESULT_PAUSE;
                r->pause_duration_us = 1000 * (uint64_t)(1 + rnd(20));
                pause_used[id] = 1;
                resume_at[id] = t + 1 + rnd(8);
                state_of[id] = PAUSED;
                pauses++;
            }
        }
        if (t % 2 == 0) {
            CHECK_OK(e, augur_complete(e, p.entries_len ? results : NULL, p.entries_len, now));
        } else {
            /* Odd steps report sparsely: only the results that are not the entry's default
             * (one token where it samples, no flags), last entry first. The engine must end
             * exactly where augur_complete leaves it: the Rust twin completes every step with
             * all results, and the outputs are diffed. */
            size_t nx = 0;
            for (size_t k = p.entries_len; k-- > 0;) {
                const augur_entry_result *r = &results[k];
                if (r->flags != 0 || r->tokens != (p.entries[k].samples ? 1u : 0u)) {
                    exceptions[nx].entry = (uint32_t)k;
                    exceptions[nx].result = *r;
                    nx++;
                }
            }
            CHECK_OK(e, augur_complete_except(e, nx ? exceptions : NULL, nx, now));
            sparse_exceptions += nx;
        }

        const augur_finished *f = NULL;
        size_t nf = 0;
        CHECK_OK(e, augur_last_finished(e, &f, &nf));
        printf(" fin=[");
        for (size_t k = 0; k < nf; k++) {
            uint64_t id = f[k].external_id;
            printf("%s%" PRIu64 ":%" PRIu32 ":%" PRIu32, k ? "," : "", id, f[k].reason,
                   f[k].generated_tokens);
            CHECK(e, id >= 1 && id < next_id && state_of[id] != DONE && state_of[id] != UNBORN);
            state_of[id] = DONE;
            live--;
            done++;
        }
        printf("]");

        CHECK_OK(e, augur_engine_stats(e, &st));
        printf(" st=%" PRIu32 "/%" PRIu32 "/%" PRIu32 "/%" PRIu32, st.waiting, st.running,
               st.swapped, st.paused);
        printf(" n=%" PRIu64 "/%" PRIu64 "/%" PRIu64 "/%" PRIu64 "/%" PRIu64, st.steps, st.added,
               st.finished, st.aborted, st.dropped);
        printf(" pre=%" PRIu64 "/%" PRIu64 "/%" PRIu64 "/%" PRIu64, st.preemptions_recompute,
               st.preemptions_swap, st.preemptions_keep, st.preemptions_for_rank);
        printf(" pause=%" PRIu64 "/%" PRIu64 "/%" PRIu64 "/%" PRIu64, st.pauses_preserved,
               st.pauses_discarded, st.pauses_swapped, st.idle_evicted);
        printf(" tok=%" PRIu64 "/%" PRIu64 "/%" PRIu64 "/%" PRIu64 "/%" PRIu64,
               st.recomputed_tokens, st.prefix_hit_tokens, st.prompt_tokens_admitted,
               st.predicted_backlog_tokens, st.hashes_dropped);
        printf(" dev=%" PRIu32 "/%" PRIu32 "/%" PRIu32 "/%" PRIu32, st.device_blocks_total,
               st.device_blocks_free, st.device_blocks_cached, st.device_blocks_in_use);
        printf(" host=%" PRIu32 "/%" PRIu32 "/%" PRIu32 "/%" PRIu32, st.host_blocks_total,
               st.host_blocks_free, st.host_blocks_cached, st.host_blocks_in_use);
        printf(" kv=%" PRIu64 "/%" PRIu64 "/%" PRIu64 "/%" PRIu64 "/%" PRIu64,
               st.kv_prefix_hit_blocks, st.kv_evictions, st.kv_cow_copies,
               st.kv_swapped_out_blocks, st.kv_swapped_in_blocks);

        /* KV events, drained in small chunks until one comes back short. */
        augur_kv_event events[EVENT_CHUNK];
        size_t ne;
        printf(" ev=[");
        do {
            ne = SIZE_MAX;
            CHECK_OK(e, augur_drain_kv_events(e, events, EVENT_CHUNK, &ne));
            CHECK(e, ne <= EVENT_CHUNK);
            for (size_t k = 0; k < ne; k++) CHECK(e, replay_event(&events[k]));
        } while (ne == EVENT_CHUNK);
        printf("]\n");
    }
    CHECK(e, done == N_REQ);
    CHECK(e, live == 0);
    /* The sparse steps listed finishes and pauses (not only empty exception lists). */
    CHECK(e, sparse_exceptions > 50);
    CHECK(e, st.device_blocks_in_use == 0 && st.host_blocks_in_use == 0);
    /* With nothing in use, every cached block is a free cached one: the replayed view must
     * count exactly what the engine's gauges say. */
    augur_kv_event_stats es;
    CHECK_OK(e, augur_engine_kv_event_stats(e, &es));
    CHECK(e, es.pending == 0 && es.resyncing == 0 && es.delivered == next_event_seq);
    CHECK(e, count_cached(cached_dev, DEVICE_BLOCKS) == st.device_blocks_cached);
    CHECK(e, count_cached(cached_host, HOST_BLOCKS) == st.host_blocks_cached);
    printf("summary steps=%" PRIu64 " finished=%" PRIu64 " aborted=%" PRIu64 " dropped=%" PRIu64
           " preemptions=%" PRIu64 " swapped_out_blocks=%" PRIu64 " swapped_in_blocks=%" PRIu64
           " pauses=%" PRIu64 " resumes=%" PRIu64 " cow_copies=%" PRIu64 " prefix_hit_tokens=%" PRIu64
           "\n",
           t - 1, st.finished, aborts, st.dropped,
           st.preemptions_recompute + st.preemptions_swap + st.preemptions_keep,
           st.kv_swapped_out_blocks, st.kv_swapped_in_blocks, pauses, resumes, st.kv_cow_copies,
           st.prefix_hit_tokens);
    printf("events delivered=%" PRIu64 " dropped=%" PRIu64 " resyncs=%" PRIu64
           " cached_device=%" PRIu32 "\n",
           es.delivered, es.dropped, es.resyncs, count_cached(cached_dev, DEVICE_BLOCKS));
    augur_engine_free(e);
    return 0;
}
