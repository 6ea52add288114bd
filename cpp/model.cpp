// Implementation of model.hpp.  Mirrors simulator/reference.py line by line in meaning; the tests
// check the two agree exactly.  Tiles are grouped by token-tile width (at most two distinct widths),
// which changes nothing in the sums but makes a layer cost O(row tiles), not O(row x token tiles).
#include "model.hpp"

#include <algorithm>
#include <functional>
#include <numeric>
#include <queue>
#include <utility>

namespace besa {

int64_t mem_cycles(int64_t bits, const HwParams& hw) {
    return hw.memory ? cdiv(bits * kBwScale, hw.bw_bits_scaled) : 0;
}

int64_t dense_tile_cycles(int64_t tm, int64_t tn, int64_t width, int64_t lines, const HwParams& hw) {
    const int64_t per_row = cdiv(tm, lines) * tn;
    const int64_t full = width / hw.tile_k, rem = width % hw.tile_k;
    int64_t total = full * (per_row * cdiv(hw.tile_k, hw.macs_per_line) + hw.pipeline_fill);
    if (rem) total += per_row * cdiv(rem, hw.macs_per_line) + hw.pipeline_fill;
    return total;
}

// LPT on costs already sorted descending (stable by row), zero costs dropped.
static int64_t lpt_sorted(const std::vector<int64_t>& sorted_costs, int64_t lines) {
    if (sorted_costs.empty() || lines <= 0) return 0;
    if (static_cast<int64_t>(sorted_costs.size()) <= lines) return sorted_costs.front();
    using Item = std::pair<int64_t, int64_t>;  // (load, line): ties go to the lower line
    std::priority_queue<Item, std::vector<Item>, std::greater<Item>> heap;
    for (int64_t ln = 0; ln < lines; ++ln) heap.emplace(0, ln);
    int64_t best = 0;
    for (int64_t c : sorted_costs) {
        Item it = heap.top();
        heap.pop();
        it.first += c;
        best = std::max(best, it.first);
        heap.push(it);
    }
    return best;
}

static int64_t round_robin(const std::vector<int64_t>& costs, int64_t lines) {
    if (costs.empty() || lines <= 0) return 0;
    std::vector<int64_t> load(static_cast<size_t>(lines), 0);
    for (size_t j = 0; j < costs.size(); ++j) load[j % static_cast<size_t>(lines)] += costs[j];
    return *std::max_element(load.begin(), load.end());
}

static std::vector<int64_t> sort_for_lpt(const std::vector<int64_t>& costs) {
    std::vector<int64_t> s;
    s.reserve(costs.size());
    for (int64_t c : costs)
        if (c > 0) s.push_back(c);
    // descending; equal costs are interchangeable for the loads, so stability does not matter here
    std::sort(s.begin(), s.end(), std::greater<int64_t>());
    return s;
}

int64_t max_line_load(const std::vector<int64_t>& costs, int64_t lines, bool lpt) {
    return lpt ? lpt_sorted(sort_for_lpt(costs), lines) : round_robin(costs, lines);
}

namespace {

struct Pipe {
    int64_t total = 0, stall = 0, csum = 0, msum = 0;
    void add(int64_t c, int64_t m, int64_t count) {
        total += count * std::max(c, m);
        stall += count * std::max<int64_t>(0, m - c);
        csum += count * c;
        msum += count * m;
    }
    void store(LayerResult& r) const {
        r.values["cycles"] = total;
        r.values["stall_cycles"] = stall;
        r.values["compute_cycles"] = csum;
        r.values["memory_cycles"] = msum;
        r.bound = msum > csum ? "memory" : "compute";
    }
};

// Token tiles as (width, count): at most two distinct widths.
std::vector<std::pair<int64_t, int64_t>> token_classes(int64_t N, const HwParams& hw) {
    std::vector<std::pair<int64_t, int64_t>> out;
    if (N / hw.tile_n) out.emplace_back(hw.tile_n, N / hw.tile_n);
    if (N % hw.tile_n) out.emplace_back(N % hw.tile_n, 1);
    return out;
}

int64_t index_bits(int64_t tm, int64_t ks, int64_t nnz, int64_t pads, const HwParams& hw) {
    if (ks == 0) return 0;
    if (hw.index_format == 0) return tm * ks;
    if (hw.index_format == 1) return nnz * hw.index_bits + tm * hw.rowptr_bits;
    return (nnz + pads) * hw.rle_bits;
}

}  // namespace

LayerResult dense_layer(int64_t M, int64_t K, int64_t N, const HwParams& hw) {
    Pipe pipe;
    int64_t wb = 0, ab = 0, ob = 0;
    const auto classes = token_classes(N, hw);
    for (int64_t r0 = 0; r0 < M; r0 += hw.tile_m) {
        const int64_t tm = std::min(hw.tile_m, M - r0);
        for (auto [tn, count] : classes) {
            const int64_t c = dense_tile_cycles(tm, tn, K, hw.lines, hw);
            const int64_t w = tm * K * hw.weight_bits, a = K * tn * hw.act_bits, o = tm * tn * hw.out_bits;
            wb += count * w;
            ab += count * a;
            ob += count * o;
            pipe.add(c, mem_cycles(w + a + o, hw), count);
        }
    }
    LayerResult r;
    pipe.store(r);
    r.values["dense_engine_cycles"] = pipe.csum;
    r.values["sparse_engine_cycles"] = 0;
    r.values["bits_weights"] = wb;
    r.values["bits_index"] = 0;
    r.values["bits_act"] = ab;
    r.values["bits_out"] = ob;
    return r;
}

LayerResult nm_layer(int64_t M, int64_t K, int64_t N, int64_t group_max, const HwParams& hw) {
    const int64_t n_use = std::max<int64_t>({hw.nm_n, group_max, 1});
    if (n_use >= hw.nm_m) {
        LayerResult r = dense_layer(M, K, N, hw);
        r.values["nm_n"] = hw.nm_m;
        return r;
    }
    const int64_t groups = cdiv(K, hw.nm_m);
    Pipe pipe;
    int64_t wb = 0, ib = 0, ab = 0, ob = 0;
    const auto classes = token_classes(N, hw);
    for (int64_t r0 = 0; r0 < M; r0 += hw.tile_m) {
        const int64_t tm = std::min(hw.tile_m, M - r0);
        for (auto [tn, count] : classes) {
            int64_t c = 0;
            for (int64_t k0 = 0; k0 < K; k0 += hw.tile_k) {
                const int64_t tk = std::min(hw.tile_k, K - k0);
                const int64_t chunk = cdiv(tm, hw.lines) * tn * cdiv(tk, hw.macs_per_line) + hw.pipeline_fill;
                c += cdiv(chunk * n_use, hw.nm_m);
            }
            const int64_t w = tm * groups * n_use * hw.weight_bits;
            const int64_t i = tm * groups * n_use * hw.nm_meta_bits;
            const int64_t a = K * tn * hw.act_bits, o = tm * tn * hw.out_bits;
            wb += count * w;
            ib += count * i;
            ab += count * a;
            ob += count * o;
            pipe.add(c, mem_cycles(w + i + a + o, hw), count);
        }
    }
    LayerResult r;
    pipe.store(r);
    r.values["dense_engine_cycles"] = pipe.csum;
    r.values["sparse_engine_cycles"] = 0;
    r.values["bits_weights"] = wb;
    r.values["bits_index"] = ib;
    r.values["bits_act"] = ab;
    r.values["bits_out"] = ob;
    r.values["nm_n"] = n_use;
    return r;
}

LayerResult cycle_layer(int64_t M, int64_t K, int64_t N, int64_t G, const std::vector<int64_t>& row_sparse,
                        const std::vector<int64_t>& row_pads, int64_t nnz, const HwParams& hw) {
    const int64_t L = hw.lines, m = hw.macs_per_line, Ks = K - G;
    const int64_t nnz_s = std::accumulate(row_sparse.begin(), row_sparse.end(), int64_t(0));
    const bool seq = L == 1 && G > 0 && nnz_s > 0;  // one line: the engines take turns
    const auto classes = token_classes(N, hw);

    struct RowTile {
        int64_t tm, s, p;
        std::vector<int64_t> costs;  // beats per token, row order (round robin) or sorted (LPT)
        std::vector<int64_t> mem;    // memory cycles per token class
    };
    std::vector<RowTile> tiles;
    int64_t bw = 0, bi = 0, ba = 0, bo = 0, idx_once = 0;
    for (int64_t r0 = 0; r0 < M; r0 += hw.tile_m) {
        RowTile t;
        t.tm = std::min(hw.tile_m, M - r0);
        t.s = t.p = 0;
        t.costs.reserve(static_cast<size_t>(t.tm));
        for (int64_t i = r0; i < r0 + t.tm; ++i) {
            t.s += row_sparse[static_cast<size_t>(i)];
            t.p += row_pads[static_cast<size_t>(i)];
            t.costs.push_back(cdiv(row_sparse[static_cast<size_t>(i)], m));
        }
        if (hw.assign_lpt) t.costs = sort_for_lpt(t.costs);
        const int64_t w = t.tm * G * hw.weight_bits + (t.s + t.p) * hw.weight_bits;
        const int64_t ib = index_bits(t.tm, Ks, t.s, t.p, hw);
        idx_once += ib;
        for (auto [tn, count] : classes) {
            const int64_t a = K * tn * hw.act_bits, o = t.tm * tn * hw.out_bits;
            bw += count * w;
            bi += count * ib;
            ba += count * a;
            bo += count * o;
            t.mem.push_back(mem_cycles(w + ib + a + o, hw));
        }
        tiles.push_back(std::move(t));
    }

    auto run = [&](int64_t Ld, int64_t Ls, LayerResult& out) {
        Pipe pipe;
        int64_t dsum = 0, ssum = 0;
        for (const RowTile& t : tiles) {
            const int64_t load = t.s > 0 ? (hw.assign_lpt ? lpt_sorted(t.costs, Ls) : round_robin(t.costs, Ls)) : 0;
            for (size_t k = 0; k < classes.size(); ++k) {
                const auto [tn, count] = classes[k];
                const int64_t cd = G > 0 ? dense_tile_cycles(t.tm, tn, G, Ld, hw) : 0;
                const int64_t cs = t.s > 0 ? cdiv(load * tn * hw.gather_scaled, hw.gather_scale) + hw.pipeline_fill : 0;
                dsum += count * cd;
                ssum += count * cs;
                pipe.add(seq ? cd + cs : std::max(cd, cs), t.mem[k], count);
            }
        }
        out = LayerResult();
        pipe.store(out);
        out.values["dense_engine_cycles"] = dsum;
        out.values["sparse_engine_cycles"] = ssum;
        out.values["lines_dense"] = Ld;
        out.values["lines_sparse"] = Ls;
    };

    LayerResult best;
    if (G == 0 && nnz_s == 0) {
        run(0, 0, best);
    } else if (nnz_s == 0) {
        run(L, 0, best);
    } else if (G == 0) {
        run(0, L, best);
    } else if (seq) {
        run(1, 1, best);
    } else if (!hw.split_optimal) {
        const int64_t Ld = std::min(std::max((L * M * G) / (M * G + nnz_s), int64_t(1)), L - 1);
        run(Ld, L - Ld, best);
    } else {
        // Scan every split; the smallest Ld with the fewest total cycles wins (as the reference's
        // ascending scan with strict <).  A cheap lower bound (dense part exact, sparse part from
        // max(ceil(sum/Ls), max cost) instead of LPT) skips splits that cannot win, starting from
        // the proportional split's total; the answer is the full scan's.
        auto lower_bound = [&](int64_t Ld) {
            const int64_t Ls = L - Ld;
            int64_t total = 0;
            for (const RowTile& t : tiles) {
                int64_t load = 0;
                if (t.s > 0) {
                    int64_t sum = 0, mx = 0;
                    for (int64_t c : t.costs) { sum += c; mx = std::max(mx, c); }
                    load = std::max(cdiv(sum, Ls), mx);
                }
                for (size_t k = 0; k < classes.size(); ++k) {
                    const auto [tn, count] = classes[k];
                    const int64_t cd = G > 0 ? dense_tile_cycles(t.tm, tn, G, Ld, hw) : 0;
                    const int64_t cs = t.s > 0 ? cdiv(load * tn * hw.gather_scaled, hw.gather_scale) + hw.pipeline_fill : 0;
                    total += count * std::max(std::max(cd, cs), t.mem[k]);
                }
            }
            return total;
        };
        int64_t best_ld = std::min(std::max((L * M * G) / (M * G + nnz_s), int64_t(1)), L - 1);
        run(best_ld, L - best_ld, best);
        int64_t best_total = best.values["cycles"];
        LayerResult r;
        for (int64_t Ld = 1; Ld < L; ++Ld) {
            if (Ld == best_ld) continue;
            const int64_t lb = lower_bound(Ld);
            if (lb > best_total || (lb == best_total && Ld > best_ld)) continue;
            run(Ld, L - Ld, r);
            const int64_t t = r.values["cycles"];
            if (t < best_total || (t == best_total && Ld < best_ld)) {
                best = r;
                best_total = t;
                best_ld = Ld;
            }
        }
    }
    const int64_t P = L * m;
    const int64_t floor_bits = nnz * hw.weight_bits + idx_once + K * N * hw.act_bits + M * N * hw.out_bits;
    const int64_t F = mem_cycles(floor_bits, hw);
    auto& v = best.values;
    v["G"] = G;
    v["nnz"] = nnz;
    v["nnz_s"] = nnz_s;
    v["bits_weights"] = bw;
    v["bits_index"] = bi;
    v["bits_act"] = ba;
    v["bits_out"] = bo;
    v["lb_ideal"] = std::max(cdiv(nnz * N, P), F);
    v["lb_split"] = std::max(cdiv((M * G + nnz_s) * N, P), F);
    v["memory_floor"] = F;
    return best;
}

}  // namespace besa
