// Implementation of stats.hpp.  Rows are read as little-endian 64-bit words (bit i of word w =
// column 64w + i); a row's last partial word is zero-filled, which is harmless because pad bits are
// 0.  The functions that touch every byte are compiled twice on x86-64 GCC (BESA_HOT), for
// x86-64-v3 (AVX2, POPCNT, BMI) and the baseline, and the CPU's one is picked at load time.
#include "stats.hpp"

#include <algorithm>
#include <array>
#include <cstring>

// Vec4 below is only used inside this file (inlined), so the ABI note about AVX vector arguments
// does not apply.
#pragma GCC diagnostic ignored "-Wpsabi"

#if defined(__GNUC__) && !defined(__clang__) && defined(__x86_64__) && defined(__linux__)
#define BESA_HOT __attribute__((target_clones("arch=x86-64-v3", "default")))
#else
#define BESA_HOT
#endif

namespace besa {

namespace {

constexpr uint64_t kLane1 = 0x1111111111111111ULL;  // bit 0 of every 4-bit lane
constexpr uint64_t kLane4 = 0x0F0F0F0F0F0F0F0FULL;  // low nibble of every byte

int64_t words_of(int64_t nb) { return (nb + 7) / 8; }

// Row r as W zero-padded words.
void load_row(const PackedMask& p, int64_t r, uint64_t* w) {
    w[words_of(p.nb) - 1] = 0;
    std::memcpy(w, p.row(r), static_cast<size_t>(p.nb));
}

// Four words at a time (GCC vector extension: AVX2 in the x86-64-v3 clone, SSE2 pairs otherwise).
typedef uint64_t Vec4 __attribute__((vector_size(32)));

inline Vec4 load4(const uint64_t* p) {
    Vec4 v;
    std::memcpy(&v, p, sizeof v);
    return v;
}

inline void add4(uint64_t* p, Vec4 v) {
    Vec4 t = load4(p) + v;
    std::memcpy(p, &t, sizeof t);
}

// Sum of the bytes of the four words of b (each byte <= 240).
inline int64_t sum_bytes(Vec4 b) {
    const uint64_t k16 = 0x00FF00FF00FF00FFULL;
    const Vec4 m16 = {k16, k16, k16, k16};
    const Vec4 pairs = (b & m16) + ((b >> 8) & m16);  // 16-bit lanes <= 480
    int64_t s = 0;
    for (int i = 0; i < 4; ++i) s += static_cast<int64_t>((pairs[i] * 0x0001000100010001ULL) >> 48);
    return s;
}

// Vertical counting of a block of 15 rows (rows[i]: Wp words each, Wp a multiple of 4): per word,
// four sums of 4-bit lanes kept in registers (lane j of sum k counts column 64w + 4j + k, at most
// 15), then split into the 8-bit lanes of a8 (a8[q*Wp + w], byte lane i counts column 64w + 8i + q).
// The same four extracts summed per row give its kept count (rowcnt[i] += ...): nibble lanes take
// 3 words (<= 12), byte lanes 10 of those folds (<= 240).
inline void add_block(const uint64_t* const* rows, uint64_t* a8, int64_t Wp, int64_t* rowcnt) {
    const Vec4 m1 = {kLane1, kLane1, kLane1, kLane1}, m4 = {kLane4, kLane4, kLane4, kLane4}, zero = {0, 0, 0, 0};
    Vec4 rs[15], rb[15];
    for (int i = 0; i < 15; ++i) rs[i] = rb[i] = zero;
    int chunks = 0, folds = 0;
    for (int64_t w = 0; w < Wp; w += 4) {
        Vec4 s0 = zero, s1 = zero, s2 = zero, s3 = zero;
        for (int i = 0; i < 15; ++i) {
            const Vec4 v = load4(rows[i] + w);
            const Vec4 e0 = v & m1, e1 = (v >> 1) & m1, e2 = (v >> 2) & m1, e3 = (v >> 3) & m1;
            s0 += e0;
            s1 += e1;
            s2 += e2;
            s3 += e3;
            rs[i] += (e0 + e1) + (e2 + e3);
        }
        add4(a8 + 0 * Wp + w, s0 & m4);
        add4(a8 + 4 * Wp + w, (s0 >> 4) & m4);
        add4(a8 + 1 * Wp + w, s1 & m4);
        add4(a8 + 5 * Wp + w, (s1 >> 4) & m4);
        add4(a8 + 2 * Wp + w, s2 & m4);
        add4(a8 + 6 * Wp + w, (s2 >> 4) & m4);
        add4(a8 + 3 * Wp + w, s3 & m4);
        add4(a8 + 7 * Wp + w, (s3 >> 4) & m4);
        if (++chunks == 3) {
            chunks = 0;
            for (int i = 0; i < 15; ++i) {
                rb[i] += (rs[i] & m4) + ((rs[i] >> 4) & m4);
                rs[i] = zero;
            }
            if (++folds == 10) {
                folds = 0;
                for (int i = 0; i < 15; ++i) {
                    rowcnt[i] += sum_bytes(rb[i]);
                    rb[i] = zero;
                }
            }
        }
    }
    for (int i = 0; i < 15; ++i) rowcnt[i] += sum_bytes(rb[i] + (rs[i] & m4) + ((rs[i] >> 4) & m4));
}

void flush_bytes(uint64_t* a8, int64_t W, int64_t* cols) {
    for (int64_t q = 0; q < 8; ++q)
        for (int64_t w = 0; w < W; ++w) {
            uint64_t v = a8[q * W + w];
            a8[q * W + w] = 0;
            for (int64_t i = 0; v; ++i, v >>= 8) cols[64 * w + 8 * i + q] += static_cast<int64_t>(v & 0xFF);
        }
}

int64_t sel_word(const uint8_t* sel, int64_t nb, int64_t w) {
    uint64_t v = 0;
    std::memcpy(&v, sel + 8 * w, static_cast<size_t>(std::min<int64_t>(8, nb - 8 * w)));
    return static_cast<int64_t>(v);
}

}  // namespace

BESA_HOT void count_cols_rows(const PackedMask& p, int64_t* col_out, int64_t* row_out) {
    const int64_t W = words_of(p.nb), Wp = (W + 3) / 4 * 4;
    std::vector<uint64_t> xb(static_cast<size_t>(16 * Wp), 0), a8(static_cast<size_t>(8 * Wp), 0);
    std::vector<int64_t> cols(static_cast<size_t>(64 * Wp), 0);
    const uint64_t* rows[15];
    int64_t cnt[15];
    int64_t held = 0;  // rows added to a8 since its last flush (a byte lane holds 255)
    for (int64_t r0 = 0; r0 < p.rows; r0 += 15) {
        const int64_t R = std::min<int64_t>(15, p.rows - r0);
        // the rows are copied (one sequential stream, zero-padded to Wp words) rather than read in
        // place: 15 interleaved row streams from DRAM were measured slower
        for (int64_t i = 0; i < 15; ++i) {
            cnt[i] = 0;
            rows[i] = xb.data() + (i < R ? i : 15) * Wp;  // row 15 of xb stays zero: a short last block
            if (i < R) load_row(p, r0 + i, xb.data() + i * Wp);
        }
        add_block(rows, a8.data(), Wp, cnt);
        for (int64_t i = 0; i < R; ++i) row_out[r0 + i] = cnt[i];
        held += 15;
        if (held + 15 > 255) {
            flush_bytes(a8.data(), Wp, cols.data());
            held = 0;
        }
    }
    flush_bytes(a8.data(), Wp, cols.data());
    std::copy(cols.begin(), cols.begin() + 8 * p.nb, col_out);
}

BESA_HOT void row_counts_sel(const PackedMask& p, const uint8_t* sel, const int64_t* row_total, int64_t* out) {
    const int64_t W = words_of(p.nb);
    std::vector<int64_t> on, off;  // words with a selected / an unselected bit
    std::vector<uint64_t> mask_on, mask_off;
    for (int64_t w = 0; w < W; ++w) {
        const uint64_t s = static_cast<uint64_t>(sel_word(sel, p.nb, w));
        const int64_t width = std::min<int64_t>(64, 8 * (p.nb - 8 * w));
        const uint64_t valid = width == 64 ? ~uint64_t(0) : ((uint64_t(1) << width) - 1);
        if (s) on.push_back(w), mask_on.push_back(s);
        if (~s & valid) off.push_back(w), mask_off.push_back(~s & valid);
    }
    const bool complement = row_total != nullptr && off.size() < on.size();
    const auto& idx = complement ? off : on;
    const auto& msk = complement ? mask_off : mask_on;
    std::vector<uint64_t> x(static_cast<size_t>(W));
    const bool whole = static_cast<int64_t>(idx.size()) == W;
    for (int64_t r = 0; r < p.rows; ++r) {
        int64_t s = 0;
        if (whole) {
            load_row(p, r, x.data());
            for (int64_t w = 0; w < W; ++w) s += __builtin_popcountll(x[static_cast<size_t>(w)] & msk[static_cast<size_t>(w)]);
        } else {
            const uint8_t* row = p.row(r);
            for (size_t i = 0; i < idx.size(); ++i) {
                uint64_t v = 0;
                std::memcpy(&v, row + 8 * idx[i], static_cast<size_t>(std::min<int64_t>(8, p.nb - 8 * idx[i])));
                s += __builtin_popcountll(v & msk[i]);
            }
        }
        out[r] = complement ? row_total[r] - s : s;
    }
}

namespace {

inline uint64_t below(int i) { return i >= 64 ? ~uint64_t(0) : (uint64_t(1) << i) - 1; }  // bits < i

// One word of a row: c = kept AND selected bits, s = selected bits (c != 0).  Adds the padding of the
// zero run before c's first bit (gap: selected zeros carried in) and of the runs between its bits;
// returns the selected zeros after its last bit.
inline int64_t rle_word(uint64_t c, uint64_t s, int64_t bits, int64_t gap, int64_t& pads) {
    const int lo = __builtin_ctzll(c), hi = 63 - __builtin_clzll(c);
    pads += (gap + __builtin_popcountll(s & below(lo))) >> bits;
    // A run inside a word is at most 62 zeros.  Selected zeros are a subset of c's zeros, so without
    // a run of 2^bits zeros in c strictly between lo and hi no selected run pads either; such a run
    // holds a whole aligned group of 2^(bits-1) zeros, which a SWAR zero-group test finds cheaply.
    constexpr uint64_t kLow[6] = {0, 0, 0x5555555555555555ULL, kLane1, 0x0101010101010101ULL, 0x0001000100010001ULL};
    constexpr uint64_t kHigh[6] = {0, 0, 0xAAAAAAAAAAAAAAAAULL, 0x8888888888888888ULL, 0x8080808080808080ULL, 0x8000800080008000ULL};
    if (bits < 6 && hi - lo - 1 >= (int64_t(1) << bits)) {
        const uint64_t v = c | below(lo + 1) | ~below(hi);  // c's zeros strictly inside (lo, hi)
        if (bits >= 2 && !((v - kLow[bits]) & ~v & kHigh[bits])) return __builtin_popcountll(s & ~below(hi + 1));
        uint64_t y = ~c & below(hi) & ~below(lo);
        for (int i = 0; i < 6; ++i) y &= i < bits ? y >> (1 << i) : ~uint64_t(0);
        if (y) {
            int prev = lo;
            for (uint64_t rest = c & (c - 1); rest; rest &= rest - 1) {
                const int i = __builtin_ctzll(rest);
                pads += __builtin_popcountll(s & below(i) & ~below(prev + 1)) >> bits;
                prev = i;
            }
        }
    }
    return __builtin_popcountll(s & ~below(hi + 1));
}

}  // namespace

BESA_HOT void rle_pads(const PackedMask& p, const uint8_t* sel, int64_t bits, int64_t* out) {
    bits = std::min<int64_t>(bits, 40);  // gaps are < 2^20 columns
    const int64_t W = words_of(p.nb);
    std::vector<uint64_t> x(static_cast<size_t>(W)), s(static_cast<size_t>(W));
    for (int64_t w = 0; w < W; ++w) s[static_cast<size_t>(w)] = static_cast<uint64_t>(sel_word(sel, p.nb, w));
    for (int64_t r = 0; r < p.rows; ++r) {
        load_row(p, r, x.data());
        int64_t gap = 0, pads = 0;
        for (int64_t w = 0; w < W; ++w) {
            const uint64_t sw = s[static_cast<size_t>(w)], c = x[static_cast<size_t>(w)] & sw;
            if (c)
                gap = rle_word(c, sw, bits, gap, pads);
            else
                gap += __builtin_popcountll(sw);
        }
        out[r] = pads;
    }
}

BESA_HOT int64_t nm_group_max(const PackedMask& p, int64_t cols, int64_t m) {
    const int64_t W = words_of(p.nb);
    std::vector<uint64_t> x(static_cast<size_t>(W));
    int64_t best = 0;
    if (m == 1 || m == 2 || m == 4 || m == 8) {
        // lane counts by SWAR steps; groups never straddle words (m divides 64) and pad bits are 0
        for (int64_t r = 0; r < p.rows; ++r) {
            load_row(p, r, x.data());
            uint64_t any = 0, a2 = 0, a3 = 0, a4 = 0;
            for (int64_t w = 0; w < W; ++w) {
                const uint64_t v = x[static_cast<size_t>(w)];
                any |= v;
                if (m == 1) continue;
                const uint64_t c2 = v - ((v >> 1) & 0x5555555555555555ULL);  // 2-bit lanes: 0..2
                if (m == 2) {
                    a2 |= c2 & 0xAAAAAAAAAAAAAAAAULL;
                    continue;
                }
                const uint64_t c4 = (c2 & 0x3333333333333333ULL) + ((c2 >> 2) & 0x3333333333333333ULL);  // 0..4
                if (m == 4) {
                    a4 |= c4 & 0x4444444444444444ULL;
                    a3 |= c4 & (c4 >> 1) & kLane1;
                    a2 |= c4 & 0x2222222222222222ULL;
                    continue;
                }
                const uint64_t c8 = (c4 + (c4 >> 4)) & kLane4;  // bytes: 0..8
                for (int i = 0; i < 8; ++i) best = std::max<int64_t>(best, static_cast<int64_t>((c8 >> (8 * i)) & 0xFF));
            }
            if (m == 4) best = std::max<int64_t>(best, a4 ? 4 : a3 ? 3 : a2 ? 2 : any ? 1 : 0);
            if (m == 2) best = std::max<int64_t>(best, a2 ? 2 : any ? 1 : 0);
            if (m == 1) best = std::max<int64_t>(best, any ? 1 : 0);
            if (best == m) return best;
        }
        return best;
    }
    for (int64_t r = 0; r < p.rows; ++r) {
        load_row(p, r, x.data());
        for (int64_t g0 = 0; g0 < cols; g0 += m) {
            const int64_t g1 = std::min(cols, g0 + m);
            int64_t s = 0;
            for (int64_t c = g0; c < g1;) {
                const int64_t w = c / 64, lo = c % 64, n = std::min<int64_t>(64 - lo, g1 - c);
                const uint64_t v = x[static_cast<size_t>(w)] >> lo;
                s += __builtin_popcountll(n == 64 ? v : v & ((uint64_t(1) << n) - 1));
                c += n;
            }
            if (s > best) {
                best = s;
                if (best == m) return best;
            }
        }
    }
    return best;
}

BESA_HOT int64_t bank_gather(const PackedMask& p, const uint8_t* sel, int64_t cols, int64_t m, int64_t banks, int64_t scale) {
    (void)cols;  // pad bits of sel are 0
    const int64_t S = std::min<int64_t>(p.rows, 64), W = words_of(p.nb);
    std::vector<uint64_t> x(static_cast<size_t>(W)), s(static_cast<size_t>(W));
    for (int64_t w = 0; w < W; ++w) s[static_cast<size_t>(w)] = static_cast<uint64_t>(sel_word(sel, p.nb, w));
    std::vector<int64_t> hist(static_cast<size_t>(banks), 0);
    int64_t cost = 0, beats = 0;
    // A beat = the k kept selected columns first..last of the row held in x (AND s).  Distinct
    // columns closer than `banks` fall in distinct banks: one cycle.  Else count them per bank.
    auto beat = [&](int64_t k, int64_t first, int64_t last) {
        beats += (k + banks - 1) / banks;
        if (last - first < banks) {
            cost += 1;
            return;
        }
        int64_t mx = 0;
        for (int64_t w = first / 64; w <= last / 64; ++w) {
            uint64_t v = x[static_cast<size_t>(w)] & s[static_cast<size_t>(w)];
            if (w == first / 64) v &= ~below(static_cast<int>(first % 64));
            if (w == last / 64) v &= below(static_cast<int>(last % 64) + 1);
            for (; v; v &= v - 1) mx = std::max(mx, ++hist[static_cast<size_t>((64 * w + __builtin_ctzll(v)) % banks)]);
        }
        std::fill(hist.begin(), hist.end(), 0);
        cost += mx;
    };
    for (int64_t i = 0; i < S; ++i) {
        load_row(p, i * p.rows / S, x.data());
        int64_t k = 0, first = 0, last = 0;
        for (int64_t w = 0; w < W; ++w) {
            uint64_t v = x[static_cast<size_t>(w)] & s[static_cast<size_t>(w)];
            while (v) {
                const int64_t pc = __builtin_popcountll(v);
                if (!k) first = 64 * w + __builtin_ctzll(v);
                if (k + pc < m) {  // the whole word belongs to the current beat
                    last = 64 * w + 63 - __builtin_clzll(v);
                    k += pc;
                    break;
                }
                for (int64_t t = m - k - 1; t > 0; --t) v &= v - 1;  // the beat ends at the (m-k)-th bit
                last = 64 * w + __builtin_ctzll(v);
                v &= v - 1;
                beat(m, first, last);
                k = 0;
            }
        }
        if (k) beat(k, first, last);
    }
    if (beats == 0) return scale;
    return std::max(scale, (cost * scale + beats - 1) / beats);
}

}  // namespace besa
