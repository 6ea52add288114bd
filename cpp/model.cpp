// Implementation of model.hpp.  Mirrors the cost library simulator/cost/*.py function by function
// (each function names its Python twin); the tests check the two agree exactly.  The lane-split scan
// of a tiling skips only options whose lower bound is not below the tiling's best so far, so it returns
// the same first fastest split as the Python; the caller (simulator/fast.py) picks among the tilings'
// points by the objective.
#include "model.hpp"

#include <algorithm>
#include <functional>
#include <numeric>
#include <queue>
#include <set>
#include <stdexcept>

namespace besa {

// simulator.cost.tiles.mem_cycles
int64_t mem_cycles(int64_t bits, const HwParams& hw) {
    return hw.memory ? cdiv(bits * kBwScale, hw.bw_bits_scaled) : 0;
}

namespace {

// simulator.cost.tiles.half_buffer_bits
int64_t half_bits(int64_t bytes) { return bytes * 4; }

// simulator.cost.tiles.classes
std::vector<std::pair<int64_t, int64_t>> classes(int64_t total, int64_t tile) {
    std::vector<std::pair<int64_t, int64_t>> out;
    if (total / tile) out.emplace_back(tile, total / tile);
    if (total % tile) out.emplace_back(total % tile, 1);
    return out;
}

struct Bits {
    int64_t w = 0, i = 0, a = 0, o = 0;
    int64_t sum() const { return w + i + a + o; }
};

// simulator.cost.tiles.traffic
Bits traffic(int64_t M, int64_t K, int64_t N, int64_t tm, int64_t tn, int64_t W, int64_t I, const HwParams& hw) {
    const int64_t R = cdiv(M, tm), T = cdiv(N, tn);
    const int64_t wb = half_bits(hw.weight_buffer_bytes), ab = half_bits(hw.act_buffer_bytes),
                  ib = half_bits(hw.index_buffer_bytes);
    const int64_t A = K * N * hw.act_bits, O = M * N * hw.out_bits;
    const bool w_tile = cdiv(W * tm, M) <= wb, i_tile = cdiv(I * tm, M) <= ib;
    Bits row{W * (w_tile ? 1 : T), I * (i_tile ? 1 : T), A * (A <= ab ? 1 : R), O};
    Bits tok{W * (W <= wb ? 1 : T), I * (I <= ib ? 1 : T), A * (K * tn * hw.act_bits <= ab ? 1 : R), O};
    return tok.sum() < row.sum() ? tok : row;  // min() keeps the first on ties: row tiles outer
}

// simulator.cost.tiles.index_bits
int64_t index_bits(int64_t rows, int64_t ks, int64_t nnz, int64_t pads, const HwParams& hw) {
    if (ks == 0 || nnz == 0) return 0;
    if (hw.index_format == kBitmap) return rows * ks;
    if (hw.index_format == kCsr) return nnz * hw.index_bits + rows * hw.rowptr_bits;
    return (nnz + pads) * hw.rle_bits;
}

// Rows' costs as (cost, rows with that cost), cost descending, zero costs dropped.
using CostGroups = std::vector<std::pair<int64_t, int64_t>>;

CostGroups cost_groups(const std::vector<int64_t>& costs, int64_t cmax) {
    CostGroups out;
    if (cmax <= 4 * static_cast<int64_t>(costs.size()) + 1024) {  // counting sort
        std::vector<int64_t> hist(static_cast<size_t>(cmax + 1), 0);
        for (int64_t c : costs) ++hist[static_cast<size_t>(c)];
        for (int64_t c = cmax; c > 0; --c)
            if (hist[static_cast<size_t>(c)]) out.emplace_back(c, hist[static_cast<size_t>(c)]);
        return out;
    }
    std::vector<int64_t> s(costs);
    std::sort(s.begin(), s.end(), std::greater<int64_t>());
    for (int64_t c : s) {
        if (c == 0) break;
        if (!out.empty() && out.back().first == c)
            ++out.back().second;
        else
            out.emplace_back(c, 1);
    }
    return out;
}

// LPT (simulator.cost.partition.max_line_load): rows by cost descending, each to a least-loaded line; returns the
// most load on a line.  Which least-loaded line takes a row never changes the MULTISET of line
// loads, so the loads are kept as load -> lines with it and rows of equal cost go in bulk: k rows of
// cost c fill the lowest loads, a whole level at a time.  Same answer as the heap, far fewer steps.
int64_t lpt_groups(const CostGroups& groups, int64_t lines) {
    if (groups.empty() || lines <= 0) return 0;
    std::map<int64_t, int64_t> loads{{0, lines}};
    for (auto [c, k] : groups) {
        while (k > 0) {
            auto it = loads.begin();
            const int64_t v = it->first, take = std::min(k, it->second);
            if (take == it->second)
                loads.erase(it);
            else
                it->second -= take;
            loads[v + c] += take;
            k -= take;
        }
    }
    return loads.rbegin()->first;
}

// simulator.cost.partition.max_line_load, assign = round_robin
int64_t round_robin(const std::vector<int64_t>& costs, int64_t lines) {
    if (costs.empty() || lines <= 0) return 0;
    std::vector<int64_t> load(static_cast<size_t>(lines), 0);
    for (size_t j = 0; j < costs.size(); ++j) load[j % static_cast<size_t>(lines)] += costs[j];
    return *std::max_element(load.begin(), load.end());
}

struct Option {
    int64_t Ld, Ls;
    bool shared;
};

// simulator.cost.partition.split_options
std::vector<Option> split_options(int64_t M, int64_t G, int64_t S, const HwParams& hw) {
    const int64_t L = hw.lines;
    if (G == 0 && S == 0) return {{0, 0, false}};
    if (S == 0) return {{L, 0, false}};
    if (G == 0) return {{0, L, false}};
    if (L == 1) return {{1, 1, true}};
    if (!hw.split_optimal) {
        const int64_t Ld = std::min(std::max((L * M * G) / (M * G + S), int64_t(1)), L - 1);
        return {{Ld, L - Ld, false}};
    }
    std::vector<Option> out;
    for (int64_t Ld = 1; Ld < L; ++Ld) out.push_back({Ld, L - Ld, false});
    out.push_back({L, L, true});
    return out;
}

// simulator.cost.partition.dense_beats: the better of rows-on-lines and rows-on-MACs.
int64_t dense_beats(int64_t tm, int64_t tn, int64_t width, int64_t lines, int64_t m) {
    return std::min(cdiv(tm, lines) * tn * cdiv(width, m), cdiv(tm, lines * m) * tn * width);
}

struct Compute {
    int64_t total = 0, dense = 0, sparse = 0;
};

// simulator.cost.partition.engine_compute
Compute engine_compute(int64_t M, int64_t N, int64_t G, int64_t load, int64_t gs, int64_t tm, int64_t tn,
                       int64_t Ld, bool has_sparse, bool shared, const HwParams& hw) {
    const int64_t m = hw.macs_per_line, lam = hw.pipeline_fill, R = cdiv(M, tm);
    const auto rows = classes(M, tm);
    Compute c;
    for (auto [tn_j, cnt] : classes(N, tn)) {
        int64_t cd = 0;
        if (G)
            for (auto [t, k] : rows) cd += k * (dense_beats(t, tn_j, G, Ld, m) + lam);
        const int64_t cs = has_sparse ? cdiv(load * tn_j * gs, hw.gather_scale) + R * lam : 0;
        c.dense += cnt * cd;
        c.sparse += cnt * cs;
        c.total += cnt * (shared ? cd + cs : std::max(cd, cs));
    }
    return c;
}

void store_bits(LayerResult& r, const Bits& b) {
    r.values["bits_weights"] = b.w;
    r.values["bits_index"] = b.i;
    r.values["bits_act"] = b.a;
    r.values["bits_out"] = b.o;
}

// simulator.cost.tiles.group_bits
int64_t group_bits(int64_t M, int64_t K, const HwParams& hw) {
    return hw.group_size ? M * cdiv(K, hw.group_size) * hw.group_meta_bits : 0;
}

// simulator.cost.tiles.dequant_cycles
int64_t dequant_cycles(int64_t stored, int64_t T, const HwParams& hw) {
    return hw.group_size && hw.dequant_per_cycle ? cdiv(stored * T, hw.dequant_per_cycle) : 0;
}

// simulator.cost.tiles.sram_bits
void store_sram(LayerResult& r, int64_t N, int64_t G, int64_t S, int64_t pads, int64_t beats, int64_t tm, int64_t tn,
                int64_t M, int64_t W, int64_t I, const Bits& b, const HwParams& hw) {
    const int64_t T = cdiv(N, tn), R = cdiv(M, tm);
    r.values["sram_weights"] = b.w + W * T;
    r.values["sram_index"] = b.i + I * T;
    r.values["sram_act"] = b.a + hw.act_bits * N * (G * R + S + pads);
    r.values["sram_out"] = 2 * hw.acc_bits * N * beats + b.o;
}

void store_times(LayerResult& r, int64_t C, int64_t Mem) {
    r.values["cycles"] = std::max(C, Mem);
    r.values["compute_cycles"] = C;
    r.values["memory_cycles"] = Mem;
    r.values["stall_cycles"] = std::max<int64_t>(0, Mem - C);
    r.bound = Mem > C ? "memory" : "compute";
}

}  // namespace

// simulator.cost.tiles.tilings
std::vector<Tiling> tilings(int64_t M, int64_t K, int64_t N, const HwParams& hw, bool sparse, bool own) {
    const int64_t L = hw.lines, m = hw.macs_per_line;
    const int64_t tk = (own || !hw.tile_k) ? m : hw.tile_k;
    const int64_t wb = half_bits(hw.weight_buffer_bytes), ab = half_bits(hw.act_buffer_bytes),
                  ob = half_bits(hw.out_buffer_bytes), ib = half_bits(hw.index_buffer_bytes);
    std::set<int64_t> tms;
    if (hw.tile_m && !own) {
        tms.insert(std::min(hw.tile_m, M));
    } else {
        for (int64_t p = 1; p < 2 * M; p *= 2) {
            tms.insert(std::min(M, p));
            tms.insert(std::min(M, L * p));
        }
    }
    std::vector<Tiling> out;
    for (int64_t tm : tms) {
        if (tm * tk * hw.weight_bits > wb || (sparse && tm * tk > ib)) continue;
        std::set<int64_t> tns;
        if (hw.tile_n && !own) {
            tns.insert(std::min(hw.tile_n, N));
        } else {
            const int64_t tmax = std::min({N, ob / (tm * hw.acc_bits), ab / (tk * hw.act_bits)});
            tns.insert(tmax);
            tns.insert(std::min(tmax, ab / (K * hw.act_bits)));
            tns.erase(0);
        }
        for (int64_t tn : tns)
            if (tn >= 1 && tm * tn * hw.acc_bits <= ob && tk * tn * hw.act_bits <= ab) out.emplace_back(tm, tn);
    }
    if (out.empty()) out.emplace_back(1, 1);
    return out;
}

// simulator.cost.partition.max_line_load
int64_t max_line_load(const std::vector<int64_t>& costs, int64_t lines, bool lpt) {
    if (!lpt) return round_robin(costs, lines);
    for (int64_t c : costs)
        if (c < 0) throw std::invalid_argument("max_line_load: costs must be >= 0");
    const int64_t cmax = costs.empty() ? 0 : *std::max_element(costs.begin(), costs.end());
    return lpt_groups(cost_groups(costs, cmax), lines);
}

// simulator.cost.partition.evaluate_partition: one point per tiling, its fastest split (the first of
// the fewest cycles; an option whose lower bound is not below the tiling's best so far is skipped)
std::vector<LayerResult> evaluate_partition(int64_t M, int64_t K, int64_t N, int64_t G,
                                            const std::vector<int64_t>& row_sparse, int64_t pads, int64_t gs,
                                            const HwParams& hw, const std::vector<Tiling>& tiles) {
    const int64_t m = hw.macs_per_line;
    const int64_t S = std::accumulate(row_sparse.begin(), row_sparse.end(), int64_t(0));
    std::vector<int64_t> costs(row_sparse.size());
    int64_t csum = 0, cmax = 0;
    for (size_t i = 0; i < row_sparse.size(); ++i) {
        costs[i] = cdiv(row_sparse[i], m);
        csum += costs[i];
        cmax = std::max(cmax, costs[i]);
    }
    CostGroups groups;
    if (hw.assign_lpt) groups = cost_groups(costs, cmax);
    std::vector<int64_t> loads(static_cast<size_t>(hw.lines + 1), -1);  // most beats on a line, per Ls
    auto load_of = [&](int64_t Ls) {
        if (Ls == 0) return int64_t(0);
        int64_t& v = loads[static_cast<size_t>(Ls)];
        if (v < 0) v = hw.assign_lpt ? lpt_groups(groups, Ls) : round_robin(costs, Ls);
        return v;
    };
    const int64_t beats = M * cdiv(G, m) + csum;
    const int64_t stored = M * G + S + pads;
    const int64_t W = stored * hw.weight_bits + group_bits(M, K, hw);
    const int64_t I = index_bits(M, K - G, S, pads, hw);
    const int64_t A = K * N * hw.act_bits, O = M * N * hw.out_bits;
    const int64_t F = mem_cycles(W + I + A + O, hw);
    const auto opts = split_options(M, G, S, hw);
    std::vector<LayerResult> out;
    for (const auto& [tm, tn] : tiles) {
        const Bits b = traffic(M, K, N, tm, tn, W, I, hw);
        const int64_t Mem = mem_cycles(b.sum(), hw);
        const int64_t DQ = dequant_cycles(stored, cdiv(N, tn), hw);
        bool found = false;
        int64_t best_cyc = 0;
        LayerResult best;
        for (const Option& o : opts) {
            if (found) {
                const int64_t lb_load = o.Ls ? std::max(cdiv(csum, o.Ls), cmax) : 0;
                const Compute lb = engine_compute(M, N, G, lb_load, gs, tm, tn, o.Ld, S > 0, o.shared, hw);
                if (std::max({lb.total, DQ, Mem}) >= best_cyc) continue;
            }
            const Compute c = engine_compute(M, N, G, load_of(o.Ls), gs, tm, tn, o.Ld, S > 0, o.shared, hw);
            const int64_t C = std::max(c.total, DQ);
            const int64_t cyc = std::max(C, Mem);
            if (!found || cyc < best_cyc) {
                best_cyc = cyc;
                found = true;
                best = LayerResult();
                store_times(best, C, Mem);
                best.values["dense_engine_cycles"] = c.dense;
                best.values["sparse_engine_cycles"] = c.sparse;
                best.values["lines_dense"] = o.Ld;
                best.values["lines_sparse"] = o.Ls;
                best.values["shared"] = o.shared ? 1 : 0;
            }
        }
        const int64_t T = cdiv(N, tn);
        auto& v = best.values;
        v["tile_m"] = tm;
        v["tile_n"] = tn;
        v["token_tiles"] = T;
        store_bits(best, b);
        store_sram(best, N, G, S, pads, beats, tm, tn, M, W, I, b, hw);
        v["G"] = G;
        v["nnz_s"] = S;
        v["gather"] = gs;
        v["lb_split"] = std::max(cdiv((M * G + S) * N, hw.lines * m), F);
        v["memory_floor"] = F;
        v["macs"] = (M * G + S) * N;
        v["index_entries"] = K - G ? (S + pads) * T : 0;
        v["dequant_weights"] = hw.group_size ? stored * T : 0;
        out.push_back(std::move(best));
    }
    return out;
}

// simulator.cost.partition.lb_ideal
int64_t lb_ideal(int64_t nnz, int64_t M, int64_t K, int64_t N, const HwParams& hw) {
    return std::max(cdiv(nnz * N, hw.lines * hw.macs_per_line),
                    mem_cycles(nnz * hw.weight_bits + K * N * hw.act_bits + M * N * hw.out_bits, hw));
}

// simulator.cost.dense.dense_layer (its points; the caller picks and adds lb_ideal)
std::vector<LayerResult> dense_layer(int64_t M, int64_t K, int64_t N, const HwParams& hw) {
    return evaluate_partition(M, K, N, K, std::vector<int64_t>(static_cast<size_t>(M), 0), 0, hw.gather_scale, hw,
                              tilings(M, K, N, hw, false, true));
}

// simulator.cost.dense.nm_layer (its points; the caller picks)
std::vector<LayerResult> nm_layer(int64_t M, int64_t K, int64_t N, int64_t group_max, const HwParams& hw) {
    const int64_t n_use = std::max<int64_t>({hw.nm_n, group_max, 1});
    if (n_use >= hw.nm_m) {
        auto pts = dense_layer(M, K, N, hw);
        for (auto& p : pts) p.values["nm_n"] = hw.nm_m;
        return pts;
    }
    const int64_t groups = cdiv(K, hw.nm_m), stored = M * groups * n_use;
    const int64_t W = stored * hw.weight_bits + group_bits(M, K, hw), I = stored * hw.nm_meta_bits;
    const int64_t beats = M * cdiv(cdiv(K, hw.macs_per_line) * n_use, hw.nm_m);
    std::vector<LayerResult> out;
    for (const auto& [tm, tn] : tilings(M, K, N, hw, false, true)) {
        int64_t C = 0;
        for (auto [tn_j, cnt] : classes(N, tn))
            for (auto [t, c] : classes(M, tm))
                C += cnt * c *
                     (cdiv(dense_beats(t, tn_j, K, hw.lines, hw.macs_per_line) * n_use, hw.nm_m) + hw.pipeline_fill);
        C = std::max(C, dequant_cycles(stored, cdiv(N, tn), hw));
        const Bits b = traffic(M, K, N, tm, tn, W, I, hw);
        int64_t Mem = mem_cycles(b.sum(), hw);
        if (hw.nm_eff_scaled < hw.nm_eff_scale) {  // real n:m kernels: the ideal engine's cycles stretched
            C = cdiv(C * hw.nm_eff_scale, hw.nm_eff_scaled);
            Mem = cdiv(Mem * hw.nm_eff_scale, hw.nm_eff_scaled);
        }
        LayerResult r;
        store_times(r, C, Mem);
        const int64_t T = cdiv(N, tn);
        auto& v = r.values;
        v["dense_engine_cycles"] = C;
        v["sparse_engine_cycles"] = 0;
        v["tile_m"] = tm;
        v["tile_n"] = tn;
        v["token_tiles"] = T;
        store_bits(r, b);
        store_sram(r, N, K, 0, 0, beats, tm, tn, M, W, I, b, hw);
        v["nm_n"] = n_use;
        v["macs"] = stored * N;
        v["index_entries"] = stored * T;
        v["dequant_weights"] = hw.group_size ? stored * T : 0;
        out.push_back(std::move(r));
    }
    return out;
}

// simulator.cost.dense.attention_block
LayerResult attention_block(int64_t hidden, int64_t kv_dim, int64_t N, int64_t context, int64_t batch,
                            const HwParams& hw) {
    const int64_t keys = N * context + N * (N + 1) / 2;
    const int64_t macs = 2 * hidden * keys * batch;
    const int64_t kv = 2 * kv_dim * (context + N) * hw.kv_bits * batch;
    const int64_t act = hidden * N * batch * hw.act_bits, out = hidden * N * batch * hw.out_bits;
    LayerResult r;
    store_times(r, cdiv(macs, hw.lines * hw.macs_per_line) + hw.pipeline_fill, mem_cycles(kv + act + out, hw));
    r.values["bits_kv"] = kv;
    r.values["bits_act"] = act;
    r.values["bits_out"] = out;
    r.values["bits_weights"] = 0;
    r.values["bits_index"] = 0;
    r.values["macs"] = macs;
    r.values["index_entries"] = 0;
    return r;
}

}  // namespace besa
