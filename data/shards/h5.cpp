#include "data/shards/h5.h"

#include "common/error.h"

#include <cstdlib>

namespace ftune::data::h5 {

herr_t Handle::close() {
  herr_t status = 0;
  if (id_ >= 0 && closer_ != nullptr) status = closer_(id_);
  id_ = H5I_INVALID_HID;
  return status;
}

void Handle::reset() noexcept { close(); }

void init() {
  static std::once_flag once;
  std::call_once(once, [] {
    // Before the library opens anything: the environment switch is what HDF5 < 1.10.7 reads.
    // A value the user set is kept (HDF5 lets it override the property below, so an explicit
    // HDF5_USE_FILE_LOCKING=TRUE turns locking back on).
    setenv("HDF5_USE_FILE_LOCKING", "FALSE", 0);
    H5open();
  });
  // A thread-safe HDF5 keeps one error stack per thread, each printing by default: switch it
  // off in every thread that calls in (the reader's prefetch thread included).
  thread_local bool quiet = false;
  if (!quiet) {
    H5Eset_auto2(H5E_DEFAULT, nullptr, nullptr);
    quiet = true;
  }
}

namespace {
herr_t collect_error(unsigned, const H5E_error2_t* err, void* data) {
  auto* out = static_cast<std::vector<std::string>*>(data);
  if (err->desc != nullptr && err->desc[0] != '\0') out->push_back(err->desc);
  return 0;
}
}  // namespace

std::string last_error() {
  std::vector<std::string> msgs;  // outermost (the API call) first
  H5Ewalk2(H5E_DEFAULT, H5E_WALK_DOWNWARD, collect_error, &msgs);
  H5Eclear2(H5E_DEFAULT);
  if (msgs.empty()) return "";
  if (msgs.size() == 1) return msgs.front();
  // The outer message says what failed, the innermost says why ("truncated file: ...").
  return msgs.front() + " (" + msgs.back() + ")";
}

int64_t check(int64_t status, const std::string& what) {
  if (status < 0) {
    std::string detail = last_error();
    throw Error(what + (detail.empty() ? "" : ": HDF5: " + detail));
  }
  return status;
}

std::mutex& mutex() {
  init();  // every HDF5 call site takes this lock first
  static std::mutex m;
  return m;
}

Handle wrap_file(hid_t id, const std::string& what) { return {check(id, what), H5Fclose}; }
Handle wrap_dataset(hid_t id, const std::string& what) { return {check(id, what), H5Dclose}; }
Handle wrap_space(hid_t id, const std::string& what) { return {check(id, what), H5Sclose}; }
Handle wrap_plist(hid_t id, const std::string& what) { return {check(id, what), H5Pclose}; }
Handle wrap_type(hid_t id, const std::string& what) { return {check(id, what), H5Tclose}; }
Handle wrap_attr(hid_t id, const std::string& what) { return {check(id, what), H5Aclose}; }

Handle open_read_only(const std::string& path) {
  init();
  Handle fapl = wrap_plist(H5Pcreate(H5P_FILE_ACCESS), "file access list");
#if H5_VERSION_GE(1, 10, 7)
  // ignore_when_disabled = true: where the file system has no locks, carry on without them.
  check(H5Pset_file_locking(fapl.get(), false, true), "disabling file locking");
#endif
  return wrap_file(H5Fopen(path.c_str(), H5F_ACC_RDONLY, fapl.get()), "not a readable HDF5 file");
}

Handle create_truncate(const std::string& path) {
  init();
  // No object timestamps: the same documents give byte-identical shards, whatever the run.
  Handle fcpl = wrap_plist(H5Pcreate(H5P_FILE_CREATE), "file creation list");
  check(H5Pset_obj_track_times(fcpl.get(), false), "disabling object timestamps");
  return wrap_file(H5Fcreate(path.c_str(), H5F_ACC_TRUNC, fcpl.get(), H5P_DEFAULT),
                   "cannot create HDF5 file " + path);
}

namespace {
Handle vlen_string_type() {
  Handle t = wrap_type(H5Tcopy(H5T_C_S1), "string type");
  check(H5Tset_size(t.get(), H5T_VARIABLE), "string type");
  check(H5Tset_cset(t.get(), H5T_CSET_UTF8), "string type");
  return t;
}

void write_raw_attr(hid_t obj, const char* name, hid_t type, hid_t space, const void* data) {
  std::string what = std::string("writing attribute ") + name;
  Handle attr = wrap_attr(H5Acreate2(obj, name, type, space, H5P_DEFAULT, H5P_DEFAULT), what);
  check(H5Awrite(attr.get(), type, data), what);
}
}  // namespace

void write_attr(hid_t obj, const char* name, int64_t value) {
  Handle space = wrap_space(H5Screate(H5S_SCALAR), "scalar space");
  write_raw_attr(obj, name, H5T_STD_I64LE, space.get(), &value);
}

void write_attr(hid_t obj, const char* name, const std::string& value) {
  Handle type = vlen_string_type();
  Handle space = wrap_space(H5Screate(H5S_SCALAR), "scalar space");
  const char* p = value.c_str();
  write_raw_attr(obj, name, type.get(), space.get(), &p);
}

void write_attr(hid_t obj, const char* name, const std::vector<std::string>& values) {
  Handle type = vlen_string_type();
  hsize_t n = values.size();
  Handle space = wrap_space(H5Screate_simple(1, &n, nullptr), "string list space");
  std::vector<const char*> ptrs;
  for (const auto& v : values) ptrs.push_back(v.c_str());
  const char* none = nullptr;  // HDF5 refuses a null buffer even for zero elements
  write_raw_attr(obj, name, type.get(), space.get(), ptrs.empty() ? &none : ptrs.data());
}

bool has_attr(hid_t obj, const char* name) {
  return check(H5Aexists(obj, name), std::string("looking up attribute ") + name) > 0;
}

namespace {
Handle open_attr(hid_t obj, const char* name) {
  if (!has_attr(obj, name)) throw Error(std::string("missing attribute '") + name + "'");
  return wrap_attr(H5Aopen(obj, name, H5P_DEFAULT), std::string("opening attribute ") + name);
}

int64_t attr_elements(hid_t attr, const char* name) {
  Handle space = wrap_space(H5Aget_space(attr), std::string("attribute ") + name);
  return check(H5Sget_simple_extent_npoints(space.get()), std::string("attribute ") + name);
}

// Reads an attribute of variable- or fixed-length strings (h5py writes either).
std::vector<std::string> read_strings(hid_t obj, const char* name) {
  std::string what = std::string("reading attribute ") + name;
  Handle attr = open_attr(obj, name);
  Handle ftype = wrap_type(H5Aget_type(attr.get()), what);
  if (H5Tget_class(ftype.get()) != H5T_STRING) {
    throw Error(std::string("attribute '") + name + "' is not a string");
  }
  auto n = static_cast<size_t>(attr_elements(attr.get(), name));
  std::vector<std::string> out;
  if (n == 0) return out;
  if (check(H5Tis_variable_str(ftype.get()), what) > 0) {
    Handle mtype = vlen_string_type();
    std::vector<char*> ptrs(n, nullptr);
    check(H5Aread(attr.get(), mtype.get(), ptrs.data()), what);
    for (char* p : ptrs) {
      out.emplace_back(p ? p : "");
      H5free_memory(p);
    }
    return out;
  }
  size_t len = H5Tget_size(ftype.get());
  std::vector<char> buf(n * len);
  check(H5Aread(attr.get(), ftype.get(), buf.data()), what);
  for (size_t i = 0; i < n; ++i) {
    std::string s(buf.data() + i * len, len);
    out.push_back(s.substr(0, s.find('\0')));
  }
  return out;
}
}  // namespace

int64_t read_attr_int(hid_t obj, const char* name) {
  Handle attr = open_attr(obj, name);
  Handle ftype = wrap_type(H5Aget_type(attr.get()), std::string("attribute ") + name);
  if (H5Tget_class(ftype.get()) != H5T_INTEGER || attr_elements(attr.get(), name) != 1) {
    throw Error(std::string("attribute '") + name + "' is not a single integer");
  }
  int64_t value = 0;
  check(H5Aread(attr.get(), H5T_NATIVE_INT64, &value), std::string("reading attribute ") + name);
  return value;
}

std::string read_attr_string(hid_t obj, const char* name) {
  auto values = read_strings(obj, name);
  if (values.size() != 1) throw Error(std::string("attribute '") + name + "' is not one string");
  return values.front();
}

std::vector<std::string> read_attr_strings(hid_t obj, const char* name) {
  return read_strings(obj, name);
}

Handle open_dataset(hid_t file, const char* name) {
  if (check(H5Lexists(file, name, H5P_DEFAULT), std::string("looking up dataset ") + name) <= 0) {
    throw Error(std::string("missing dataset '") + name + "'");
  }
  return wrap_dataset(H5Dopen2(file, name, H5P_DEFAULT), std::string("opening dataset ") + name);
}

int64_t dataset_length(hid_t dataset) {
  Handle space = wrap_space(H5Dget_space(dataset), "dataset space");
  if (H5Sget_simple_extent_ndims(space.get()) != 1) throw Error("dataset is not 1-D");
  hsize_t n = 0;
  check(H5Sget_simple_extent_dims(space.get(), &n, nullptr), "dataset dims");
  return static_cast<int64_t>(n);
}

void read_range(hid_t dataset, hid_t mem_type, int64_t begin, int64_t count, void* out) {
  if (count == 0) return;
  Handle fspace = wrap_space(H5Dget_space(dataset), "dataset space");
  hsize_t start = static_cast<hsize_t>(begin), n = static_cast<hsize_t>(count);
  check(H5Sselect_hyperslab(fspace.get(), H5S_SELECT_SET, &start, nullptr, &n, nullptr),
        "selecting a range");
  Handle mspace = wrap_space(H5Screate_simple(1, &n, nullptr), "memory space");
  check(H5Dread(dataset, mem_type, mspace.get(), fspace.get(), H5P_DEFAULT, out),
        "reading elements " + std::to_string(begin) + ".." + std::to_string(begin + count));
}

}  // namespace ftune::data::h5
