// PCG64 (XSL-RR 128/64, numpy's numpy.random.PCG64) output stream, for the synthetic mask
// generators: the same 64-bit outputs numpy's generator would return, several at a time.
#pragma once

#include <cstdint>

namespace besa {

struct Pcg64State {
    uint64_t state_hi, state_lo, inc_hi, inc_lo;
};

// Writes the next `count` outputs of the generator in `st` (advancing it) to `out` as little-endian
// 64-bit words.  Output t = rotr64(hi ^ lo, hi >> 58) of state S_t = S_{t-1} * M + inc (mod 2^128).
void pcg64_fill(Pcg64State& st, uint8_t* out, int64_t count);

}  // namespace besa
