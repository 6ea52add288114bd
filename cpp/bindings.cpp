// The one pybind11 file: builds the private module simulator._core over the pure C++ model.
// Hardware crosses as the typed class HwParams, built from a dict that must name every field
// exactly once (a missing or unknown field is a ValueError, never a silent default).
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <functional>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "model.hpp"
#include "random.hpp"
#include "stats.hpp"

namespace py = pybind11;
using besa::HwParams;
using besa::LayerResult;
using IntArray = py::array_t<int64_t, py::array::c_style | py::array::forcecast>;
// A packed keep mask / column selection: uint8, C order (a non-contiguous array is copied; another
// dtype is refused).  Layout in cpp/stats.hpp.
using ByteArray = py::array_t<uint8_t, py::array::c_style>;

namespace {

// Every field of HwParams with its setter: the single list the dict constructor checks against.
using Setter = std::function<void(HwParams&, const py::handle&)>;
template <typename T>
std::pair<std::string, Setter> field(const char* name, T HwParams::*member) {
    return {name, [member](HwParams& hw, const py::handle& v) { hw.*member = v.cast<T>(); }};
}

const std::vector<std::pair<std::string, Setter>>& fields() {
    static const std::vector<std::pair<std::string, Setter>> f = {
        field("lines", &HwParams::lines), field("macs_per_line", &HwParams::macs_per_line),
        field("memory", &HwParams::memory), field("bw_bits_scaled", &HwParams::bw_bits_scaled),
        field("weight_bits", &HwParams::weight_bits), field("act_bits", &HwParams::act_bits),
        field("out_bits", &HwParams::out_bits), field("acc_bits", &HwParams::acc_bits),
        field("kv_bits", &HwParams::kv_bits), field("index_format", &HwParams::index_format),
        field("index_bits", &HwParams::index_bits), field("rowptr_bits", &HwParams::rowptr_bits),
        field("rle_bits", &HwParams::rle_bits), field("pipeline_fill", &HwParams::pipeline_fill),
        field("tile_m", &HwParams::tile_m), field("tile_k", &HwParams::tile_k), field("tile_n", &HwParams::tile_n),
        field("weight_buffer_bytes", &HwParams::weight_buffer_bytes),
        field("act_buffer_bytes", &HwParams::act_buffer_bytes), field("out_buffer_bytes", &HwParams::out_buffer_bytes),
        field("index_buffer_bytes", &HwParams::index_buffer_bytes),
        field("split_optimal", &HwParams::split_optimal), field("assign_lpt", &HwParams::assign_lpt),
        field("gather_scale", &HwParams::gather_scale), field("nm_n", &HwParams::nm_n), field("nm_m", &HwParams::nm_m),
        field("nm_meta_bits", &HwParams::nm_meta_bits), field("nm_eff_scaled", &HwParams::nm_eff_scaled),
        field("nm_eff_scale", &HwParams::nm_eff_scale), field("group_size", &HwParams::group_size),
        field("group_meta_bits", &HwParams::group_meta_bits), field("dequant_per_cycle", &HwParams::dequant_per_cycle),
    };
    return f;
}

HwParams from_dict(const py::dict& d) {
    HwParams hw{};
    for (const auto& item : d) {
        const std::string key = py::str(item.first);
        bool known = false;
        for (const auto& [name, set] : fields()) known = known || name == key;
        if (!known) throw py::value_error("HwParams: unknown field '" + key + "'");
    }
    for (const auto& [name, set] : fields()) {
        if (!d.contains(name)) throw py::value_error("HwParams: missing field '" + name + "'");
        set(hw, d[py::str(name)]);
    }
    if (hw.lines < 1 || hw.macs_per_line < 1 || hw.tile_m < 0 || hw.tile_k < 0 || hw.tile_n < 0 ||
        hw.bw_bits_scaled < 1 || hw.gather_scale < 1 || hw.nm_eff_scale < 1 || hw.nm_eff_scaled < 1 ||
        hw.nm_eff_scaled > hw.nm_eff_scale || hw.nm_m < 1 || hw.acc_bits < 1 || hw.act_bits < 1 ||
        hw.weight_bits < 1 || hw.index_format < 0 || hw.index_format > 2)
        throw py::value_error("HwParams: invalid values (validate with simulator.hardware first)");
    return hw;
}

std::vector<int64_t> to_vec(const IntArray& a, int64_t n, const char* what) {
    if (a.ndim() != 1 || (n >= 0 && a.shape(0) != n)) throw py::value_error(std::string(what) + " must be 1-D of length rows");
    auto u = a.unchecked<1>();
    std::vector<int64_t> v(static_cast<size_t>(a.shape(0)));
    for (py::ssize_t i = 0; i < a.shape(0); ++i) v[static_cast<size_t>(i)] = u(i);
    return v;
}

py::dict to_dict(const LayerResult& r) {
    py::dict d;
    for (const auto& [k, v] : r.values) d[py::str(k)] = v;
    d["bound"] = r.bound;
    return d;
}

py::list to_list(const std::vector<LayerResult>& rs) {
    py::list out;
    for (const auto& r : rs) out.append(to_dict(r));
    return out;
}

void check_dims(int64_t M, int64_t K, int64_t N) {
    if (M < 1 || K < 1 || N < 1) throw py::value_error("rows, cols and tokens must be >= 1");
}

besa::PackedMask mask_of(const ByteArray& a) {
    if (a.ndim() != 2) throw py::value_error("packed mask must be 2-D uint8 [rows, ceil(cols/8)]");
    return {a.data(), static_cast<int64_t>(a.shape(0)), static_cast<int64_t>(a.shape(1))};
}

const uint8_t* sel_of(const ByteArray& s, const besa::PackedMask& p) {
    if (s.ndim() != 1 || s.shape(0) != p.nb) throw py::value_error("packed column selection must be 1-D uint8 of the mask's row length");
    return s.data();
}

py::array_t<int64_t> new_ints(int64_t n) { return py::array_t<int64_t>(static_cast<py::ssize_t>(n)); }

}  // namespace

PYBIND11_MODULE(_core, m) {
    m.doc() = "C++ core of the BESA toolkit's accelerator simulator (private; use simulator.engine)";
    py::class_<HwParams>(m, "HwParams", "Integer hardware view; HwParams(dict) needs every field, no others.")
        .def(py::init(&from_dict), py::arg("fields"))
        .def_static("field_names", []() {
            std::vector<std::string> names;
            for (const auto& f : fields()) names.push_back(f.first);
            return names;
        })
        .def_readonly("lines", &HwParams::lines)
        .def_readonly("tile_m", &HwParams::tile_m)
        .def_readonly("index_format", &HwParams::index_format);
    m.def(
        "cycle_partition",
        [](int64_t M, int64_t K, int64_t N, int64_t G, const IntArray& row_sparse, int64_t pads, int64_t gather,
           const HwParams& hw) {
            check_dims(M, K, N);
            if (G < 0 || G > K) throw py::value_error("G must be in [0, cols]");
            auto rs = to_vec(row_sparse, M, "row_sparse");
            std::vector<LayerResult> r;
            {
                py::gil_scoped_release release;
                r = besa::evaluate_partition(M, K, N, G, rs, pads, gather, hw, besa::tilings(M, K, N, hw, G < K, false));
            }
            return to_list(r);
        },
        py::arg("rows"), py::arg("cols"), py::arg("tokens"), py::arg("dense_cols"), py::arg("row_sparse"),
        py::arg("pads"), py::arg("gather"), py::arg("hw"),
        "One point per tiling (its fastest lane split) of one dense-column set "
        "(simulator.cost.partition.evaluate_partition).");
    m.def(
        "dense_layer",
        [](int64_t M, int64_t K, int64_t N, const HwParams& hw) {
            check_dims(M, K, N);
            return to_list(besa::dense_layer(M, K, N, hw));
        },
        py::arg("rows"), py::arg("cols"), py::arg("tokens"), py::arg("hw"), "Dense baseline's points, its own tilings.");
    m.def(
        "nm_layer",
        [](int64_t M, int64_t K, int64_t N, int64_t group_max, const HwParams& hw) {
            check_dims(M, K, N);
            return to_list(besa::nm_layer(M, K, N, group_max, hw));
        },
        py::arg("rows"), py::arg("cols"), py::arg("tokens"), py::arg("group_max"), py::arg("hw"),
        "n:m sparse tensor engine's points (smallest covering n of the mask's groups).");
    m.def(
        "attention_block",
        [](int64_t hidden, int64_t kv_dim, int64_t N, int64_t context, int64_t batch, const HwParams& hw) {
            check_dims(hidden, kv_dim, N);
            if (context < 0 || batch < 1) throw py::value_error("context must be >= 0 and batch >= 1");
            return to_dict(besa::attention_block(hidden, kv_dim, N, context, batch, hw));
        },
        py::arg("hidden"), py::arg("kv_dim"), py::arg("tokens"), py::arg("context"), py::arg("batch"), py::arg("hw"),
        "One block's attention + KV cache, dense.");
    m.def("lb_ideal", &besa::lb_ideal, py::arg("nnz"), py::arg("rows"), py::arg("cols"), py::arg("tokens"), py::arg("hw"));
    m.def(
        "max_line_load",
        [](const IntArray& costs, int64_t lines, bool lpt) { return besa::max_line_load(to_vec(costs, -1, "costs"), lines, lpt); },
        py::arg("costs"), py::arg("lines"), py::arg("lpt"), "Most beats on any line after row->line assignment.");

    // ---- mask statistics (cpp/stats.hpp); the GIL is released while they run
    m.def(
        "mask_counts",
        [](const ByteArray& packed) {
            const auto p = mask_of(packed);
            auto cols = new_ints(8 * p.nb), rows = new_ints(p.rows);
            int64_t *c = cols.mutable_data(), *r = rows.mutable_data();
            {
                py::gil_scoped_release release;
                besa::count_cols_rows(p, c, r);
            }
            return py::make_tuple(cols, rows);
        },
        py::arg("packed"), "(kept per column [8 * row bytes], kept per row [rows]) in one pass.");
    m.def(
        "row_counts_sel",
        [](const ByteArray& packed, const ByteArray& sel, std::optional<IntArray> row_total) {
            const auto p = mask_of(packed);
            const uint8_t* s = sel_of(sel, p);
            std::vector<int64_t> tot;
            if (row_total) tot = to_vec(*row_total, p.rows, "row_total");
            auto out = new_ints(p.rows);
            int64_t* o = out.mutable_data();
            {
                py::gil_scoped_release release;
                besa::row_counts_sel(p, s, row_total ? tot.data() : nullptr, o);
            }
            return out;
        },
        py::arg("packed"), py::arg("sel"), py::arg("row_total") = py::none(), "Kept per row over the selected columns.");
    m.def(
        "rle_pads",
        [](const ByteArray& packed, const ByteArray& sel, int64_t bits) {
            const auto p = mask_of(packed);
            const uint8_t* s = sel_of(sel, p);
            if (bits < 0) throw py::value_error("bits must be >= 0");
            auto out = new_ints(p.rows);
            int64_t* o = out.mutable_data();
            {
                py::gil_scoped_release release;
                besa::rle_pads(p, s, bits, o);
            }
            return out;
        },
        py::arg("packed"), py::arg("sel"), py::arg("bits"), "Run-length padding entries per row over the selected columns.");
    m.def(
        "nm_group_max",
        [](const ByteArray& packed, int64_t cols, int64_t group) {
            const auto p = mask_of(packed);
            if (group < 1 || cols < 0 || cols > 8 * p.nb) throw py::value_error("nm_group_max: need m >= 1 and cols <= 8 * row bytes");
            py::gil_scoped_release release;
            return besa::nm_group_max(p, cols, group);
        },
        py::arg("packed"), py::arg("cols"), py::arg("m"), "Most kept entries in any group of m consecutive columns.");
    m.def(
        "bank_gather",
        [](const ByteArray& packed, const ByteArray& sel, int64_t cols, int64_t group, int64_t banks, int64_t scale) {
            const auto p = mask_of(packed);
            const uint8_t* s = sel_of(sel, p);
            if (group < 1 || banks < 1 || scale < 1) throw py::value_error("bank_gather: m, banks and scale must be >= 1");
            py::gil_scoped_release release;
            return besa::bank_gather(p, s, cols, group, banks, scale);
        },
        py::arg("packed"), py::arg("sel"), py::arg("cols"), py::arg("m"), py::arg("banks"), py::arg("scale"),
        "Gather factor x scale from bank conflicts of the selected columns (a sample of <= 64 rows).");
    m.def(
        "pcg64_fill",
        [](py::array_t<uint8_t, py::array::c_style> out, int64_t offset, int64_t count, uint64_t state_hi, uint64_t state_lo,
           uint64_t inc_hi, uint64_t inc_lo) {
            if (out.ndim() != 1 || offset < 0 || count < 0 || offset + 8 * count > out.shape(0))
                throw py::value_error("pcg64_fill: out must be 1-D uint8 with room for count words at offset");
            besa::Pcg64State st{state_hi, state_lo, inc_hi, inc_lo};
            uint8_t* o = out.mutable_data() + offset;
            {
                py::gil_scoped_release release;
                besa::pcg64_fill(st, o, count);
            }
            return py::make_tuple(st.state_hi, st.state_lo);
        },
        py::arg("out"), py::arg("offset"), py::arg("count"), py::arg("state_hi"), py::arg("state_lo"), py::arg("inc_hi"),
        py::arg("inc_lo"), "The next count outputs of a PCG64 state (numpy's) as little-endian words; returns the new state.");
}
