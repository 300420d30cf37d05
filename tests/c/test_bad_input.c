/*
 * Every bad input to the C ABI gets its documented status, writes no out-parameter, and
 * leaves the engine usable (checked by a normal call afterwards): NULL engines and NULL
 * out-pointers for every function, stale and forged handles, bad results, bad descriptors,
 * too small buffers, invalid configurations (the reason names the field), bad regions,
 * time going backwards, duplicate ids, and every status string.
 *
 * Poisoning (AUGUR_E_POISONED / AUGUR_E_PANIC) cannot be caused from C: it needs a bug inside
 * augur. It is unit-tested in Rust (ffi/src/engine.rs injects a panic; augur-core corrupts
 * an invariant from inside).
 *
 * Built by tests/c/run with -fsanitize=address,undefined and run with leak detection.
 */

#include "augur.h"

#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int checks;
static const char *const NONE = NULL;

/* Whether `msg` contains `needle` (always, for a NULL needle). */
static int mentions(const char *msg, const char *needle) {
    return needle == NULL || strstr(msg, needle) != NULL;
}

#define CHECK(e, cond)                                                                   \
    do {                                                                                 \
        checks++;                                                                        \
        if (!(cond)) {                                                                   \
            fprintf(stderr, "%s:%d: check failed: %s (last error: %s)\n", __FILE__,      \
                    __LINE__, #cond, augur_engine_last_error(e));                        \
            exit(1);                                                                     \
        }                                                                                \
    } while (0)

/* `call` returns `want`, and the engine's last error then contains `needle` (NULL: any). */
#define EXPECT(e, call, want, needle)                                                    \
    do {                                                                                 \
        augur_status s_ = (call);                                                        \
        checks++;                                                                        \
        if (s_ != (want)) {                                                              \
            fprintf(stderr, "%s:%d: %s gave %d (%s), want %d (last error: %s)\n",        \
                    __FILE__, __LINE__, #call, (int)s_, augur_status_str(s_), (int)(want), \
                    augur_engine_last_error(e));                                         \
            exit(1);                                                                     \
        }                                                                                \
        if (!mentions(augur_engine_last_error(e), (needle))) {                           \
            fprintf(stderr, "%s:%d: %s: last error \"%s\" does not mention \"%s\"\n",    \
                    __FILE__, __LINE__, #call, augur_engine_last_error(e), (needle));    \
            exit(1);                                                                     \
        }                                                                                \
    } while (0)

#define OK(e, call) EXPECT(e, call, AUGUR_OK, NONE)


static augur_config base_config(void) {
    augur_config c;
    augur_status s = augur_config_default(&c, 4, 32, 8);
    if (s != AUGUR_OK) {
        fprintf(stderr, "augur_config_default: %d\n", (int)s);
        exit(1);
    }
    c.max_running = 4;
    c.token_budget = 64;
    c.host_blocks = 8;
    return c;
}

static augur_engine *new_engine(void) {
    augur_config c = base_config();
    augur_engine *e = NULL;
    OK(NULL, augur_engine_new(&c, &e));
    CHECK(NULL, e != NULL);
    return e;
}

static augur_request_desc desc(uint64_t id, uint32_t prompt) {
    augur_request_desc d;
    memset(&d, 0, sizeof d);
    d.external_id = id;
    d.flags = AUGUR_DESC_PREDICTION;
    d.prompt_tokens = prompt;
    d.predicted_output_tokens = 8.0;
    return d;
}

static augur_request add(augur_engine *e, uint64_t id, uint32_t prompt, uint64_t now) {
    augur_request_desc d = desc(id, prompt);
    augur_request h = 0;
    OK(e, augur_add_request(e, &d, now, &h));
    CHECK(e, h != 0);
    return h;
}

static augur_stats stats(augur_engine *e) {
    augur_stats s;
    OK(e, augur_engine_stats(e, &s));
    return s;
}

/* The engine still works: a request goes through schedule and complete. */
static void still_usable(augur_engine *e, uint64_t id, uint64_t now) {
    augur_stats before = stats(e);
    augur_request h = add(e, id, 3, now);
    augur_plan p;
    OK(e, augur_schedule(e, now, &p));
    augur_entry_result r[16];
    memset(r, 0, sizeof r);
    CHECK(e, p.entries_len <= 16);
    int found = 0;
    for (size_t k = 0; k < p.entries_len; k++) {
        r[k].tokens = p.entries[k].samples ? 1 : 0;
        if (p.entries[k].handle == h) found = 1;
    }
    CHECK(e, found);
    OK(e, augur_complete(e, p.entries_len ? r : NULL, p.entries_len, now));
    CHECK(e, stats(e).steps == before.steps + 1);
    OK(e, augur_abort(e, h, now));
}

/* ----- NULL engines and NULL out-pointers, for every function ----- */

static void null_pointers(void) {
    augur_config c = base_config();
    augur_config c2 = c;
    size_t size = 7, align = 7;
    augur_engine *out_e = (augur_engine *)(uintptr_t)0x1;  /* must stay untouched */
    char reason[64] = "untouched";

    CHECK(NULL, augur_version() != NULL && strlen(augur_version()) > 0);
    EXPECT(NULL, augur_config_default(NULL, 4, 32, 8), AUGUR_E_NULL_POINTER, NONE);
    EXPECT(NULL, augur_config_validate(NULL, reason, sizeof reason), AUGUR_E_NULL_POINTER, NONE);
    CHECK(NULL, strstr(reason, "config") != NULL); /* the reason names the NULL argument */
    OK(NULL, augur_config_validate(&c, NULL, 0));
    EXPECT(NULL, augur_engine_layout(NULL, &size, &align), AUGUR_E_NULL_POINTER, NONE);
    EXPECT(NULL, augur_engine_layout(&c, NULL, &align), AUGUR_E_NULL_POINTER, NONE);
    EXPECT(NULL, augur_engine_layout(&c, &size, NULL), AUGUR_E_NULL_POINTER, NONE);
    CHECK(NULL, size == 7 && align == 7);
    EXPECT(NULL, augur_engine_new(NULL, &out_e), AUGUR_E_NULL_POINTER, NONE);
    EXPECT(NULL, augur_engine_new(&c, NULL), AUGUR_E_NULL_POINTER, NONE);
    OK(NULL, augur_engine_layout(&c, &size, &align));
    void *region = aligned_alloc(align, (size + align - 1) / align * align);
    CHECK(NULL, region != NULL);
    EXPECT(NULL, augur_engine_init(NULL, region, size, &out_e), AUGUR_E_NULL_POINTER, NONE);
    EXPECT(NULL, augur_engine_init(&c, NULL, size, &out_e), AUGUR_E_NULL_POINTER, NONE);
    EXPECT(NULL, augur_engine_init(&c, region, size, NULL), AUGUR_E_NULL_POINTER, NONE);
    CHECK(NULL, out_e == (augur_engine *)(uintptr_t)0x1);
    free(region);
    augur_engine_free(NULL); /* ignored */
    CHECK(NULL, strcmp(augur_engine_last_error(NULL), "engine is NULL") == 0);

    augur_engine *e = new_engine();
    augur_request h = add(e, 1, 6, 0);
    augur_request found = 0;
    augur_plan plan;
    augur_stats st;
    augur_request_info info;
    const augur_finished *fin = NULL;
    size_t n = 0;
    uint32_t table[16];
    uint64_t hashes[1] = {42};
    augur_entry_result res[1];
    memset(res, 0, sizeof res);

    EXPECT(NULL, augur_engine_config(NULL, &c2), AUGUR_E_NULL_POINTER, NONE);
    EXPECT(e, augur_engine_config(e, NULL), AUGUR_E_NULL_POINTER, "out");

    augur_request_desc d = desc(2, 5);
    augur_request h2 = 12345;
    EXPECT(NULL, augur_add_request(NULL, &d, 0, &h2), AUGUR_E_NULL_POINTER, NONE);
    EXPECT(e, augur_add_request(e, NULL, 0, &h2), AUGUR_E_NULL_POINTER, "desc");
    EXPECT(e, augur_add_request(e, &d, 0, NULL), AUGUR_E_NULL_POINTER, "out");
    CHECK(e, h2 == 12345);
    EXPECT(e, augur_find_request(e, 2, &found), AUGUR_E_UNKNOWN_ID, "2"); /* not added */
    CHECK(e, stats(e).added == 1);
    d.prompt_block_hashes_len = 1; /* a length with a NULL pointer */
    EXPECT(e, augur_add_request(e, &d, 0, &h2), AUGUR_E_NULL_POINTER, "prompt_block_hashes");

    EXPECT(NULL, augur_find_request(NULL, 1, &found), AUGUR_E_NULL_POINTER, NONE);
    EXPECT(e, augur_find_request(e, 1, NULL), AUGUR_E_NULL_POINTER, "out");
    EXPECT(NULL, augur_update_prediction(NULL, h, 3.0, 0), AUGUR_E_NULL_POINTER, NONE);
    EXPECT(NULL, augur_set_prompt_block_hashes(NULL, h, hashes, 1, 0), AUGUR_E_NULL_POINTER,
           NONE);
    EXPECT(e, augur_set_prompt_block_hashes(e, h, NULL, 1, 0), AUGUR_E_NULL_POINTER, "hashes");
    OK(e, augur_set_prompt_block_hashes(e, h, NULL, 0, 0)); /* NULL with length 0: none */
    EXPECT(NULL, augur_abort(NULL, h, 0), AUGUR_E_NULL_POINTER, NONE);
    EXPECT(NULL, augur_resume(NULL, h, 0, 0), AUGUR_E_NULL_POINTER, NONE);
    EXPECT(NULL, augur_schedule(NULL, 0, &plan), AUGUR_E_NULL_POINTER, NONE);
    EXPECT(e, augur_schedule(e, 0, NULL), AUGUR_E_NULL_POINTER, "out");
    CHECK(e, stats(e).steps == 0); /* nothing was scheduled */
    EXPECT(NULL, augur_last_plan(NULL, &plan), AUGUR_E_NULL_POINTER, NONE);
    EXPECT(e, augur_last_plan(e, NULL), AUGUR_E_NULL_POINTER, "out");
    EXPECT(NULL, augur_engine_stats(NULL, &st), AUGUR_E_NULL_POINTER, NONE);
    EXPECT(e, augur_engine_stats(e, NULL), AUGUR_E_NULL_POINTER, "out");
    {
        augur_kv_event ev[2];
        augur_kv_event_stats es;
        size_t w = 7;
        EXPECT(NULL, augur_drain_kv_events(NULL, ev, 2, &w), AUGUR_E_NULL_POINTER, NONE);
        EXPECT(e, augur_drain_kv_events(e, NULL, 2, &w), AUGUR_E_NULL_POINTER, "out");
        EXPECT(e, augur_drain_kv_events(e, ev, 2, NULL), AUGUR_E_NULL_POINTER, "written");
        CHECK(e, w == 7); /* untouched on failure */
        OK(e, augur_drain_kv_events(e, NULL, 0, &w)); /* NULL with room for none */
        CHECK(e, w == 0);
        EXPECT(NULL, augur_engine_kv_event_stats(NULL, &es), AUGUR_E_NULL_POINTER, NONE);
        EXPECT(e, augur_engine_kv_event_stats(e, NULL), AUGUR_E_NULL_POINTER, "out");
    }
    EXPECT(NULL, augur_request_get_info(NULL, h, &info), AUGUR_E_NULL_POINTER, NONE);
    EXPECT(e, augur_request_get_info(e, h, NULL), AUGUR_E_NULL_POINTER, "out");
    EXPECT(NULL, augur_last_finished(NULL, &fin, &n), AUGUR_E_NULL_POINTER, NONE);
    EXPECT(e, augur_last_finished(e, NULL, &n), AUGUR_E_NULL_POINTER, "out");
    EXPECT(e, augur_last_finished(e, &fin, NULL), AUGUR_E_NULL_POINTER, "len");

    /* A plan with one entry, so that the table is not empty and a result is due. */
    OK(e, augur_schedule(e, 1, &plan));
    CHECK(e, plan.entries_len == 1 && plan.entries[0].handle == h);
    EXPECT(NULL, augur_complete(NULL, res, 1, 1), AUGUR_E_NULL_POINTER, NONE);
    EXPECT(e, augur_complete(e, NULL, 1, 1), AUGUR_E_NULL_POINTER, "results");
    size_t written = 99;
    EXPECT(NULL, augur_request_block_table(NULL, h, 0, table, 16, &written),
           AUGUR_E_NULL_POINTER, NONE);
    EXPECT(e, augur_request_block_table(e, h, 0, NULL, 16, &written), AUGUR_E_NULL_POINTER,
           "out");
    EXPECT(e, augur_request_block_table(e, h, 0, table, 16, NULL), AUGUR_E_NULL_POINTER,
           "written");
    EXPECT(NULL, augur_request_block_table_by_id(NULL, 1, 0, table, 16, &written),
           AUGUR_E_NULL_POINTER, NONE);
    EXPECT(e, augur_request_block_table_by_id(e, 1, 0, NULL, 16, &written),
           AUGUR_E_NULL_POINTER, "out");
    EXPECT(e, augur_request_block_table_by_id(e, 1, 0, table, 16, NULL), AUGUR_E_NULL_POINTER,
           "written");
    CHECK(e, written == 99);
    /* NULL is fine where nothing is written: an empty table from `start` past its end. */
    OK(e, augur_request_block_table(e, h, 100, NULL, 0, &written));
    CHECK(e, written == 0);

    /* The plan view is still valid after all the failed calls (they change nothing). */
    augur_plan again;
    OK(e, augur_last_plan(e, &again));
    CHECK(e, again.step == plan.step && again.entries == plan.entries);
    res[0].tokens = plan.entries[0].samples ? 1 : 0;
    OK(e, augur_complete(e, res, 1, 1));
    OK(e, augur_last_finished(e, &fin, &n));
    CHECK(e, n == 0 && fin == NULL);
    still_usable(e, 100, 2);
    augur_engine_free(e);
}

/* ----- stale and forged handles ----- */

static void stale_and_forged_handles(void) {
    augur_engine *e = new_engine();
    augur_request a = add(e, 1, 6, 0);
    augur_request b = add(e, 2, 6, 0);
    augur_request_info info;
    uint32_t table[8];
    size_t written = 99;
    uint64_t hashes[1] = {7};

    /* Finish `a`: schedule, then complete with FINISHED at its sampling point. */
    augur_plan p;
    OK(e, augur_schedule(e, 1, &p));
    CHECK(e, p.entries_len == 2);
    augur_entry_result r[2];
    memset(r, 0, sizeof r);
    for (size_t k = 0; k < 2; k++) {
        CHECK(e, p.entries[k].samples);
        r[k].tokens = 1;
        if (p.entries[k].handle == a) r[k].flags = AUGUR_RESULT_FINISHED;
    }
    OK(e, augur_complete(e, r, 2, 1));
    const augur_finished *f;
    size_t nf;
    OK(e, augur_last_finished(e, &f, &nf));
    CHECK(e, nf == 1 && f[0].handle == a && f[0].external_id == 1 &&
                 f[0].reason == AUGUR_FINISH_STOP && f[0].generated_tokens == 1);

    /* Abort `c`: its handle is stale too. */
    augur_request c = add(e, 3, 6, 2);
    OK(e, augur_abort(e, c, 2));

    augur_request forged[5];
    forged[0] = a;                         /* finished */
    forged[1] = c;                         /* aborted */
    forged[2] = b + (UINT64_C(1) << 32);   /* generation bumped */
    forged[3] = (b & ~UINT64_C(0xffffffff)) | 9999; /* index out of range */
    forged[4] = 0;                         /* never a handle */
    for (int k = 0; k < 5; k++) {
        augur_request h = forged[k];
        EXPECT(e, augur_abort(e, h, 3), AUGUR_E_STALE_HANDLE, "stale");
        EXPECT(e, augur_resume(e, h, 0, 3), AUGUR_E_STALE_HANDLE, "stale");
        EXPECT(e, augur_update_prediction(e, h, 1.0, 3), AUGUR_E_STALE_HANDLE, "stale");
        EXPECT(e, augur_set_prompt_block_hashes(e, h, hashes, 1, 3), AUGUR_E_STALE_HANDLE,
               "stale");
        memset(&info, 0xEE, sizeof info);
        EXPECT(e, augur_request_get_info(e, h, &info), AUGUR_E_STALE_HANDLE, "stale");
        CHECK(e, info.external_id == UINT64_C(0xEEEEEEEEEEEEEEEE));
        EXPECT(e, augur_request_block_table(e, h, 0, table, 8, &written), AUGUR_E_STALE_HANDLE,
               "stale");
        CHECK(e, written == 99);
    }
    /* The live request is untouched by all that. */
    OK(e, augur_request_get_info(e, b, &info));
    CHECK(e, info.external_id == 2 && info.state == AUGUR_STATE_RUNNING &&
                 info.generated_tokens == 1);
    /* Unknown external ids. */
    augur_request h = 0;
    EXPECT(e, augur_find_request(e, 1, &h), AUGUR_E_UNKNOWN_ID, "1");
    EXPECT(e, augur_request_block_table_by_id(e, 3, 0, table, 8, &written), AUGUR_E_UNKNOWN_ID,
           "3");
    CHECK(e, h == 0 && written == 99);
    OK(e, augur_find_request(e, 2, &h));
    CHECK(e, h == b);
    /* Wrong state: resume of a request that is not paused; hashes after it ran. */
    EXPECT(e, augur_resume(e, b, 0, 3), AUGUR_E_WRONG_STATE, NONE);
    EXPECT(e, augur_set_prompt_block_hashes(e, b, hashes, 1, 3), AUGUR_E_WRONG_STATE, NONE);
    EXPECT(e, augur_update_prediction(e, b, NAN, 3), AUGUR_E_INVALID_PREDICTION, NONE);
    EXPECT(e, augur_update_prediction(e, b, -1.0, 3), AUGUR_E_INVALID_PREDICTION, NONE);
    EXPECT(e, augur_update_prediction(e, b, INFINITY, 3), AUGUR_E_INVALID_PREDICTION, NONE);
    OK(e, augur_update_prediction(e, b, 2.0, 3));
    OK(e, augur_abort(e, b, 3));
    still_usable(e, 100, 4);
    augur_engine_free(e);
}

/* ----- results: count, unscheduled, flags, tokens ----- */

static void bad_results(void) {
    augur_config cfg = base_config();
    cfg.prefill_chunk = 16; /* a long prompt takes several steps */
    augur_engine *e = NULL;
    OK(NULL, augur_engine_new(&cfg, &e));
    augur_entry_result r[4];
    memset(r, 0, sizeof r);

    /* Before any plan: no entries, so one result is the wrong count; zero is fine. */
    EXPECT(e, augur_complete(e, r, 1, 0), AUGUR_E_RESULT_COUNT, "1 positional results");
    OK(e, augur_complete(e, NULL, 0, 0));

    /* One prefill chunk that does not sample (prompt above the token budget) and one that
     * does. */
    augur_request big = add(e, 1, 80, 0);
    augur_request small = add(e, 2, 5, 0);
    augur_plan p;
    OK(e, augur_schedule(e, 1, &p));
    CHECK(e, p.entries_len == 2);
    size_t ib = p.entries[0].handle == big ? 0 : 1, is = 1 - ib;
    CHECK(e, p.entries[is].handle == small && p.entries[is].samples);
    CHECK(e, p.entries[ib].handle == big && !p.entries[ib].samples);

    EXPECT(e, augur_schedule(e, 1, &p), AUGUR_E_RESULTS_PENDING, "no result");
    EXPECT(e, augur_complete(e, r, 1, 1), AUGUR_E_RESULT_COUNT, "1 positional results");
    EXPECT(e, augur_complete(e, r, 3, 1), AUGUR_E_RESULT_COUNT, "3 positional results");
    EXPECT(e, augur_complete(e, NULL, 0, 1), AUGUR_E_RESULT_COUNT, "0 positional results");

    /* Each invalid result names its index and what is wrong; nothing changes. */
    r[is].tokens = 1;
    r[ib].tokens = 0;
    char want[64];
    snprintf(want, sizeof want, "result %zu: UnknownFlags", is);
    r[is].flags = 64;
    EXPECT(e, augur_complete(e, r, 2, 1), AUGUR_E_INVALID_RESULT, want);
    r[is].flags = 0;
    snprintf(want, sizeof want, "result %zu: TooManyTokens", is);
    r[is].tokens = 2; /* max_draft_tokens is 0 */
    EXPECT(e, augur_complete(e, r, 2, 1), AUGUR_E_INVALID_RESULT, want);
    snprintf(want, sizeof want, "result %zu: WrongTokenCount", is);
    r[is].tokens = 0; /* a sampling entry must report its token (or finish) */
    EXPECT(e, augur_complete(e, r, 2, 1), AUGUR_E_INVALID_RESULT, want);
    r[is].tokens = 1;
    snprintf(want, sizeof want, "result %zu: WrongTokenCount", ib);
    r[ib].tokens = 1; /* the chunk did not sample */
    EXPECT(e, augur_complete(e, r, 2, 1), AUGUR_E_INVALID_RESULT, want);
    r[ib].tokens = 0;
    snprintf(want, sizeof want, "result %zu: NotAtSamplingPoint", ib);
    r[ib].flags = AUGUR_RESULT_FINISHED;
    EXPECT(e, augur_complete(e, r, 2, 1), AUGUR_E_INVALID_RESULT, want);
    r[ib].flags = AUGUR_RESULT_PAUSE;
    EXPECT(e, augur_complete(e, r, 2, 1), AUGUR_E_INVALID_RESULT, want);
    r[ib].flags = 0;
    snprintf(want, sizeof want, "result %zu: PauseWhenFinished", is);
    r[is].flags = AUGUR_RESULT_PAUSE | AUGUR_RESULT_FINISHED;
    EXPECT(e, augur_complete(e, r, 2, 1), AUGUR_E_INVALID_RESULT, want);
    r[is].flags = 0;
    EXPECT(e, augur_complete(e, r, 2, 0), AUGUR_E_TIME_WENT_BACKWARDS, "time");
    augur_request_info info;
    OK(e, augur_request_get_info(e, small, &info));
    CHECK(e, info.generated_tokens == 0); /* nothing was applied */

    OK(e, augur_complete(e, r, 2, 1));
    OK(e, augur_request_get_info(e, small, &info));
    CHECK(e, info.generated_tokens == 1);
    /* The same plan again: a plan is completed once. */
    EXPECT(e, augur_complete(e, r, 2, 1), AUGUR_E_WRONG_STATE, "already accepted");
    EXPECT(e, augur_complete_except(e, NULL, 0, 1), AUGUR_E_WRONG_STATE, "already accepted");
    OK(e, augur_request_get_info(e, small, &info));
    CHECK(e, info.generated_tokens == 1);

    /* The next plan, reported sparsely: each bad exception names its index and changes
     * nothing; then no exceptions at all gives every entry its default result (a token for
     * the decode, none for the chunk that does not sample). */
    OK(e, augur_schedule(e, 2, &p));
    CHECK(e, p.entries_len == 2);
    is = p.entries[0].handle == small ? 0 : 1;
    CHECK(e, p.entries[is].handle == small && p.entries[1 - is].handle == big);
    CHECK(e, p.entries[is].samples && !p.entries[1 - is].samples);
    augur_entry_exception x[2];
    memset(x, 0, sizeof x);
    EXPECT(NULL, augur_complete_except(NULL, x, 1, 2), AUGUR_E_NULL_POINTER, NONE);
    EXPECT(e, augur_complete_except(e, NULL, 1, 2), AUGUR_E_NULL_POINTER, "exceptions");
    x[0].entry = 2; /* past the plan */
    x[0].result.tokens = 1;
    EXPECT(e, augur_complete_except(e, x, 1, 2), AUGUR_E_INVALID_RESULT, "result 0: NotScheduled");
    x[0].entry = (uint32_t)is;
    x[1] = x[0];
    EXPECT(e, augur_complete_except(e, x, 2, 2), AUGUR_E_INVALID_RESULT, "result 1: Duplicate");
    x[1].entry = (uint32_t)(1 - is); /* a token at the chunk that did not sample */
    snprintf(want, sizeof want, "result 1: WrongTokenCount");
    EXPECT(e, augur_complete_except(e, x, 2, 2), AUGUR_E_INVALID_RESULT, want);
    EXPECT(e, augur_complete_except(e, x, 1, 1), AUGUR_E_TIME_WENT_BACKWARDS, "time");
    OK(e, augur_request_get_info(e, small, &info));
    CHECK(e, info.generated_tokens == 1); /* nothing was applied */
    OK(e, augur_request_get_info(e, big, &info));
    uint32_t big_computed = info.computed_tokens;
    OK(e, augur_complete_except(e, NULL, 0, 2));
    OK(e, augur_request_get_info(e, small, &info));
    CHECK(e, info.generated_tokens == 2);
    OK(e, augur_request_get_info(e, big, &info));
    CHECK(e, info.generated_tokens == 0 && info.computed_tokens == big_computed);
    EXPECT(e, augur_complete(e, r, 2, 2), AUGUR_E_WRONG_STATE, "already accepted");

    /* Bad descriptors. */
    augur_request h = 77;
    augur_request_desc d = desc(3, 5);
    d.flags |= 1u << 20;
    EXPECT(e, augur_add_request(e, &d, 2, &h), AUGUR_E_INVALID_ARGUMENT, "flag");
    d = desc(3, 5);
    d.reserved = 1;
    EXPECT(e, augur_add_request(e, &d, 2, &h), AUGUR_E_INVALID_ARGUMENT, "reserved");
    d = desc(3, 0);
    EXPECT(e, augur_add_request(e, &d, 2, &h), AUGUR_E_INVALID_ARGUMENT, "prompt_tokens");
    d = desc(3, 5);
    d.predicted_output_tokens = NAN;
    EXPECT(e, augur_add_request(e, &d, 2, &h), AUGUR_E_INVALID_ARGUMENT,
           "predicted_output_tokens");
    d = desc(3, 5);
    d.flags |= AUGUR_DESC_MAX_OUTPUT;
    d.max_output_tokens = 0;
    EXPECT(e, augur_add_request(e, &d, 2, &h), AUGUR_E_INVALID_ARGUMENT, "max_output_tokens");
    d = desc(3, 5);
    d.tenant = 1; /* max_tenants is 1 */
    EXPECT(e, augur_add_request(e, &d, 2, &h), AUGUR_E_INVALID_ARGUMENT, "tenant");
    /* More tokens than the whole device pool (32 blocks of 4) can ever hold. */
    d = desc(3, 200);
    EXPECT(e, augur_add_request(e, &d, 2, &h), AUGUR_E_CANNOT_FIT, "never fit");
    /* Too many hashes: 5 tokens of 4 have one full block. */
    uint64_t hashes[3] = {1, 2, 3};
    d = desc(3, 5);
    d.prompt_block_hashes = hashes;
    d.prompt_block_hashes_len = 2;
    EXPECT(e, augur_add_request(e, &d, 2, &h), AUGUR_E_INVALID_ARGUMENT, "prompt_block_hashes");
    CHECK(e, h == 77);
    augur_request waiting = add(e, 3, 5, 2);
    EXPECT(e, augur_set_prompt_block_hashes(e, waiting, hashes, 2, 2), AUGUR_E_TOO_MANY_TOKENS,
           NONE);
    OK(e, augur_set_prompt_block_hashes(e, waiting, hashes, 1, 2));
    OK(e, augur_abort(e, waiting, 2));

    /* Too many tokens appended by a resume; the request stays paused and resumes. */
    OK(e, augur_abort(e, big, 2));
    OK(e, augur_schedule(e, 3, &p));
    CHECK(e, p.entries_len == 1 && p.entries[0].handle == small && p.entries[0].samples);
    r[0].tokens = 1;
    r[0].flags = AUGUR_RESULT_PAUSE;
    r[0].pause_duration_us = 500;
    OK(e, augur_complete(e, r, 1, 3));
    OK(e, augur_request_get_info(e, small, &info));
    CHECK(e, info.state == AUGUR_STATE_PAUSED);
    EXPECT(e, augur_resume(e, small, 1000, 4), AUGUR_E_TOO_MANY_TOKENS, NONE);
    EXPECT(e, augur_resume(e, small, UINT32_MAX, 4), AUGUR_E_TOO_MANY_TOKENS, NONE);
    OK(e, augur_request_get_info(e, small, &info));
    CHECK(e, info.state == AUGUR_STATE_PAUSED && info.prompt_tokens == 5);
    OK(e, augur_resume(e, small, 2, 4));
    OK(e, augur_request_get_info(e, small, &info));
    CHECK(e, info.prompt_tokens == 7);
    OK(e, augur_abort(e, small, 4));

    /* Queue full: max_requests is 8. */
    augur_request hs[8];
    for (uint64_t k = 0; k < 8; k++) hs[k] = add(e, 10 + k, 3, 5);
    d = desc(20, 3);
    EXPECT(e, augur_add_request(e, &d, 5, &h), AUGUR_E_QUEUE_FULL, "full");
    for (int k = 0; k < 8; k++) OK(e, augur_abort(e, hs[k], 5));
    still_usable(e, 100, 6);
    augur_engine_free(e);
}

/* ----- the block-table buffer ----- */

static void block_table_buffer(void) {
    augur_engine *e = new_engine();
    augur_request h = add(e, 1, 9, 0); /* 9 tokens of 4: 3 blocks once computed */
    augur_plan p;
    OK(e, augur_schedule(e, 1, &p));
    CHECK(e, p.entries_len == 1 && p.entries[0].blocks_len == 3);
    augur_entry_result r = {1, 0, 0, 0};
    OK(e, augur_complete(e, &r, 1, 1));
    augur_request_info info;
    OK(e, augur_request_get_info(e, h, &info));
    CHECK(e, info.kv_blocks == 3 && info.kv_tier == AUGUR_TIER_DEVICE);

    uint32_t buf[4] = {0xAAAAAAAA, 0xAAAAAAAA, 0xAAAAAAAA, 0xAAAAAAAA};
    size_t written = 99;
    EXPECT(e, augur_request_block_table(e, h, 0, buf, 2, &written), AUGUR_E_BUFFER_TOO_SMALL,
           "3 entries");
    EXPECT(e, augur_request_block_table(e, h, 0, buf, 0, &written), AUGUR_E_BUFFER_TOO_SMALL,
           NONE);
    EXPECT(e, augur_request_block_table(e, h, 1, buf, 1, &written), AUGUR_E_BUFFER_TOO_SMALL,
           "2 entries");
    EXPECT(e, augur_request_block_table_by_id(e, 1, 0, buf, 2, &written),
           AUGUR_E_BUFFER_TOO_SMALL, NONE);
    for (int k = 0; k < 4; k++) CHECK(e, buf[k] == 0xAAAAAAAA);
    CHECK(e, written == 99);
    /* Exactly enough, from 0 and from 1; the table equals the plan's blocks. */
    OK(e, augur_request_block_table(e, h, 0, buf, 3, &written));
    CHECK(e, written == 3 && buf[3] == 0xAAAAAAAA);
    OK(e, augur_last_plan(e, &p));
    for (int k = 0; k < 3; k++) CHECK(e, buf[k] == p.blocks[k]);
    OK(e, augur_request_block_table(e, h, 1, buf, 2, &written));
    CHECK(e, written == 2 && buf[0] == p.blocks[1] && buf[1] == p.blocks[2]);
    /* Past the end: nothing to copy. */
    OK(e, augur_request_block_table(e, h, 3, buf, 0, &written));
    CHECK(e, written == 0);
    still_usable(e, 100, 2);
    augur_engine_free(e);
}

/* ----- invalid configurations ----- */

static void expect_invalid(const augur_config *c, const char *field, int line) {
    char reason[256];
    strcpy(reason, "untouched");
    augur_status s = augur_config_validate(c, reason, sizeof reason);
    checks++;
    if (s != AUGUR_E_INVALID_CONFIG || strstr(reason, field) == NULL) {
        fprintf(stderr, "%s:%d: config with bad `%s`: status %d, reason \"%s\"\n", __FILE__,
                line, field, (int)s, reason);
        exit(1);
    }
    augur_engine *e = (augur_engine *)(uintptr_t)0x1;
    size_t size = 7, align = 7;
    EXPECT(NULL, augur_engine_new(c, &e), AUGUR_E_INVALID_CONFIG, NONE);
    EXPECT(NULL, augur_engine_layout(c, &size, &align), AUGUR_E_INVALID_CONFIG, NONE);
    uint64_t region[64];
    EXPECT(NULL, augur_engine_init(c, region, sizeof region, &e), AUGUR_E_INVALID_CONFIG, NONE);
    CHECK(NULL, e == (augur_engine *)(uintptr_t)0x1 && size == 7 && align == 7);
}

#define INVALID(field_name, mutate)          \
    do {                                     \
        augur_config c_ = base_config();     \
        mutate;                              \
        expect_invalid(&c_, field_name, __LINE__); \
    } while (0)

static void invalid_configs(void) {
    augur_config ok = base_config();
    char reason[64] = "untouched";
    OK(NULL, augur_config_validate(&ok, reason, sizeof reason));
    CHECK(NULL, strcmp(reason, "untouched") == 0); /* untouched on success */

    /* Enum fields out of range. */
    INVALID("policy.kind", c_.policy.kind = AUGUR_POLICY_TRAIL_TIME + 1);
    INVALID("policy.kind", c_.policy.kind = UINT32_MAX);
    INVALID("policy.overrun", c_.policy.overrun = 3);
    INVALID("preemption", c_.preemption = 3);
    INVALID("admission", c_.admission = 4);
    INVALID("pause", c_.pause = 4);
    /* 0/1 flags. */
    INVALID("policy.fair_share", c_.policy.fair_share = 2);
    INVALID("policy.has_default_deadline", c_.policy.has_default_deadline = 2);
    INVALID("policy.one_bit_preemptive",
            (c_.policy.kind = AUGUR_POLICY_ONE_BIT, c_.policy.one_bit_preemptive = 2));
    INVALID("rank_preemption_may_recompute", c_.rank_preemption_may_recompute = 2);
    INVALID("prefix_caching", c_.prefix_caching = 7);
    INVALID("reserved", c_.reserved = 1);
    /* Values. */
    INVALID("max_running", c_.max_running = 0);
    INVALID("max_running", c_.max_running = 9); /* above max_requests */
    INVALID("token_budget", c_.token_budget = 0);
    INVALID("watermark", c_.watermark = 1.5);
    INVALID("watermark", c_.watermark = -0.1);
    INVALID("watermark", c_.watermark = NAN);
    INVALID("vtc_input_weight", c_.vtc_input_weight = NAN);
    INVALID("vtc_output_weight", c_.vtc_output_weight = NAN);
    INVALID("vtc_output_weight", c_.vtc_output_weight = -1.0);
    INVALID("recompute_us_per_token", c_.recompute_us_per_token = NAN);
    INVALID("swap_us_per_block", c_.swap_us_per_block = INFINITY);
    INVALID("priority_margin", c_.priority_margin = -1.0);
    INVALID("max_preemptions_per_step", c_.max_preemptions_per_step = 0);
    INVALID("max_tenants", c_.max_tenants = 0);
    INVALID("max_draft_tokens", c_.max_draft_tokens = 257);
    INVALID("max_sequence_tokens", c_.max_sequence_tokens = 1);
    INVALID("block_size", c_.block_size = 0);
    INVALID("device_blocks", c_.device_blocks = 0);
    INVALID("aging_per_s", c_.policy.aging_per_s = NAN);
    INVALID("fallback_prediction", c_.policy.fallback_prediction = 0.0);
    INVALID("default_deadline_us",
            (c_.policy.has_default_deadline = 1, c_.policy.default_deadline_us = NAN));
    /* The reason names the C field, also where the core's own name differs. */
    INVALID("`max_requests`", c_.max_requests = 0);
    INVALID("`admission_headroom`",
            (c_.admission = AUGUR_ADMIT_PREDICTED, c_.admission_headroom = NAN));
    INVALID("`policy.overrun_factor`",
            (c_.policy.overrun = AUGUR_OVERRUN_RESCALE, c_.policy.overrun_factor = 1.0));
    INVALID("`policy.trail_cutoff`",
            (c_.policy.kind = AUGUR_POLICY_TRAIL, c_.policy.trail_cutoff = -1.0));
    INVALID("`policy.mlfq_levels`", (c_.policy.kind = AUGUR_POLICY_MLFQ, c_.policy.mlfq_levels = 0));
    INVALID("`policy.one_bit_threshold`",
            (c_.policy.kind = AUGUR_POLICY_ONE_BIT, c_.policy.one_bit_threshold = NAN));
    INVALID("`policy.slack_decode_us_per_token`",
            (c_.policy.kind = AUGUR_POLICY_SLACK, c_.policy.slack_decode_us_per_token = -1.0));

    /* The reason is truncated to the buffer and NUL-terminated. */
    augur_config c = base_config();
    c.max_running = 0;
    char small[8];
    memset(small, 'Z', sizeof small);
    EXPECT(NULL, augur_config_validate(&c, small, sizeof small), AUGUR_E_INVALID_CONFIG, NONE);
    CHECK(NULL, small[7] == '\0' && strlen(small) == 7);
    /* A zero-length buffer is not written at all. */
    memset(small, 'Z', sizeof small);
    EXPECT(NULL, augur_config_validate(&c, small, 0), AUGUR_E_INVALID_CONFIG, NONE);
    CHECK(NULL, small[0] == 'Z');

    /* The defaults round-trip through an engine. */
    augur_engine *e = new_engine();
    augur_config back;
    OK(e, augur_engine_config(e, &back));
    augur_config want = base_config();
    CHECK(e, back.block_size == want.block_size && back.device_blocks == want.device_blocks &&
                 back.host_blocks == want.host_blocks && back.max_running == want.max_running &&
                 back.token_budget == want.token_budget && back.preemption == want.preemption &&
                 back.policy.kind == want.policy.kind && back.watermark == want.watermark);
    augur_engine_free(e);
}

/* ----- engines in a caller's region ----- */

static void caller_regions(void) {
    augur_config c = base_config();
    size_t size = 0, align = 0;
    OK(NULL, augur_engine_layout(&c, &size, &align));
    CHECK(NULL, size > 0 && align > 0 && (align & (align - 1)) == 0);
    /* Room for the region plus one byte of misalignment; aligned_alloc wants a multiple. */
    size_t alloc = (size + 1 + align - 1) / align * align;
    unsigned char *region = aligned_alloc(align, alloc);
    CHECK(NULL, region != NULL);
    memset(region, 0xA5, alloc); /* garbage: the contents do not matter */

    augur_engine *e = NULL;
    EXPECT(NULL, augur_engine_init(&c, region, size - 1, &e), AUGUR_E_REGION_TOO_SMALL, NONE);
    EXPECT(NULL, augur_engine_init(&c, region + 1, size, &e), AUGUR_E_REGION_MISALIGNED, NONE);
    EXPECT(NULL, augur_engine_init(&c, region, 0, &e), AUGUR_E_REGION_TOO_SMALL, NONE);
    CHECK(NULL, e == NULL);
    OK(NULL, augur_engine_init(&c, region, size, &e));
    CHECK(NULL, (void *)e == (void *)region);
    CHECK(e, strcmp(augur_engine_last_error(e), "") == 0);

    /* It serves: a few requests to the end. */
    for (uint64_t id = 1; id <= 3; id++) add(e, id, 5 + (uint32_t)id, 0);
    uint64_t now = 1;
    for (int step = 0; step < 50 && stats(e).finished < 3; step++, now++) {
        augur_plan p;
        OK(e, augur_schedule(e, now, &p));
        augur_entry_result r[8];
        memset(r, 0, sizeof r);
        for (size_t k = 0; k < p.entries_len; k++) {
            if (!p.entries[k].samples) continue;
            r[k].tokens = 1;
            augur_request_info info;
            OK(e, augur_request_get_info(e, p.entries[k].handle, &info));
            if (info.generated_tokens + 1 >= 4) r[k].flags = AUGUR_RESULT_FINISHED;
        }
        OK(e, augur_complete(e, p.entries_len ? r : NULL, p.entries_len, now));
    }
    CHECK(e, stats(e).finished == 3 && stats(e).device_blocks_in_use == 0);
    /* A failure is kept as the last error, inside the region. */
    EXPECT(e, augur_schedule(e, 0, NULL), AUGUR_E_NULL_POINTER, "out");

    augur_engine_free(e);
    /* A freed in-region engine is refused, not used; freeing it again is harmless. */
    augur_plan p;
    EXPECT(NULL, augur_schedule(e, now, &p), AUGUR_E_INVALID_ENGINE, NONE);
    CHECK(NULL, strcmp(augur_engine_last_error(e), "not a live augur engine") == 0);
    augur_engine_free(e);
    augur_engine_free(e);

    /* The region is the caller's again: garbage it, and a new engine starts there. */
    memset(region, 0x5A, alloc);
    augur_stats st;
    EXPECT(NULL, augur_engine_stats((augur_engine *)region, &st), AUGUR_E_INVALID_ENGINE, NONE);
    EXPECT(NULL, augur_engine_stats((augur_engine *)(region + 1), &st), AUGUR_E_INVALID_ENGINE,
           NONE);
    OK(NULL, augur_engine_init(&c, region, size, &e));
    still_usable(e, 100, 0);
    augur_engine_free(e);
    free(region);
}

/* ----- time, duplicate ids, status strings ----- */

static void time_and_ids(void) {
    augur_engine *e = new_engine();
    augur_request h = add(e, 1, 5, 100);
    augur_request h2 = 55;
    augur_request_desc d = desc(1, 5);
    EXPECT(e, augur_add_request(e, &d, 100, &h2), AUGUR_E_DUPLICATE_ID, "external id");
    CHECK(e, h2 == 55);
    d = desc(2, 5);
    EXPECT(e, augur_add_request(e, &d, 99, &h2), AUGUR_E_TIME_WENT_BACKWARDS, "time");
    augur_plan p;
    EXPECT(e, augur_schedule(e, 99, &p), AUGUR_E_TIME_WENT_BACKWARDS, "time");
    EXPECT(e, augur_update_prediction(e, h, 1.0, 50), AUGUR_E_TIME_WENT_BACKWARDS, "time");
    EXPECT(e, augur_abort(e, h, 0), AUGUR_E_TIME_WENT_BACKWARDS, "time");
    CHECK(e, stats(e).steps == 0 && stats(e).added == 1);
    OK(e, augur_schedule(e, 100, &p)); /* the same time is fine */
    augur_entry_result r = {1, AUGUR_RESULT_FINISHED, 0, 0};
    EXPECT(e, augur_complete(e, &r, 1, 10), AUGUR_E_TIME_WENT_BACKWARDS, "time");
    OK(e, augur_complete(e, &r, 1, 200));
    /* The id is free again once the request finished. */
    h2 = add(e, 1, 5, 200);
    CHECK(e, h2 != h);
    OK(e, augur_abort(e, h2, 200));
    still_usable(e, 100, 300);
    augur_engine_free(e);

    /* Every status has its own text; unknown values get "unknown status". */
    const char *unknown = augur_status_str(9999);
    CHECK(NULL, strcmp(unknown, "unknown status") == 0);
    CHECK(NULL, strcmp(augur_status_str(AUGUR_OK), "ok") == 0);
    CHECK(NULL, strcmp(augur_status_str(-1), "unknown status") == 0);
    CHECK(NULL, strcmp(augur_status_str(AUGUR_E_CUDA + 1), "unknown status") == 0);
    for (augur_status s = AUGUR_OK; s <= AUGUR_E_CUDA; s++) {
        const char *t = augur_status_str(s);
        CHECK(NULL, t != NULL && strlen(t) > 0 && strcmp(t, unknown) != 0);
        for (augur_status u = AUGUR_OK; u < s; u++) CHECK(NULL, strcmp(t, augur_status_str(u)) != 0);
    }
}

/* ----- misaligned pointers; a request aborted between schedule and complete ----- */

static void misaligned_and_aborted_in_plan(void) {
    augur_engine *e = new_engine();
    augur_request a = add(e, 1, 5, 0);
    augur_request b = add(e, 2, 5, 0);
    /* Storage aligned for anything; +1 byte is misaligned for every augur type. */
    uint64_t raw[64];
    memset(raw, 0xCC, sizeof raw);
    unsigned char *mis = (unsigned char *)raw + 1;
    EXPECT(e, augur_engine_stats(e, (augur_stats *)(void *)mis), AUGUR_E_INVALID_ARGUMENT,
           "aligned");
    EXPECT(e, augur_schedule(e, 1, (augur_plan *)(void *)mis), AUGUR_E_INVALID_ARGUMENT,
           "aligned");
    CHECK(e, stats(e).steps == 0);
    EXPECT(e, augur_find_request(e, 1, (augur_request *)(void *)mis), AUGUR_E_INVALID_ARGUMENT,
           "aligned");
    augur_request_desc d = desc(3, 5);
    EXPECT(e, augur_add_request(e, (const augur_request_desc *)(const void *)mis, 0,
                                (augur_request *)(void *)raw),
           AUGUR_E_INVALID_ARGUMENT, "aligned");
    EXPECT(e, augur_add_request(e, &d, 0, (augur_request *)(void *)mis), AUGUR_E_INVALID_ARGUMENT,
           "aligned");
    CHECK(e, stats(e).added == 2);
    for (size_t k = 0; k < sizeof raw; k++)
        CHECK(e, ((unsigned char *)raw)[k] == 0xCC); /* nothing was written */
    augur_stats st;
    EXPECT(NULL, augur_engine_stats((augur_engine *)(void *)((unsigned char *)e + 1), &st),
           AUGUR_E_INVALID_ENGINE, NONE);

    augur_plan p;
    OK(e, augur_schedule(e, 1, &p));
    CHECK(e, p.entries_len == 2);
    size_t written = 99;
    EXPECT(e, augur_request_block_table(e, a, 0, (uint32_t *)(void *)mis, 8, &written),
           AUGUR_E_INVALID_ARGUMENT, "aligned");
    CHECK(e, written == 99);
    augur_entry_result r[2];
    memset(r, 0, sizeof r);
    for (size_t k = 0; k < 2; k++) r[k].tokens = 1;
    EXPECT(e, augur_complete(e, (const augur_entry_result *)(const void *)mis, 2, 1),
           AUGUR_E_INVALID_ARGUMENT, "aligned");
    /* `a` is aborted after the plan was made: whatever is at its position is ignored. */
    OK(e, augur_abort(e, a, 1));
    size_t ia = p.entries[0].handle == a ? 0 : 1;
    r[ia].tokens = 12345;
    r[ia].flags = 0xFFFF;
    OK(e, augur_complete(e, r, 2, 1));
    augur_request_info info;
    OK(e, augur_request_get_info(e, b, &info));
    CHECK(e, info.generated_tokens == 1);
    EXPECT(e, augur_request_get_info(e, a, &info), AUGUR_E_STALE_HANDLE, NONE);
    OK(e, augur_abort(e, b, 1));
    still_usable(e, 100, 2);
    augur_engine_free(e);
}

int main(void) {
    null_pointers();
    stale_and_forged_handles();
    bad_results();
    block_table_buffer();
    invalid_configs();
    caller_regions();
    time_and_ids();
    misaligned_and_aborted_in_plan();
    printf("test_bad_input: %d checks passed\n", checks);
    return 0;
}
