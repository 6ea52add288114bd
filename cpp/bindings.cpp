// The one pybind11 file: builds the private module simulator._core over the pure C++ model.
// numpy arrays cross as py::array_t<int64_t, c_style | forcecast>, read with unchecked<1>().
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include "model.hpp"

namespace py = pybind11;
using besa::HwParams;
using besa::LayerResult;

namespace {

template <typename T>
void get(const py::dict& d, const char* key, T& out) {
    if (d.contains(key)) out = d[key].cast<T>();
}

HwParams to_hw(const py::dict& d) {
    HwParams hw;
    get(d, "lines", hw.lines);
    get(d, "macs_per_line", hw.macs_per_line);
    get(d, "memory", hw.memory);
    get(d, "bw_bits_scaled", hw.bw_bits_scaled);
    get(d, "weight_bits", hw.weight_bits);
    get(d, "act_bits", hw.act_bits);
    get(d, "out_bits", hw.out_bits);
    get(d, "index_format", hw.index_format);
    get(d, "index_bits", hw.index_bits);
    get(d, "rowptr_bits", hw.rowptr_bits);
    get(d, "rle_bits", hw.rle_bits);
    get(d, "pipeline_fill", hw.pipeline_fill);
    get(d, "tile_m", hw.tile_m);
    get(d, "tile_k", hw.tile_k);
    get(d, "tile_n", hw.tile_n);
    get(d, "split_optimal", hw.split_optimal);
    get(d, "assign_lpt", hw.assign_lpt);
    get(d, "gather_scaled", hw.gather_scaled);
    get(d, "gather_scale", hw.gather_scale);
    get(d, "nm_n", hw.nm_n);
    get(d, "nm_m", hw.nm_m);
    get(d, "nm_meta_bits", hw.nm_meta_bits);
    if (hw.lines < 1 || hw.macs_per_line < 1 || hw.tile_m < 1 || hw.tile_k < 1 || hw.tile_n < 1 ||
        hw.bw_bits_scaled < 1 || hw.gather_scale < 1 || hw.nm_m < 1)
        throw py::value_error("invalid hardware parameters (validate with simulator.hardware first)");
    return hw;
}

std::vector<int64_t> to_vec(const py::array_t<int64_t, py::array::c_style | py::array::forcecast>& a, int64_t n,
                            const char* what) {
    if (a.ndim() != 1 || a.shape(0) != n) throw py::value_error(std::string(what) + " must be 1-D of length rows");
    auto u = a.unchecked<1>();
    std::vector<int64_t> v(static_cast<size_t>(n));
    for (int64_t i = 0; i < n; ++i) v[static_cast<size_t>(i)] = u(i);
    return v;
}

py::dict to_dict(const LayerResult& r) {
    py::dict d;
    for (const auto& [k, v] : r.values) d[py::str(k)] = v;
    d["bound"] = r.bound;
    return d;
}

void check_dims(int64_t M, int64_t K, int64_t N) {
    if (M < 1 || K < 1 || N < 1) throw py::value_error("rows, cols and tokens must be >= 1");
}

}  // namespace

PYBIND11_MODULE(_core, m) {
    m.doc() = "C++ core of the BESA toolkit's accelerator simulator (private; use simulator.engine)";
    m.def(
        "cycle_layer",
        [](int64_t M, int64_t K, int64_t N, int64_t G,
           const py::array_t<int64_t, py::array::c_style | py::array::forcecast>& row_sparse,
           const py::array_t<int64_t, py::array::c_style | py::array::forcecast>& row_pads, int64_t nnz,
           const py::dict& hw) {
            check_dims(M, K, N);
            if (G < 0 || G > K) throw py::value_error("G must be in [0, cols]");
            HwParams p = to_hw(hw);
            auto rs = to_vec(row_sparse, M, "row_sparse");
            auto rp = to_vec(row_pads, M, "row_pads");
            LayerResult r;
            {
                py::gil_scoped_release release;
                r = besa::cycle_layer(M, K, N, G, rs, rp, nnz, p);
            }
            return to_dict(r);
        },
        py::arg("rows"), py::arg("cols"), py::arg("tokens"), py::arg("dense_cols"), py::arg("row_sparse"),
        py::arg("row_pads"), py::arg("nnz"), py::arg("hw"),
        "Cycle-level model of one layer from its partition statistics (see simulator.reference.cycle_from_stats).");
    m.def(
        "dense_layer",
        [](int64_t M, int64_t K, int64_t N, const py::dict& hw) {
            check_dims(M, K, N);
            return to_dict(besa::dense_layer(M, K, N, to_hw(hw)));
        },
        py::arg("rows"), py::arg("cols"), py::arg("tokens"), py::arg("hw"), "Dense baseline on the same machine.");
    m.def(
        "nm_layer",
        [](int64_t M, int64_t K, int64_t N, int64_t group_max, const py::dict& hw) {
            check_dims(M, K, N);
            return to_dict(besa::nm_layer(M, K, N, group_max, to_hw(hw)));
        },
        py::arg("rows"), py::arg("cols"), py::arg("tokens"), py::arg("group_max"), py::arg("hw"),
        "n:m sparse tensor engine (smallest covering n of the mask's groups).");
    m.def(
        "max_line_load",
        [](const py::array_t<int64_t, py::array::c_style | py::array::forcecast>& costs, int64_t lines, bool lpt) {
            auto v = to_vec(costs, costs.ndim() == 1 ? costs.shape(0) : -1, "costs");
            return besa::max_line_load(v, lines, lpt);
        },
        py::arg("costs"), py::arg("lines"), py::arg("lpt"), "Most beats on any line after row->line assignment.");
}
