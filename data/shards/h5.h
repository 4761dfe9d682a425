// Thin RAII and error plumbing around the HDF5 C API, shared by the shard writer and reader.
// HDF5's automatic error printing is switched off; failures become ftune::Error carrying the
// innermost HDF5 message, and callers add which shard they were reading.
#pragma once

#include <hdf5.h>

#include <cstdint>
#include <mutex>
#include <string>
#include <vector>

namespace ftune::data::h5 {

// Owns one hid_t and closes it with the matching H5*close (llama.cpp-style deleter).
class Handle {
 public:
  using Closer = herr_t (*)(hid_t);
  Handle() = default;
  Handle(hid_t id, Closer closer) : id_(id), closer_(closer) {}
  ~Handle() { reset(); }
  Handle(Handle&& o) noexcept : id_(o.id_), closer_(o.closer_) { o.id_ = H5I_INVALID_HID; }
  Handle& operator=(Handle&& o) noexcept {
    if (this != &o) {
      reset();
      id_ = o.id_;
      closer_ = o.closer_;
      o.id_ = H5I_INVALID_HID;
    }
    return *this;
  }
  Handle(const Handle&) = delete;
  Handle& operator=(const Handle&) = delete;

  hid_t get() const { return id_; }
  explicit operator bool() const { return id_ >= 0; }
  // Closes now and reports failure (a close can be where buffered data hits the disk).
  herr_t close();
  void reset() noexcept;

 private:
  hid_t id_ = H5I_INVALID_HID;
  Closer closer_ = nullptr;
};

// Switches off HDF5's stderr error printing for the calling thread; cheap after the first call.
// Called by mutex() and the open/create functions, so every HDF5 call site goes through it.
void init();
// The most specific message on the current HDF5 error stack, "" when empty.
std::string last_error();
// Throws ftune::Error("<what>: <HDF5 message>") when `status` < 0; returns status otherwise.
int64_t check(int64_t status, const std::string& what);

// Serialises HDF5 calls in this process: the library may be built without thread safety on
// some clusters, and the reader's prefetch thread and the main thread both touch it. Calls init().
std::mutex& mutex();

Handle wrap_file(hid_t id, const std::string& what);
Handle wrap_dataset(hid_t id, const std::string& what);
Handle wrap_space(hid_t id, const std::string& what);
Handle wrap_plist(hid_t id, const std::string& what);
Handle wrap_type(hid_t id, const std::string& what);
Handle wrap_attr(hid_t id, const std::string& what);

// Opens an existing file read-only with HDF5 file locking disabled: many ranks on many nodes
// open the same shard at once, and on NFS/Lustre without flock support locking fails outright.
Handle open_read_only(const std::string& path);
Handle create_truncate(const std::string& path);

void write_attr(hid_t obj, const char* name, int64_t value);
void write_attr(hid_t obj, const char* name, const std::string& value);
void write_attr(hid_t obj, const char* name, const std::vector<std::string>& values);

bool has_attr(hid_t obj, const char* name);
int64_t read_attr_int(hid_t obj, const char* name);
std::string read_attr_string(hid_t obj, const char* name);
std::vector<std::string> read_attr_strings(hid_t obj, const char* name);

Handle open_dataset(hid_t file, const char* name);  // throws when missing
int64_t dataset_length(hid_t dataset);              // 1-D datasets; throws otherwise
// Reads elements [begin, begin + count) of a 1-D dataset, converted to `mem_type`.
void read_range(hid_t dataset, hid_t mem_type, int64_t begin, int64_t count, void* out);

}  // namespace ftune::data::h5
