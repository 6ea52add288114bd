// Cycle-level model of a ViTCoD-style dense + sparse accelerator (pure C++17, no Python).
//
// The specification is the cost library simulator/cost/*.py (called by the per-mode specification
// simulator/reference.py); every function here must return exactly the same integers.  Units:
// cycles, bits (callers convert to bytes), tokens, MACs.  Masks never reach this file: the caller
// passes partition statistics (dense column count G, kept entries per row in the sparse columns,
// run-length padding, the gather factor) computed from the bit-packed keep mask.
#pragma once

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <utility>
#include <vector>

namespace besa {

// Integer codes of simulator.hardware.INDEX_FORMATS (the one place their order is defined).
enum IndexFormat : int64_t { kBitmap = 0, kCsr = 1, kRle = 2 };

// Integer view of simulator.hardware.Hardware (built by simulator.engine.hw_params; the binding
// rejects a missing or unknown field, so no member has a default that could be used silently).
struct HwParams {
    int64_t lines, macs_per_line;
    bool memory;
    int64_t bw_bits_scaled;  // DRAM bits per kBwScale cycles
    int64_t weight_bits, act_bits, out_bits, acc_bits, kv_bits;
    int64_t index_format;  // IndexFormat
    int64_t index_bits, rowptr_bits, rle_bits;
    int64_t pipeline_fill;
    int64_t tile_m, tile_k, tile_n;  // 0 = derived from the buffers
    int64_t weight_buffer_bytes, act_buffer_bytes, out_buffer_bytes, index_buffer_bytes;
    bool split_optimal, assign_lpt;
    int64_t gather_scale;
    int64_t nm_n, nm_m, nm_meta_bits;
    int64_t nm_eff_scaled, nm_eff_scale;  // n:m kernel efficiency = nm_eff_scaled / nm_eff_scale (<= 1)
    int64_t group_size, group_meta_bits;  // quantization groups (0 = none) and their scale + zero bits
    int64_t dequant_per_cycle;            // dequantised weights per cycle (0 = keeps pace)
};

constexpr int64_t kBwScale = int64_t(1) << 16;  // simulator.hardware.BW_SCALE

// Named integer results plus the bound ("compute" / "memory").
struct LayerResult {
    std::map<std::string, int64_t> values;
    std::string bound;
};

inline int64_t cdiv(int64_t a, int64_t b) { return (a + b - 1) / b; }

using Tiling = std::pair<int64_t, int64_t>;  // (tm, tn)

int64_t mem_cycles(int64_t bits, const HwParams& hw);
std::vector<Tiling> tilings(int64_t M, int64_t K, int64_t N, const HwParams& hw, bool sparse, bool own);
int64_t max_line_load(const std::vector<int64_t>& costs, int64_t lines, bool lpt);

// One dense-column set: one point per tiling (in `tiles` order), its fastest lane split, with the
// SRAM bits of its loop nest.  `tiles` from tilings(..., own=false).  The caller picks by its objective.
std::vector<LayerResult> evaluate_partition(int64_t M, int64_t K, int64_t N, int64_t G,
                                            const std::vector<int64_t>& row_sparse, int64_t pads, int64_t gather,
                                            const HwParams& hw, const std::vector<Tiling>& tiles);
std::vector<LayerResult> dense_layer(int64_t M, int64_t K, int64_t N, const HwParams& hw);
std::vector<LayerResult> nm_layer(int64_t M, int64_t K, int64_t N, int64_t group_max, const HwParams& hw);
LayerResult attention_block(int64_t hidden, int64_t kv_dim, int64_t N, int64_t context, int64_t batch,
                            const HwParams& hw);
int64_t lb_ideal(int64_t nnz, int64_t M, int64_t K, int64_t N, const HwParams& hw);

}  // namespace besa
