// Implementation of random.hpp.  The recurrence is a 128-bit multiply-add, so one stream runs at the
// latency of that chain; four interleaved lanes (each jumping 4 steps: S_{t+4} = S_t * M^4 + C4,
// C4 = inc * (1 + M + M^2 + M^3)) run at its throughput.  The tests compare every output and the
// final state with numpy's.
#include "random.hpp"

#include <cstring>

namespace besa {

namespace {

using u128 = unsigned __int128;

constexpr u128 kMult = (static_cast<u128>(0x2360ED051FC65DA4ULL) << 64) | 0x4385DF649FCCF645ULL;

inline uint64_t output(u128 s) {
    const uint64_t hi = static_cast<uint64_t>(s >> 64), x = hi ^ static_cast<uint64_t>(s);
    const unsigned rot = static_cast<unsigned>(hi >> 58);
    return (x >> rot) | (x << ((64 - rot) & 63));
}

inline void put(uint8_t* out, int64_t i, uint64_t v) { std::memcpy(out + 8 * i, &v, 8); }  // little-endian host

}  // namespace

void pcg64_fill(Pcg64State& st, uint8_t* out, int64_t count) {
    const u128 inc = (static_cast<u128>(st.inc_hi) << 64) | st.inc_lo;
    u128 s = (static_cast<u128>(st.state_hi) << 64) | st.state_lo;
    const u128 m2 = kMult * kMult, m4 = m2 * m2, c4 = inc * (1 + kMult + m2 + m2 * kMult);
    u128 l0 = s * kMult + inc, l1 = l0 * kMult + inc, l2 = l1 * kMult + inc, l3 = l2 * kMult + inc;
    int64_t i = 0;
    for (; i + 4 <= count; i += 4) {
        put(out, i, output(l0));
        put(out, i + 1, output(l1));
        put(out, i + 2, output(l2));
        put(out, i + 3, output(l3));
        s = l3;
        l0 = l0 * m4 + c4;
        l1 = l1 * m4 + c4;
        l2 = l2 * m4 + c4;
        l3 = l3 * m4 + c4;
    }
    const u128 lanes[3] = {l0, l1, l2};
    for (int64_t j = 0; i < count; ++i, ++j) {
        put(out, i, output(lanes[j]));
        s = lanes[j];
    }
    st.state_hi = static_cast<uint64_t>(s >> 64);
    st.state_lo = static_cast<uint64_t>(s);
}

}  // namespace besa
