#include <augur.h>
#include <stdio.h>

int main(void) {
    augur_config cfg;
    augur_config_default(&cfg, 16, 1024, 64); /* block size, device blocks, live requests */
    cfg.max_running = 32;
    augur_engine *e;
    if (augur_engine_new(&cfg, &e) != AUGUR_OK) return 1;
    augur_request_desc d = {.external_id = 7, .prompt_tokens = 100};
    augur_request h;
    augur_add_request(e, &d, 0, &h);
    augur_entry_result res[32];
    augur_plan p;
    for (uint64_t now = 1; augur_schedule(e, now, &p) == AUGUR_OK && p.entries_len > 0; now++) {
        /* Copy p.swap_out, p.swap_in, p.copies; run the model on p.entries (augur.h). */
        for (size_t k = 0; k < p.entries_len; k++) {
            const augur_plan_entry *x = &p.entries[k];
            res[k] = (augur_entry_result){.tokens = x->samples,
                .flags = x->samples && x->computed_before >= 110 ? AUGUR_RESULT_FINISHED : 0};
        }
        if (augur_complete(e, res, p.entries_len, now) != AUGUR_OK) break;
    }
    augur_stats st;
    augur_engine_stats(e, &st);
    printf("%llu finished in %llu steps\n", (unsigned long long)st.finished, (unsigned long long)st.steps);
    augur_engine_free(e);
    return 0;
}
