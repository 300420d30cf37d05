// augur.hpp: a header-only C++17 wrapper over the C ABI in augur.h.
//
//   augur::Config cfg = augur::Config::defaults(16, 4096, 256);  // augur_config_default
//   cfg.host_blocks = 1024;
//   augur::Engine engine(cfg);                                   // augur_engine_new
//   engine.add(desc, now_us);
//   augur::Plan plan = engine.schedule(now_us);
//   for (const augur_plan_entry& e : plan.entries()) { ... plan.blocks(e) ... }
//   engine.complete(results, now_us);
//
// - augur::Engine owns one engine (move-only; the destructor frees it). Engine(cfg) allocates
//   it once (augur_engine_new); Engine::in_region(cfg, region, len) builds it in the caller's
//   memory (augur_engine_init, no allocation; the region must outlive the Engine).
// - augur::Plan is a view of the engine's plan: Spans over its arrays, valid until the next
//   call that changes the engine (as in augur.h).
// - Every method is a thin inline call of the C function of the same name; nothing here
//   allocates except block_table_vector() and the message of an Error.
//
// Errors: a failing call throws augur::Error (a std::runtime_error) carrying the status and
// the engine's last-error message, which names the bad field, index or size. Why exceptions:
// C++ inference servers (vLLM-like C++ stacks, TensorRT-LLM's executor) report setup and
// configuration errors as exceptions, and here the hot-path calls (schedule, complete, add)
// fail only on caller bugs (results that do not match the plan, time going backwards, stale
// handles) or on augur bugs (a poisoned engine): situations a server cannot continue from in
// the normal flow. For code that must not throw (servers built with -fno-exceptions, or a
// loop that wants the status), try_schedule / try_complete / try_add / Engine::try_create
// return the augur_status and never throw. Built with -fno-exceptions, the throwing methods
// print the error and abort instead (the try_* methods are then the way to handle errors).
#ifndef AUGUR_HPP
#define AUGUR_HPP

#include "augur.h"

#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

#if defined(__cpp_exceptions) || defined(__EXCEPTIONS) || defined(_CPPUNWIND)
#define AUGUR_HPP_EXCEPTIONS 1
#else
#define AUGUR_HPP_EXCEPTIONS 0
#endif

namespace augur {

/// A view of `size` contiguous `T`s (C++17 has no std::span). Never owns.
template <class T>
class Span {
public:
    constexpr Span() noexcept = default;
    constexpr Span(T* data, std::size_t size) noexcept : data_(size ? data : nullptr), size_(size) {}
    template <class U, class = decltype(static_cast<T*>(std::declval<U&>().data()))>
    constexpr Span(U& container) noexcept : Span(container.data(), container.size()) {}
    template <std::size_t N>
    constexpr Span(T (&array)[N]) noexcept : Span(array, N) {}

    constexpr T* data() const noexcept { return data_; }
    constexpr std::size_t size() const noexcept { return size_; }
    constexpr bool empty() const noexcept { return size_ == 0; }
    constexpr T* begin() const noexcept { return data_; }
    constexpr T* end() const noexcept { return data_ + size_; }
    /// Unchecked, as std::span.
    constexpr T& operator[](std::size_t i) const noexcept { return data_[i]; }

private:
    T* data_ = nullptr;
    std::size_t size_ = 0;
};

/// The static description of a status.
inline const char* status_str(augur_status s) noexcept { return augur_status_str(s); }

/// The library version, e.g. "0.1.0".
inline const char* version() noexcept { return augur_version(); }

#if AUGUR_HPP_EXCEPTIONS
/// A failed augur call: its status and the engine's message naming what was wrong.
class Error : public std::runtime_error {
public:
    Error(augur_status status, const std::string& message)
        : std::runtime_error(message), status_(status) {}
    augur_status status() const noexcept { return status_; }

private:
    augur_status status_;
};
#endif

namespace detail {

/// Fails with `status`: throws augur::Error (or, without exceptions, prints and aborts).
[[noreturn]] inline void fail(augur_status status, const char* call, const char* detail) {
    std::string msg = std::string(call) + ": " + augur_status_str(status);
    if (detail != nullptr && detail[0] != '\0') msg += std::string(": ") + detail;
#if AUGUR_HPP_EXCEPTIONS
    throw Error(status, msg);
#else
    std::fprintf(stderr, "augur: %s\n", msg.c_str());
    std::abort();
#endif
}

inline void check(augur_status s, const char* call, const augur_engine* e) {
    if (s != AUGUR_OK) fail(s, call, augur_engine_last_error(e));
}

inline void check(augur_status s, const char* call) {
    if (s != AUGUR_OK) fail(s, call, nullptr);
}

}  // namespace detail

/// Size and alignment of an engine's memory (augur_engine_layout).
struct Layout {
    std::size_t size;
    std::size_t align;
};

/// An augur_config with helpers; converts to `const augur_config&` where the C API wants one.
struct Config : augur_config {
    Config() noexcept : augur_config() {}
    Config(const augur_config& c) noexcept : augur_config(c) {}  // NOLINT: implicit on purpose

    /// The defaults for `device_blocks` blocks of `block_size` tokens and `max_requests` live
    /// requests (augur_config_default; not validated). Note: max_running defaults to 256,
    /// which must not exceed max_requests.
    static Config defaults(std::uint32_t block_size, std::uint32_t device_blocks,
                           std::uint32_t max_requests) {
        Config c;
        detail::check(augur_config_default(&c, block_size, device_blocks, max_requests),
                      "augur_config_default");
        return c;
    }

    /// The status of augur_config_validate; on failure `*reason` (if not null) gets the
    /// message naming the bad field. Never throws.
    augur_status try_validate(std::string* reason = nullptr) const noexcept {
        char buf[256] = {0};
        augur_status s = augur_config_validate(this, buf, sizeof buf);
        if (s != AUGUR_OK && reason != nullptr) {
#if AUGUR_HPP_EXCEPTIONS
            try {
                *reason = buf;
            } catch (...) {
            }
#else
            *reason = buf;
#endif
        }
        return s;
    }

    /// Throws augur::Error (AUGUR_E_INVALID_CONFIG, with the reason) if invalid.
    void validate() const {
        char buf[256] = {0};
        augur_status s = augur_config_validate(this, buf, sizeof buf);
        if (s != AUGUR_OK) detail::fail(s, "augur_config_validate", buf);
    }

    /// The memory an engine with this configuration needs (for Engine::in_region).
    Layout layout() const {
        Layout l{0, 0};
        augur_status s = augur_engine_layout(this, &l.size, &l.align);
        if (s != AUGUR_OK) {
            char buf[256] = {0};
            augur_config_validate(this, buf, sizeof buf);
            detail::fail(s, "augur_engine_layout", buf);
        }
        return l;
    }
};

/// The decisions of one step: Spans into the engine, valid until the next call that changes
/// the engine (augur_schedule, augur_complete, augur_add_request, ...).
class Plan {
public:
    Plan() noexcept : p_() {}
    explicit Plan(const augur_plan& p) noexcept : p_(p) {}

    std::uint64_t step() const noexcept { return p_.step; }
    Span<const augur_plan_entry> entries() const noexcept { return {p_.entries, p_.entries_len}; }
    /// The new block ids of all entries, back to back.
    Span<const std::uint32_t> blocks() const noexcept { return {p_.blocks, p_.blocks_len}; }
    /// The new block ids of `e` (an entry of this plan): the table delta appended after
    /// truncating the mirrored table to e.table_start. Empty if `e` does not fit this plan.
    Span<const std::uint32_t> blocks(const augur_plan_entry& e) const noexcept {
        std::size_t off = e.blocks_offset, len = e.blocks_len;
        if (off > p_.blocks_len || len > p_.blocks_len - off) return {};
        return {p_.blocks + off, len};
    }
    Span<const augur_block_pair> swap_out() const noexcept { return {p_.swap_out, p_.swap_out_len}; }
    Span<const augur_block_pair> swap_in() const noexcept { return {p_.swap_in, p_.swap_in_len}; }
    Span<const augur_block_pair> copies() const noexcept { return {p_.copies, p_.copies_len}; }
    Span<const augur_preemption> preempted() const noexcept {
        return {p_.preempted, p_.preempted_len};
    }
    Span<const augur_dropped> dropped() const noexcept { return {p_.dropped, p_.dropped_len}; }
    const augur_plan& raw() const noexcept { return p_; }

private:
    augur_plan p_;
};

/// One engine, owned: move-only, freed by the destructor.
class Engine {
public:
    /// No engine (the moved-from state); only destruction, assignment and get() are allowed.
    Engine() noexcept = default;

    /// A new engine with configuration `cfg`, its memory allocated once (augur_engine_new).
    /// Throws augur::Error naming the bad field of an invalid configuration.
    explicit Engine(const augur_config& cfg) {
        augur_status s = augur_engine_new(&cfg, &e_);
        if (s != AUGUR_OK) {
            char buf[256] = {0};
            augur_config_validate(&cfg, buf, sizeof buf);
            detail::fail(s, "augur_engine_new", buf);
        }
    }

    /// An engine inside `region` (`len` bytes, sized and aligned as Config::layout() says):
    /// no allocation. The region's contents do not matter; it must stay valid and untouched
    /// until this Engine is destroyed, and is the caller's again after.
    static Engine in_region(const augur_config& cfg, void* region, std::size_t len) {
        Engine out;
        augur_status s = augur_engine_init(&cfg, region, len, &out.e_);
        if (s != AUGUR_OK) {
            char buf[256] = {0};
            std::size_t size = 0, align = 0;
            if (augur_config_validate(&cfg, buf, sizeof buf) == AUGUR_OK &&
                augur_engine_layout(&cfg, &size, &align) == AUGUR_OK) {
                std::snprintf(buf, sizeof buf,
                              "region of %zu bytes at %p; this configuration needs %zu bytes "
                              "aligned to %zu",
                              len, region, size, align);
            }
            detail::fail(s, "augur_engine_init", buf);
        }
        return out;
    }

    /// augur_engine_new without exceptions: on success `*out` holds the new engine.
    static augur_status try_create(const augur_config& cfg, Engine* out) noexcept {
        if (out == nullptr) return AUGUR_E_NULL_POINTER;
        augur_engine* e = nullptr;
        augur_status s = augur_engine_new(&cfg, &e);
        if (s == AUGUR_OK) *out = Engine(e);
        return s;
    }

    /// Takes ownership of an engine pointer from augur_engine_new / augur_engine_init.
    static Engine adopt(augur_engine* e) noexcept { return Engine(e); }

    Engine(const Engine&) = delete;
    Engine& operator=(const Engine&) = delete;
    Engine(Engine&& o) noexcept : e_(std::exchange(o.e_, nullptr)) {}
    Engine& operator=(Engine&& o) noexcept {
        if (this != &o) {
            augur_engine_free(e_);
            e_ = std::exchange(o.e_, nullptr);
        }
        return *this;
    }
    ~Engine() { augur_engine_free(e_); }

    augur_engine* get() const noexcept { return e_; }
    explicit operator bool() const noexcept { return e_ != nullptr; }
    /// Gives up ownership (the caller frees with augur_engine_free).
    augur_engine* release() noexcept { return std::exchange(e_, nullptr); }

    /// The message of the last failed call ("" if none).
    const char* last_error() const noexcept { return augur_engine_last_error(e_); }

    Config config() const {
        Config c;
        detail::check(augur_engine_config(e_, &c), "augur_engine_config", e_);
        return c;
    }

    // ----- requests -----

    augur_request add(const augur_request_desc& d, std::uint64_t now_us) {
        augur_request h = 0;
        detail::check(augur_add_request(e_, &d, now_us, &h), "augur_add_request", e_);
        return h;
    }
    augur_status try_add(const augur_request_desc& d, std::uint64_t now_us,
                         augur_request* out) noexcept {
        return augur_add_request(e_, &d, now_us, out);
    }
    augur_request find(std::uint64_t external_id) const {
        augur_request h = 0;
        detail::check(augur_find_request(e_, external_id, &h), "augur_find_request", e_);
        return h;
    }
    void update_prediction(augur_request r, double predicted_remaining, std::uint64_t now_us) {
        detail::check(augur_update_prediction(e_, r, predicted_remaining, now_us),
                      "augur_update_prediction", e_);
    }
    void set_prompt_block_hashes(augur_request r, Span<const std::uint64_t> hashes,
                                 std::uint64_t now_us) {
        detail::check(augur_set_prompt_block_hashes(e_, r, hashes.data(), hashes.size(), now_us),
                      "augur_set_prompt_block_hashes", e_);
    }
    void abort(augur_request r, std::uint64_t now_us) {
        detail::check(augur_abort(e_, r, now_us), "augur_abort", e_);
    }
    void resume(augur_request r, std::uint32_t appended_tokens, std::uint64_t now_us) {
        detail::check(augur_resume(e_, r, appended_tokens, now_us), "augur_resume", e_);
    }

    // ----- the step -----

    Plan schedule(std::uint64_t now_us) {
        augur_plan p;
        detail::check(augur_schedule(e_, now_us, &p), "augur_schedule", e_);
        return Plan(p);
    }
    /// augur_schedule without exceptions: `*out` is written only on AUGUR_OK.
    augur_status try_schedule(std::uint64_t now_us, Plan* out) noexcept {
        if (out == nullptr) return augur_schedule(e_, now_us, nullptr);
        augur_plan p;
        augur_status s = augur_schedule(e_, now_us, &p);
        if (s == AUGUR_OK) *out = Plan(p);
        return s;
    }
    Plan last_plan() const {
        augur_plan p;
        detail::check(augur_last_plan(e_, &p), "augur_last_plan", e_);
        return Plan(p);
    }
    /// One result per entry of the current plan, in plan order.
    void complete(Span<const augur_entry_result> results, std::uint64_t now_us) {
        detail::check(augur_complete(e_, results.data(), results.size(), now_us), "augur_complete",
                      e_);
    }
    augur_status try_complete(Span<const augur_entry_result> results,
                              std::uint64_t now_us) noexcept {
        return augur_complete(e_, results.data(), results.size(), now_us);
    }
    /// Only the entries whose result is not the default (one token where the entry samples,
    /// nothing else), each naming its position; every other entry gets the default.
    void complete_except(Span<const augur_entry_exception> exceptions, std::uint64_t now_us) {
        detail::check(augur_complete_except(e_, exceptions.data(), exceptions.size(), now_us),
                      "augur_complete_except", e_);
    }
    augur_status try_complete_except(Span<const augur_entry_exception> exceptions,
                                     std::uint64_t now_us) noexcept {
        return augur_complete_except(e_, exceptions.data(), exceptions.size(), now_us);
    }
    /// The requests the last complete() finished (valid until the next changing call).
    Span<const augur_finished> last_finished() const {
        const augur_finished* f = nullptr;
        std::size_t n = 0;
        detail::check(augur_last_finished(e_, &f, &n), "augur_last_finished", e_);
        return {f, n};
    }

    // ----- reading -----

    augur_stats stats() const {
        augur_stats s;
        detail::check(augur_engine_stats(e_, &s), "augur_engine_stats", e_);
        return s;
    }
    /// KV events since the last drain, for a cluster router: moves up to `out.size()` into
    /// `out` and returns how many; call until it returns less than `out.size()`.
    std::size_t drain_kv_events(Span<augur_kv_event> out) {
        std::size_t n = 0;
        detail::check(augur_drain_kv_events(e_, out.data(), out.size(), &n),
                      "augur_drain_kv_events", e_);
        return n;
    }
    augur_kv_event_stats kv_event_stats() const {
        augur_kv_event_stats s;
        detail::check(augur_engine_kv_event_stats(e_, &s), "augur_engine_kv_event_stats", e_);
        return s;
    }
    augur_request_info info(augur_request r) const {
        augur_request_info i;
        detail::check(augur_request_get_info(e_, r, &i), "augur_request_get_info", e_);
        return i;
    }
    /// Copies the table from entry `start` into `out`; returns how many ids were written.
    std::size_t block_table(augur_request r, std::uint32_t start, Span<std::uint32_t> out) const {
        std::size_t n = 0;
        detail::check(augur_request_block_table(e_, r, start, out.data(), out.size(), &n),
                      "augur_request_block_table", e_);
        return n;
    }
    /// The whole table, in a new vector (allocates; for checks and debugging).
    std::vector<std::uint32_t> block_table_vector(augur_request r) const {
        std::vector<std::uint32_t> v(info(r).kv_blocks);
        v.resize(block_table(r, 0, Span<std::uint32_t>(v.data(), v.size())));
        return v;
    }

private:
    explicit Engine(augur_engine* e) noexcept : e_(e) {}
    augur_engine* e_ = nullptr;
};

}  // namespace augur

#endif  // AUGUR_HPP
