// One pool of persistent worker threads for the whole process.
//
// Protocol: the caller publishes a job (fn, ntasks), bumps `gen_` and joins in; every worker
// notices the new generation, claims tasks from `next_` until none are left, then decrements
// `pending_`. The caller returns only when pending_ == 0, so the job's data is never touched
// after parallel_for returns and a worker can never miss or mix up a generation.
// Idle workers spin briefly (back-to-back kernel calls are common: a decode step makes hundreds)
// and then sleep on a condition variable, so an idle process uses no CPU.
#include "pool.h"

#include <sched.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <condition_variable>
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
// two kernel calls of one forward step, short enough not to steal a core from other work.
constexpr auto kSpin = std::chrono::microseconds(200);

class Pool {
 public:
  explicit Pool(int n) { start(n); }

  int threads() const { return nthreads_; }

  void resize(int n) {
    std::lock_guard<std::mutex> busy(run_mu_);
    stop();
    start(n);
  }

  void run(int ntasks, const std::function<void(int, int)>& fn) {
    std::unique_lock<std::mutex> busy(run_mu_, std::try_to_lock);
    if (!busy.owns_lock() || nthreads_ == 1 || ntasks <= 1) {
      for (int i = 0; i < ntasks; i++) fn(i, 0);
      return;
    }
    fn_ = &fn;
    ntasks_ = ntasks;
    next_.store(0, std::memory_order_relaxed);
    pending_.store(nthreads_ - 1, std::memory_order_relaxed);
    {
      std::lock_guard<std::mutex> lk(mu_);
      gen_.fetch_add(1, std::memory_order_release);
    }
    cv_.notify_all();
    work(0);
    while (pending_.load(std::memory_order_acquire) != 0) cpu_relax();
    fn_ = nullptr;
  }

 private:
  void start(int n) {
    nthreads_ = std::max(1, std::min(n, 256));
    quit_.store(false, std::memory_order_relaxed);
    // The generation is read here, not in the new thread: a job may be published before the
    // thread first runs, and it must still count as new to that thread.
    const unsigned gen = gen_.load(std::memory_order_relaxed);
    for (int t = 1; t < nthreads_; t++) workers_.emplace_back([this, t, gen] { loop(t, gen); });
  }

  void stop() {
    {
      std::lock_guard<std::mutex> lk(mu_);
      quit_.store(true, std::memory_order_relaxed);
      gen_.fetch_add(1, std::memory_order_release);
    }
    cv_.notify_all();
    for (auto& w : workers_) w.join();
    workers_.clear();
  }

  void work(int thread) {
    for (;;) {
      int i = next_.fetch_add(1, std::memory_order_relaxed);
      if (i >= ntasks_) return;
      (*fn_)(i, thread);
    }
  }

  void loop(int thread, unsigned seen) {
    for (;;) {
      auto until = std::chrono::steady_clock::now() + kSpin;
      unsigned g;
      for (int spins = 0;; spins++) {
        g = gen_.load(std::memory_order_acquire);
        if (g != seen) break;
        if ((spins & 63) == 63 && std::chrono::steady_clock::now() > until) {
          std::unique_lock<std::mutex> lk(mu_);
          cv_.wait(lk, [&] { return gen_.load(std::memory_order_acquire) != seen; });
          g = gen_.load(std::memory_order_acquire);
          break;
        }
        cpu_relax();
      }
      seen = g;
      // quit_ is stored before the generation bump that woke us (acquire above).
      if (quit_.load(std::memory_order_relaxed)) return;
      work(thread);
      pending_.fetch_sub(1, std::memory_order_release);
    }
  }

  int nthreads_ = 1;
  std::vector<std::thread> workers_;
  std::mutex run_mu_;  // held by the one caller whose job is running
  std::mutex mu_;      // the sleep/wake handshake
  std::condition_variable cv_;
  std::atomic<bool> quit_{false};
  std::atomic<unsigned> gen_{0};
  std::atomic<int> next_{0};
  std::atomic<int> pending_{0};
  int ntasks_ = 0;
  const std::function<void(int, int)>* fn_ = nullptr;
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
