#include "data/reader/reader_config.h"

#include "common/error.h"

namespace ftune::data {

void ReaderConfig::validate(int world_size) const {
  auto bad = [](const std::string& key, const std::string& why) { throw Error("data." + key + ": " + why); };
  if (seq_len < 2) bad("seq_len", "must be at least 2, got " + std::to_string(seq_len));
  if (global_batch < 1) bad("global_batch", "must be positive, got " + std::to_string(global_batch));
  if (world_size < 1) bad("global_batch", "world size must be positive");
  if (global_batch % world_size != 0) {
    bad("global_batch", std::to_string(global_batch) + " sequences do not divide over " +
                            std::to_string(world_size) + " ranks; use a multiple of " +
                            std::to_string(world_size));
  }
  if (packing != "concat" && packing != "pack") bad("packing", "\"" + packing + "\" is not concat or pack");
  if (long_docs != "split" && long_docs != "truncate") {
    bad("long_docs", "\"" + long_docs + "\" is not split or truncate");
  }
  if (!(val_fraction >= 0.0 && val_fraction < 1.0)) {
    bad("val_fraction", "must be in [0, 1), got " + std::to_string(val_fraction));
  }
  if (!val_shards.empty() && val_fraction > 0.0) {
    bad("val_fraction", "set either val_shards or val_fraction, not both");
  }
  if (prefetch < 1) bad("prefetch", "must be at least 1, got " + std::to_string(prefetch));
  if (pad_id < 0) bad("pad_id", "must be a token id (>= 0)");
}

}  // namespace ftune::data
