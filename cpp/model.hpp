// Cycle-level model of a ViTCoD-style dense + sparse accelerator (pure C++17, no Python).
//
// The specification is simulator/reference.py; every function here must return exactly the same
// integers.  Units: cycles, bits (callers convert to bytes), tokens.  Masks never reach this file:
// the caller passes the partition statistics (dense column count G, kept entries per row in the
// sparse columns, run-length padding per row) computed from the bit-packed keep mask (1 = kept).
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <vector>

namespace besa {

// Integer view of simulator.hardware.Hardware (see simulator.engine.hw_params).
struct HwParams {
    int64_t lines = 64, macs_per_line = 8;
    bool memory = true;
    int64_t bw_bits_scaled = 1;  // DRAM bits per BW_SCALE cycles
    int64_t weight_bits = 8, act_bits = 8, out_bits = 8;
    int64_t index_format = 0;  // 0 bitmap, 1 csr, 2 rle
    int64_t index_bits = 16, rowptr_bits = 32, rle_bits = 4;
    int64_t pipeline_fill = 0;
    int64_t tile_m = 64, tile_k = 256, tile_n = 64;
    bool split_optimal = true, assign_lpt = true;
    int64_t gather_scaled = 256, gather_scale = 256;
    int64_t nm_n = 2, nm_m = 4, nm_meta_bits = 2;
};

constexpr int64_t kBwScale = int64_t(1) << 16;  // simulator.hardware.BW_SCALE

// Named integer results plus the bound ("compute" / "memory").
struct LayerResult {
    std::map<std::string, int64_t> values;
    std::string bound;
};

inline int64_t cdiv(int64_t a, int64_t b) { return (a + b - 1) / b; }

// DRAM cycles to move `bits` (0 on a compute-only machine).
int64_t mem_cycles(int64_t bits, const HwParams& hw);

// Dense engine on a tm x width block for tn tokens with `lines` lines (K-chunks of tile_k).
int64_t dense_tile_cycles(int64_t tm, int64_t tn, int64_t width, int64_t lines, const HwParams& hw);

// Most beats on a line after assigning rows (costs in row order) to `lines` lines (LPT or round robin).
int64_t max_line_load(const std::vector<int64_t>& costs, int64_t lines, bool lpt);

LayerResult dense_layer(int64_t M, int64_t K, int64_t N, const HwParams& hw);
LayerResult nm_layer(int64_t M, int64_t K, int64_t N, int64_t group_max, const HwParams& hw);
LayerResult cycle_layer(int64_t M, int64_t K, int64_t N, int64_t G, const std::vector<int64_t>& row_sparse,
                        const std::vector<int64_t>& row_pads, int64_t nnz, const HwParams& hw);

}  // namespace besa
