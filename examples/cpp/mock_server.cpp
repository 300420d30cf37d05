// A mock inference server on augur.hpp: a serving loop with a fake model that checks the plan
// contract (include/augur.h's preamble) the way a real executor depends on it.
//
// - It keeps its own mirror of every request's block table, built only from plan deltas
//   (truncate to table_start, append the entry's blocks), and after every step checks each
//   mirror against augur_request_block_table.
// - A fake KV store holds, per device block and per host block, one content tag per token
//   slot: tag = (owner, position), where the owner is the request's external id, or its
//   prefix group for the positions covered by its prompt block hashes (requests of one group
//   have identical hashes, so their prefix blocks are shared and must hold the group's
//   content).
// - Each step carries out swap_out, then swap_in, then copies, then "runs" each entry: before
//   writing, every earlier position of the request (0 .. computed_before) must hold its tag
//   in the mirrored table's blocks (the KV content oracle), and no block written may be held
//   by another live request's table; then it writes the tags of positions
//   [computed_before, computed_before + tokens), and checks again after all entries ran.
// - Requests finish at random lengths (AUGUR_RESULT_FINISHED), some pause and resume, some
//   are aborted; the pools are small, so requests are preempted and swapped.
//
// Usage: mock_server [--seed N] [--steps N] [--preempt swap|auto|recompute]
//                    [--pause preserve|discard|swap|auto] [--prefix 0|1] [--region]
// Exits 1 on any mismatch, after printing what differs; prints a summary line otherwise.
#include "augur.hpp"

#include <array>
#include <algorithm>
#include <cinttypes>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <iterator>
#include <map>
#include <new>
#include <string>
#include <vector>

namespace {

constexpr std::uint32_t BLOCK = 4;
constexpr std::uint32_t DEVICE_BLOCKS = 48;
constexpr std::uint32_t HOST_BLOCKS = 32;
constexpr std::uint32_t MAX_REQUESTS = 32;
constexpr std::uint64_t GROUP_BIT = std::uint64_t(1) << 63;

int failures = 0;

#define FAIL_IF(cond, ...)                                                   \
    do {                                                                     \
        if (cond) {                                                          \
            std::fprintf(stderr, "mock_server:%d: ", __LINE__);              \
            std::fprintf(stderr, __VA_ARGS__);                               \
            std::fprintf(stderr, "\n");                                      \
            if (++failures >= 10) std::exit(1);                              \
        }                                                                    \
    } while (0)

std::uint64_t lcg_state = 1;
std::uint32_t rnd(std::uint32_t n) {
    lcg_state = lcg_state * 6364136223846793005ULL + 1442695040888963407ULL;
    return static_cast<std::uint32_t>(lcg_state >> 33) % n;
}

struct Tag {
    std::uint64_t owner = 0;
    std::uint32_t pos = 0;
    bool valid = false;
    bool operator==(const Tag& o) const {
        return valid == o.valid && owner == o.owner && pos == o.pos;
    }
};

enum class State { Live, Paused, Done };

struct Req {
    std::uint64_t id = 0;
    augur_request handle = 0;
    std::uint32_t prompt = 0;  // prompt tokens, appended tool output included
    std::uint32_t target = 0;  // output length at which the model says "finished"
    std::uint32_t generated = 0;
    std::int64_t group = -1;
    std::uint32_t hashed_tokens = 0;  // positions covered by the prompt block hashes
    State state = State::Live;
    bool pause_used = false;
    std::uint64_t resume_at = 0;
    bool has_mirror = false;
    std::vector<std::uint32_t> mirror;

    Tag expected(std::uint32_t p) const {
        Tag t;
        t.valid = true;
        t.pos = p;
        t.owner = p < hashed_tokens ? (GROUP_BIT | static_cast<std::uint64_t>(group)) : id;
        return t;
    }
};

struct Counters {
    std::uint64_t content_checks = 0, mirror_checks = 0, swap_out = 0, swap_in = 0, copies = 0,
                  preempted = 0, finished = 0, aborted = 0, dropped = 0, pauses = 0, kv_events = 0;
};

struct Options {
    std::uint64_t seed = 1;
    std::uint64_t steps = 2000;
    std::uint32_t preempt = AUGUR_PREEMPT_SWAP;
    std::uint32_t pause = AUGUR_PAUSE_SWAP;
    bool prefix = true;
    bool region = false;
};

bool parse(int argc, char** argv, Options* o) {
    for (int i = 1; i < argc; i++) {
        std::string a = argv[i];
        auto next = [&]() -> std::string { return i + 1 < argc ? argv[++i] : ""; };
        if (a == "--seed") {
            o->seed = std::strtoull(next().c_str(), nullptr, 10);
        } else if (a == "--steps") {
            o->steps = std::strtoull(next().c_str(), nullptr, 10);
        } else if (a == "--preempt") {
            std::string v = next();
            if (v == "swap") o->preempt = AUGUR_PREEMPT_SWAP;
            else if (v == "auto") o->preempt = AUGUR_PREEMPT_AUTO;
            else if (v == "recompute") o->preempt = AUGUR_PREEMPT_RECOMPUTE;
            else return false;
        } else if (a == "--pause") {
            std::string v = next();
            if (v == "preserve") o->pause = AUGUR_PAUSE_PRESERVE;
            else if (v == "discard") o->pause = AUGUR_PAUSE_DISCARD;
            else if (v == "swap") o->pause = AUGUR_PAUSE_SWAP;
            else if (v == "auto") o->pause = AUGUR_PAUSE_AUTO;
            else return false;
        } else if (a == "--prefix") {
            o->prefix = next() != "0";
        } else if (a == "--region") {
            o->region = true;
        } else {
            return false;
        }
    }
    return true;
}

// The wrapper's error path: an invalid configuration throws augur::Error naming the field.
void check_errors_are_exceptions(const augur::Config& good) {
    augur::Config bad = good;
    bad.watermark = 1.5;
    bool threw = false;
    try {
        augur::Engine e(bad);
    } catch (const augur::Error& err) {
        threw = true;
        FAIL_IF(err.status() != AUGUR_E_INVALID_CONFIG, "status %d", err.status());
        FAIL_IF(std::strstr(err.what(), "watermark") == nullptr, "message: %s", err.what());
    }
    FAIL_IF(!threw, "an invalid config did not throw");
    // A region that is too small: the message gives the sizes.
    alignas(64) static unsigned char small[64];
    threw = false;
    try {
        augur::Engine e = augur::Engine::in_region(good, small, sizeof small);
    } catch (const augur::Error& err) {
        threw = true;
        FAIL_IF(err.status() != AUGUR_E_REGION_TOO_SMALL, "status %d", err.status());
        FAIL_IF(std::strstr(err.what(), "region of 64 bytes") == nullptr, "message: %s", err.what());
    }
    FAIL_IF(!threw, "a small region did not throw");
    std::string reason;
    FAIL_IF(bad.try_validate(&reason) != AUGUR_E_INVALID_CONFIG, "try_validate");
    FAIL_IF(reason.find("watermark") == std::string::npos, "reason: %s", reason.c_str());
    // A hot-path caller bug throws too, and leaves the engine usable.
    augur::Engine e(good);
    threw = false;
    try {
        e.schedule(10);
        e.schedule(5);  // results pending (and time going backwards)
    } catch (const augur::Error& err) {
        threw = true;
        FAIL_IF(err.status() != AUGUR_E_RESULTS_PENDING && err.status() != AUGUR_E_TIME_WENT_BACKWARDS,
                "status %d", err.status());
    }
    FAIL_IF(!threw, "a bad schedule did not throw");
    augur::Plan p;
    augur_status ts = e.try_schedule(1, &p);  // time went backwards: no throw, a status
    FAIL_IF(ts != AUGUR_E_TIME_WENT_BACKWARDS, "try_schedule gave %d", ts);
    FAIL_IF(e.try_complete({}, 10) != AUGUR_OK, "an empty plan takes no results");
    augur::Engine moved = std::move(e);
    FAIL_IF(e || !moved, "move");
    FAIL_IF(moved.stats().steps != 1, "steps");
}

}  // namespace

int main(int argc, char** argv) {
    Options opt;
    if (!parse(argc, argv, &opt)) {
        std::fprintf(stderr,
                     "usage: mock_server [--seed N] [--steps N] [--preempt swap|auto|recompute] "
                     "[--pause preserve|discard|swap|auto] [--prefix 0|1] [--region]\n");
        return 2;
    }
    lcg_state = opt.seed;

    augur::Config cfg = augur::Config::defaults(BLOCK, DEVICE_BLOCKS, MAX_REQUESTS);
    cfg.host_blocks = HOST_BLOCKS;
    cfg.kv_event_capacity = 16;  // small enough to overflow now and then
    cfg.max_running = 8;
    cfg.token_budget = 64;
    cfg.prefill_chunk = 16;
    cfg.preemption = opt.preempt;
    cfg.pause = opt.pause;
    cfg.validate();
    check_errors_are_exceptions(cfg);

    void* region = nullptr;
    augur::Engine engine;
    if (opt.region) {
        augur::Layout l = cfg.layout();
        region = ::operator new(l.size, std::align_val_t(l.align));
        std::memset(region, 0xA5, l.size);
        engine = augur::Engine::in_region(cfg, region, l.size);
    } else {
        engine = augur::Engine(cfg);
    }

    std::vector<Tag> dev(std::size_t(DEVICE_BLOCKS) * BLOCK), host(std::size_t(HOST_BLOCKS) * BLOCK);
    std::map<std::uint64_t, Req> reqs;  // live and paused requests, by external id
    std::uint64_t next_id = 1;
    std::vector<augur_entry_result> results;
    std::vector<int> holders(DEVICE_BLOCKS);
    std::vector<std::uint32_t> table(DEVICE_BLOCKS + HOST_BLOCKS);
    Counters n;

    auto forget = [](Req& r) {
        r.has_mirror = false;
        r.mirror.clear();
    };

    std::uint64_t t = 1;
    for (; t <= opt.steps; t++) {
        const std::uint64_t now = t * 1000;

        // Arrivals: some in prefix groups (identical hashes for the group's full blocks).
        for (std::uint32_t a = rnd(3); a > 0 && reqs.size() < MAX_REQUESTS; a--) {
            Req r;
            r.id = next_id++;
            r.target = 1 + rnd(40);
            bool grouped = opt.prefix && rnd(2) == 0;
            r.prompt = grouped ? 8 + rnd(36) : 1 + rnd(40);
            std::vector<std::uint64_t> hashes;
            if (grouped) {
                r.group = rnd(3);
                std::uint32_t nh = r.prompt / BLOCK;
                for (std::uint32_t j = 0; j < nh; j++)
                    hashes.push_back(std::uint64_t(r.group + 1) * 1000003u + j);
                r.hashed_tokens = nh * BLOCK;
            }
            augur_request_desc d{};
            d.external_id = r.id;
            d.flags = AUGUR_DESC_PREDICTION;
            d.prompt_tokens = r.prompt;
            d.predicted_output_tokens = r.target;
            d.prompt_block_hashes = hashes.empty() ? nullptr : hashes.data();
            d.prompt_block_hashes_len = hashes.size();
            r.handle = engine.add(d, now);
            reqs[r.id] = r;
        }
        // Aborts.
        if (!reqs.empty() && rnd(100) < 3) {
            auto it = reqs.begin();
            std::advance(it, rnd(static_cast<std::uint32_t>(reqs.size())));
            engine.abort(it->second.handle, now);
            reqs.erase(it);
            n.aborted++;
        }
        // Resumes of paused requests whose external call returned (with some tool output).
        for (auto& kv : reqs) {
            Req& r = kv.second;
            if (r.state != State::Paused || r.resume_at > t) continue;
            std::uint32_t appended = rnd(6);
            engine.resume(r.handle, appended, now);
            r.prompt += appended;
            r.state = State::Live;
        }

        augur::Plan plan;
        augur_status s = engine.try_schedule(now, &plan);
        FAIL_IF(s != AUGUR_OK, "schedule: %s", engine.last_error());
        if (s != AUGUR_OK) break;

        for (const augur_preemption& p : plan.preempted()) {
            auto it = reqs.find(p.external_id);
            FAIL_IF(it == reqs.end(), "preempted %" PRIu64 " is unknown", p.external_id);
            if (it != reqs.end()) forget(it->second);
            n.preempted++;
        }
        for (const augur_dropped& d : plan.dropped()) {
            reqs.erase(d.external_id);
            n.dropped++;
        }

        // 1-3: the block copies, in order.
        for (const augur_block_pair& p : plan.swap_out()) {
            FAIL_IF(p.src >= DEVICE_BLOCKS || p.dst >= HOST_BLOCKS, "swap_out %u>%u", p.src, p.dst);
            if (p.src >= DEVICE_BLOCKS || p.dst >= HOST_BLOCKS) continue;
            for (std::uint32_t k = 0; k < BLOCK; k++) host[p.dst * BLOCK + k] = dev[p.src * BLOCK + k];
            n.swap_out++;
        }
        for (const augur_block_pair& p : plan.swap_in()) {
            FAIL_IF(p.src >= HOST_BLOCKS || p.dst >= DEVICE_BLOCKS, "swap_in %u>%u", p.src, p.dst);
            if (p.src >= HOST_BLOCKS || p.dst >= DEVICE_BLOCKS) continue;
            for (std::uint32_t k = 0; k < BLOCK; k++) dev[p.dst * BLOCK + k] = host[p.src * BLOCK + k];
            n.swap_in++;
        }
        for (const augur_block_pair& p : plan.copies()) {
            FAIL_IF(p.src >= DEVICE_BLOCKS || p.dst >= DEVICE_BLOCKS, "copy %u>%u", p.src, p.dst);
            if (p.src >= DEVICE_BLOCKS || p.dst >= DEVICE_BLOCKS) continue;
            for (std::uint32_t k = 0; k < BLOCK; k++) dev[p.dst * BLOCK + k] = dev[p.src * BLOCK + k];
            n.copies++;
        }

        // The table deltas.
        std::vector<Req*> run;
        for (const augur_plan_entry& e : plan.entries()) {
            auto it = reqs.find(e.external_id);
            FAIL_IF(it == reqs.end() || it->second.handle != e.handle, "entry %" PRIu64 " unknown",
                    e.external_id);
            if (it == reqs.end()) continue;
            Req& r = it->second;
            FAIL_IF(e.table_start > r.mirror.size(),
                    "request %" PRIu64 ": table_start %u beyond the mirror's %zu entries", r.id,
                    e.table_start, r.mirror.size());
            r.mirror.resize(e.table_start);
            for (std::uint32_t b : plan.blocks(e)) {
                FAIL_IF(b >= DEVICE_BLOCKS, "block %u out of the device pool", b);
                r.mirror.push_back(b < DEVICE_BLOCKS ? b : 0);
            }
            r.has_mirror = true;
            FAIL_IF(std::uint64_t(r.mirror.size()) * BLOCK < std::uint64_t(e.computed_before) + e.tokens,
                    "request %" PRIu64 ": %zu blocks do not cover %u tokens", r.id, r.mirror.size(),
                    e.computed_before + e.tokens);
            run.push_back(&r);
        }
        if (failures) break;

        // Who holds each device block now (every live request whose KV is on the device).
        std::fill(holders.begin(), holders.end(), 0);
        for (auto& kv : reqs) {
            augur_request_info info = engine.info(kv.second.handle);
            if (info.kv_tier != AUGUR_TIER_DEVICE) continue;
            std::size_t len = engine.block_table(kv.second.handle, 0,
                                                 augur::Span<std::uint32_t>(table.data(), table.size()));
            for (std::size_t k = 0; k < len; k++)
                if (table[k] < DEVICE_BLOCKS) holders[table[k]]++;
        }

        auto check_positions = [&](const Req& r, std::uint32_t upto, const char* when) {
            for (std::uint32_t p = 0; p < upto; p++) {
                const Tag& got = dev[r.mirror[p / BLOCK] * BLOCK + p % BLOCK];
                Tag want = r.expected(p);
                n.content_checks++;
                FAIL_IF(!(got == want),
                        "step %" PRIu64 " %s: request %" PRIu64 " position %u in block %u holds "
                        "(%s%" PRIu64 ", %u%s), want (%s%" PRIu64 ", %u)",
                        t, when, r.id, p, r.mirror[p / BLOCK], got.owner & GROUP_BIT ? "group " : "",
                        got.owner & ~GROUP_BIT, got.pos, got.valid ? "" : ", empty",
                        want.owner & GROUP_BIT ? "group " : "", want.owner & ~GROUP_BIT, want.pos);
                if (!(got == want)) return;
            }
        };
        // 4: run the entries. Reads first (every earlier position), then writes.
        std::size_t k = 0;
        for (const augur_plan_entry& e : plan.entries()) {
            check_positions(*run[k++], e.computed_before, "before running");
        }
        k = 0;
        for (const augur_plan_entry& e : plan.entries()) {
            const Req& r = *run[k++];
            for (std::uint32_t p = e.computed_before; p < e.computed_before + e.tokens; p++) {
                std::uint32_t b = r.mirror[p / BLOCK];
                FAIL_IF(holders[b] != 1,
                        "step %" PRIu64 ": request %" PRIu64 " writes block %u held by %d tables", t,
                        r.id, b, holders[b]);
                dev[b * BLOCK + p % BLOCK] = r.expected(p);
            }
        }
        k = 0;
        for (const augur_plan_entry& e : plan.entries()) {
            check_positions(*run[k++], e.computed_before + e.tokens, "after running");
        }

        // Results, by position.
        results.assign(plan.entries().size(), augur_entry_result{});
        k = 0;
        for (const augur_plan_entry& e : plan.entries()) {
            Req& r = *run[k];
            augur_entry_result& res = results[k++];
            if (!e.samples) continue;
            res.tokens = 1;
            r.generated++;
            if (r.generated >= r.target) {
                res.flags = AUGUR_RESULT_FINISHED;
            } else if (!r.pause_used && rnd(100) < 5) {
                res.flags = AUGUR_RESULT_PAUSE;
                res.pause_duration_us = 1000 * std::uint64_t(1 + rnd(20));
                r.pause_used = true;
                r.resume_at = t + 1 + rnd(8);
                r.state = State::Paused;
                n.pauses++;
            }
        }
        s = engine.try_complete(results, now);
        FAIL_IF(s != AUGUR_OK, "complete: %s", engine.last_error());
        if (s != AUGUR_OK) break;
        for (const augur_finished& f : engine.last_finished()) {
            FAIL_IF(reqs.count(f.external_id) == 0, "finished %" PRIu64 " unknown", f.external_id);
            reqs.erase(f.external_id);
            n.finished++;
        }

        // Every mirror equals the engine's table. A paused request keeps its mirror while its
        // KV stays on the device; once it is swapped or discarded it comes back with
        // table_start 0.
        for (auto& kv : reqs) {
            Req& r = kv.second;
            augur_request_info info = engine.info(r.handle);
            if (info.state == AUGUR_STATE_RUNNING) {
                FAIL_IF(!r.has_mirror, "running request %" PRIu64 " has no mirror", r.id);
            } else if (info.kv_tier != AUGUR_TIER_DEVICE) {
                forget(r);
            }
            if (!r.has_mirror) continue;
            std::vector<std::uint32_t> tab = engine.block_table_vector(r.handle);
            n.mirror_checks++;
            FAIL_IF(tab != r.mirror, "step %" PRIu64 ": request %" PRIu64 " mirror has %zu entries, engine %zu",
                    t, r.id, r.mirror.size(), tab.size());
        }
        // KV events, as a server hands them to its publisher: in sequence, without gaps.
        std::array<augur_kv_event, 8> events;
        std::size_t got;
        do {
            got = engine.drain_kv_events(augur::Span<augur_kv_event>(events.data(), events.size()));
            for (std::size_t k = 0; k < got; k++) {
                FAIL_IF(events[k].seq != n.kv_events, "event seq %" PRIu64 " where %" PRIu64 " was due",
                        events[k].seq, n.kv_events);
                n.kv_events++;
            }
        } while (got == events.size());
        FAIL_IF(engine.kv_event_stats().delivered != n.kv_events, "event stats disagree");
        if (failures) break;
    }

    augur_stats st = engine.stats();
    std::printf("mock_server: steps=%" PRIu64 " finished=%" PRIu64 " aborted=%" PRIu64
                " dropped=%" PRIu64 " preemptions=%" PRIu64 " swap_out=%" PRIu64 " swap_in=%" PRIu64
                " copies=%" PRIu64 " pauses=%" PRIu64 " prefix_hit_tokens=%" PRIu64
                " content_checks=%" PRIu64 " mirror_checks=%" PRIu64 " kv_events=%" PRIu64
                " failures=%d\n",
                t - 1, n.finished, n.aborted, n.dropped, n.preempted, n.swap_out, n.swap_in, n.copies,
                n.pauses, st.prefix_hit_tokens, n.content_checks, n.mirror_checks, n.kv_events, failures);
    engine = augur::Engine();  // free before the region goes
    if (region) ::operator delete(region, std::align_val_t(cfg.layout().align));
    return failures ? 1 : 0;
}
