// Statistics of bit-packed keep masks (pure C++17, no Python): the hot loops of the simulator.
//
// A mask is `rows` rows of `nb` bytes (C order), keep bits packed along the in-features axis, little
// bit order (column c -> byte c / 8, bit c % 8), pad bits 0, 1 = kept (besa_common/masks.py).  A
// column selection `sel` is packed the same way (nb bytes, bit = 1: the column is selected; pad bits
// 0).  The specification of every function is simulator/reference.py (on unpacked bool masks); the
// tests check each against it.
#pragma once

#include <cstdint>
#include <vector>

namespace besa {

struct PackedMask {
    const uint8_t* data;
    int64_t rows, nb;  // nb = bytes per row = ceil(cols / 8)
    const uint8_t* row(int64_t r) const { return data + r * nb; }
};

// Kept entries per column (col_out[nb * 8], pad columns included: they count 0) and per row
// (row_out[rows]) in ONE pass over the mask.
void count_cols_rows(const PackedMask& p, int64_t* col_out, int64_t* row_out);

// Kept entries per row over the selected columns.  With `row_total` (kept per row over all columns)
// given, whichever side of the selection touches fewer bytes is counted (the other is the total
// minus it): a partition with a few dense columns costs a few byte columns, not a pass.
void row_counts_sel(const PackedMask& p, const uint8_t* sel, const int64_t* row_total, int64_t* out);

// Run-length padding entries per row over the selected columns (reference.rle_pads: a zero run of
// more than 2^bits - 1 before a kept value needs explicit zero entries, trailing zeros none).
void rle_pads(const PackedMask& p, const uint8_t* sel, int64_t bits, int64_t* out);

// Most kept entries in any group of m consecutive columns (the smallest covering n of n:m).
int64_t nm_group_max(const PackedMask& p, int64_t cols, int64_t m);

// Gather factor x `scale` from bank conflicts of the selected columns (reference.bank_gather_scaled:
// rows i*rows/S of a sample of S = min(rows, 64), beats of m consecutive kept values, bank = column
// mod banks; cost of a beat = most requests to one bank, ideal = ceil(k / banks)).
int64_t bank_gather(const PackedMask& p, const uint8_t* sel, int64_t cols, int64_t m, int64_t banks, int64_t scale);

}  // namespace besa
