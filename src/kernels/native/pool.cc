// One pool of persistent worker threads for the whole process.
//
// Protocol. A job is (fn, ntasks) under an epoch number. `state_` packs the epoch (high 32 bits)
// and the next unclaimed task (low 32 bits); a thread claims task i by a compare-and-swap of
// (epoch, i) -> (epoch, i + 1), which can only succeed while that job is the current one and
// task i is unclaimed, so a worker that wakes late can never run a task of a finished job. The
// caller publishes a job, works on it like any worker, and returns when `done_` == ntasks: it
// never waits for a worker that has not started, which matters on a busy machine where a worker
// may not get a core for milliseconds.
// Idle workers spin briefly (a decode step makes hundreds of back-to-back kernel calls), then
// sleep on a condition variable, so an idle process uses no CPU.
#include "pool.h"

#include <sched.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <mutex>
#include <thread>
#include <vector>

#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
static inline void cpu_relax() { _mm_pause(); }
#else
static inline void cpu_relax() {}
#endif

namespace fk {
namespace {

// How long an idle worker spins before it sleeps. Long enough to bridge the JavaScript between
// two kernel calls of one forward step, short enough not to hold a core when nothing runs.
constexpr auto kSpin = std::chrono::microseconds(200);

inline uint32_t epoch_of(uint64_t s) { return static_cast<uint32_t>(s >> 32); }

class Pool {
 public:
  explicit Pool(int n) { start(n); }

  int threads() const { return nthreads_; }

  void resize(int n) {
    while (busy_.exchange(true, std::memory_order_acquire)) std::this_thread::yield();
    stop();
    start(n);
    busy_.store(false, std::memory_order_release);
  }

  void run(int ntasks, const std::function<void(int, int)>& fn) {
    // Serial when there is nothing to share, or when the pool is already running a job: a
    // nested call from inside a task, or a call from a second JavaScript thread.
    if (nthreads_ == 1 || ntasks <= 1 || busy_.exchange(true, std::memory_order_acquire)) {
      for (int i = 0; i < ntasks; i++) fn(i, 0);
      return;
    }
    fn_.store(&fn, std::memory_order_relaxed);
    ntasks_.store(ntasks, std::memory_order_relaxed);
    done_.store(0, std::memory_order_relaxed);
    const uint32_t epoch = epoch_of(state_.load(std::memory_order_relaxed)) + 1;
    state_.store(static_cast<uint64_t>(epoch) << 32, std::memory_order_seq_cst);
    wake();
    work(epoch, 0);
    for (int spins = 0; done_.load(std::memory_order_acquire) != ntasks; spins++) {
      // A worker holding a task may have lost its core: after a while, offer ours.
      if (spins > 4000) std::this_thread::yield();
      else cpu_relax();
    }
    busy_.store(false, std::memory_order_release);
  }

 private:
  void start(int n) {
    nthreads_ = std::max(1, std::min(n, 256));
    quit_.store(false, std::memory_order_relaxed);
    const uint32_t epoch = epoch_of(state_.load(std::memory_order_relaxed));
    for (int t = 1; t < nthreads_; t++) workers_.emplace_back([this, t, epoch] { loop(t, epoch); });
  }

  void stop() {
    quit_.store(true, std::memory_order_relaxed);
    const uint32_t epoch = epoch_of(state_.load(std::memory_order_relaxed)) + 1;
    state_.store(static_cast<uint64_t>(epoch) << 32, std::memory_order_seq_cst);
    sleepers_.fetch_add(1, std::memory_order_seq_cst);  // force the notify below
    wake();
    for (auto& w : workers_) w.join();
    workers_.clear();
    sleepers_.fetch_sub(1, std::memory_order_seq_cst);
  }

  // Wakes sleeping workers. Pairs with the check in loop(): a worker either sees the new epoch
  // or is counted in sleepers_ (both sides seq_cst), and the lock orders notify after its wait.
  void wake() {
    if (sleepers_.load(std::memory_order_seq_cst) == 0) return;
    { std::lock_guard<std::mutex> lk(mu_); }
    cv_.notify_all();
  }

  // Claims and runs tasks of job `epoch` until none is left.
  void work(uint32_t epoch, int thread) {
    for (;;) {
      uint64_t s = state_.load(std::memory_order_acquire);
      if (epoch_of(s) != epoch) return;
      const uint32_t i = static_cast<uint32_t>(s);
      if (i >= static_cast<uint32_t>(ntasks_.load(std::memory_order_relaxed))) return;
      if (!state_.compare_exchange_weak(s, s + 1, std::memory_order_acq_rel, std::memory_order_relaxed)) continue;
      (*fn_.load(std::memory_order_relaxed))(static_cast<int>(i), thread);
      done_.fetch_add(1, std::memory_order_release);
    }
  }

  void loop(int thread, uint32_t seen) {
    for (;;) {
      const auto until = std::chrono::steady_clock::now() + kSpin;
      uint32_t epoch;
      for (int spins = 0;; spins++) {
        epoch = epoch_of(state_.load(std::memory_order_acquire));
        if (epoch != seen) break;
        if ((spins & 63) == 63 && std::chrono::steady_clock::now() > until) {
          std::unique_lock<std::mutex> lk(mu_);
          sleepers_.fetch_add(1, std::memory_order_seq_cst);
          cv_.wait(lk, [&] { return epoch_of(state_.load(std::memory_order_seq_cst)) != seen; });
          sleepers_.fetch_sub(1, std::memory_order_relaxed);
          epoch = epoch_of(state_.load(std::memory_order_acquire));
          break;
        }
        cpu_relax();
      }
      seen = epoch;
      if (quit_.load(std::memory_order_relaxed)) return;  // stored before the epoch bump
      work(epoch, thread);
    }
  }

  int nthreads_ = 1;
  std::vector<std::thread> workers_;
  std::atomic<bool> busy_{false};  // a job (or a resize) is in progress
  std::mutex mu_;      // the sleep/wake handshake
  std::condition_variable cv_;
  std::atomic<bool> quit_{false};
  std::atomic<uint64_t> state_{0};  // epoch << 32 | next task
  std::atomic<int> ntasks_{0};
  std::atomic<int> done_{0};
  std::atomic<int> sleepers_{0};
  std::atomic<const std::function<void(int, int)>*> fn_{nullptr};
};

// Created on first use and never destroyed: joining threads from a static destructor at process
// exit is fragile, and the OS reclaims the threads anyway.
std::once_flag g_once;
Pool* g_pool = nullptr;

Pool& pool() {
  std::call_once(g_once, [] { g_pool = new Pool(default_threads()); });
  return *g_pool;
}

}  // namespace

int default_threads() {
#ifdef __linux__
  cpu_set_t set;
  if (sched_getaffinity(0, sizeof(set), &set) == 0) {
    int n = CPU_COUNT(&set);
    if (n > 0) return n;
  }
#endif
  unsigned n = std::thread::hardware_concurrency();
  return n > 0 ? static_cast<int>(n) : 1;
}

void parallel_for(int ntasks, const std::function<void(int, int)>& fn) { pool().run(ntasks, fn); }

int pool_threads() { return pool().threads(); }

void set_pool_threads(int n) { pool().resize(n); }

}  // namespace fk
